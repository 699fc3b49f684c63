//! Who may export or erase whose data, without I/O.

use uuid::Uuid;

use crate::auth::domain::{Principal, Role};

/// The answer to "may this caller act on this person's data?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Somebody else's, to a customer; or nobody's.
    NotFound,
    Forbidden(&'static str),
}

/// Before the person is looked up: a customer reaches only itself (anybody else's id is
/// "not found", whether or not it exists); a tracking link and an API key reach nobody
/// (personal data is no integration's business); staff and admins go on to [`may_export`]
/// and [`may_erase`].
pub fn first_look(caller: &Principal, subject: Uuid) -> Access {
    match caller {
        Principal::User {
            id,
            role: Role::Customer,
        } => {
            if *id == subject {
                Access::Allowed
            } else {
                Access::NotFound
            }
        }
        Principal::User { .. } => Access::Allowed,
        Principal::ApiKey { .. } | Principal::TrackingLink { .. } => {
            Access::Forbidden("personal data is read and erased by the person or an admin")
        }
    }
}

/// The export: the person itself (whatever its role), or an admin.
pub fn may_export(caller: &Principal, subject: Uuid) -> Access {
    match first_look(caller, subject) {
        Access::Allowed if caller.user_id() == Some(subject) || is_admin(caller) => Access::Allowed,
        Access::Allowed => Access::Forbidden("only the person itself or an admin exports"),
        other => other,
    }
}

/// The erasure of a person whose role is `subject_role`: a customer itself, or an admin
/// (any account but its own, so that the last admin cannot lock everyone out by mistake).
/// Staff erase nobody, an admin least of all.
pub fn may_erase(caller: &Principal, subject: Uuid, subject_role: Role) -> Access {
    match first_look(caller, subject) {
        Access::Allowed => {}
        other => return other,
    }
    let own = caller.user_id() == Some(subject);
    match (own, is_admin(caller), subject_role) {
        (true, _, Role::Customer) => Access::Allowed,
        (true, _, _) => Access::Forbidden("a staff or admin account is erased by another admin"),
        (false, true, _) => Access::Allowed,
        (false, false, _) => Access::Forbidden("only the customer itself or an admin erases"),
    }
}

/// What an erased person's e-mail becomes: unique (the column is), unreachable (`.invalid`
/// never resolves) and derived from nothing but the id the books keep anyway.
pub fn erased_email(id: Uuid) -> String {
    format!("erased-{}@erased.invalid", id.simple())
}

/// An erased person's name, and the text of every free-text field that was about it.
pub const ERASED_TEXT: &str = "(erased)";

/// Not a password hash any password verifies against.
pub const ERASED_PASSWORD_HASH: &str = "!erased";

/// Why a pending notification of an erased person was dropped.
pub const DROPPED_DELIVERY: &str = "the recipient was erased";

fn is_admin(caller: &Principal) -> bool {
    matches!(
        caller,
        Principal::User {
            role: Role::Admin,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::domain::{Email, Scope};
    use crate::ids::UserRef;

    #[test]
    fn an_erased_email_is_an_email_and_unique() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(Email::parse("email", &erased_email(a)).is_ok());
        assert_ne!(erased_email(a), erased_email(b));
    }

    fn user(role: Role) -> (Uuid, Principal) {
        let id = Uuid::now_v7();
        (id, Principal::User { id, role })
    }

    #[test]
    fn me_is_the_caller() {
        let (id, customer) = user(Role::Customer);
        assert_eq!(customer.named(UserRef::Me), Some(id));
        let other = Uuid::now_v7();
        assert_eq!(customer.named(UserRef::Id(other.into())), Some(other));
        let key = Principal::ApiKey {
            id: Uuid::now_v7(),
            scopes: vec![],
        };
        assert_eq!(key.named(UserRef::Me), None);
    }

    #[test]
    fn a_customer_exports_and_erases_itself_only() {
        let (id, customer) = user(Role::Customer);
        let other = Uuid::now_v7();
        assert_eq!(may_export(&customer, id), Access::Allowed);
        assert_eq!(may_export(&customer, other), Access::NotFound);
        assert_eq!(may_erase(&customer, id, Role::Customer), Access::Allowed);
        assert_eq!(
            may_erase(&customer, other, Role::Customer),
            Access::NotFound
        );
    }

    #[test]
    fn staff_export_themselves_and_erase_nobody() {
        let (id, staff) = user(Role::Staff);
        let (admin_id, _) = user(Role::Admin);
        let customer = Uuid::now_v7();
        assert_eq!(may_export(&staff, id), Access::Allowed);
        assert!(matches!(may_export(&staff, customer), Access::Forbidden(_)));
        assert!(matches!(
            may_erase(&staff, customer, Role::Customer),
            Access::Forbidden(_)
        ));
        assert!(matches!(
            may_erase(&staff, admin_id, Role::Admin),
            Access::Forbidden(_)
        ));
        assert!(matches!(
            may_erase(&staff, id, Role::Staff),
            Access::Forbidden(_)
        ));
    }

    #[test]
    fn an_admin_erases_anyone_but_itself() {
        let (id, admin) = user(Role::Admin);
        assert_eq!(may_export(&admin, Uuid::now_v7()), Access::Allowed);
        for role in [Role::Customer, Role::Staff, Role::Admin] {
            assert_eq!(may_erase(&admin, Uuid::now_v7(), role), Access::Allowed);
        }
        assert!(matches!(
            may_erase(&admin, id, Role::Admin),
            Access::Forbidden(_)
        ));
    }

    #[test]
    fn keys_and_links_reach_nobody() {
        let key = Principal::ApiKey {
            id: Uuid::now_v7(),
            scopes: Scope::ALL.to_vec(),
        };
        let customer = Uuid::now_v7();
        let link = Principal::TrackingLink {
            order_id: Uuid::now_v7(),
            customer_id: customer,
        };
        for p in [key, link] {
            assert!(matches!(may_export(&p, customer), Access::Forbidden(_)));
            assert!(matches!(
                may_erase(&p, customer, Role::Customer),
                Access::Forbidden(_)
            ));
        }
    }
}
