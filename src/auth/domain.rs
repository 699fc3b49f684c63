//! Who is calling and what they may do: roles, API-key scopes, and the permission table.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::ids::UserRef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Staff,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Role::Customer),
            "staff" => Some(Role::Staff),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What an integration's API key may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "orders:write")]
    OrdersWrite,
    #[serde(rename = "items:read")]
    ItemsRead,
    #[serde(rename = "items:write")]
    ItemsWrite,
    #[serde(rename = "tracking:write")]
    TrackingWrite,
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::ItemsRead,
        Scope::ItemsWrite,
        Scope::TrackingWrite,
        Scope::WebhooksManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::ItemsRead => "items:read",
            Scope::ItemsWrite => "items:write",
            Scope::TrackingWrite => "tracking:write",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }
}

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User {
        id: Uuid,
        role: Role,
    },
    ApiKey {
        id: Uuid,
        scopes: Vec<Scope>,
    },
    /// The holder of a tracking link (see `auth::links`): it may read and follow this one
    /// order, nothing else. The authentication middleware admits it on those routes only.
    TrackingLink {
        order_id: Uuid,
        customer_id: Uuid,
    },
}

/// Everything a route may demand of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Read items: every signed-in user, or `items:read`.
    ReadItems,
    /// Create and change items and stock: staff, or `items:write`.
    WriteItems,
    /// Supplier inventory: staff, or `items:read`.
    ReadInventory,
    /// Place, pay and cancel orders: customers (their own), staff, or `orders:write`.
    WriteOrders,
    /// Read orders: customers (their own), staff, or `orders:read`.
    ReadOrders,
    /// Move an order through fulfilment: staff, `orders:write` or `tracking:write`.
    ChangeStatus,
    /// Record carrier scans: staff or `tracking:write`.
    WriteTracking,
    /// Users and API keys: admin only.
    Administer,
    /// Webhook endpoints: admins, or `webhooks:manage`.
    ManageWebhooks,
}

impl Principal {
    /// A stable string naming the caller (idempotency keys, rate limits, audit).
    pub fn key(&self) -> String {
        match self {
            Principal::User { id, .. } => format!("user:{id}"),
            Principal::ApiKey { id, .. } => format!("key:{id}"),
            Principal::TrackingLink { order_id, .. } => format!("link:{order_id}"),
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Principal::User { id, .. } => Some(*id),
            Principal::ApiKey { .. } | Principal::TrackingLink { .. } => None,
        }
    }

    /// The account a `/v1/users/{user_id}/…` path names: `me` is the caller's own (none for
    /// an API key or a tracking link).
    pub fn named(&self, who: UserRef) -> Option<Uuid> {
        match who {
            UserRef::Me => self.user_id(),
            UserRef::Id(id) => Some(id.uuid()),
        }
    }

    /// A customer sees only its own orders; everyone else allowed in sees all of them. (A
    /// tracking link counts as its customer here, and sees less still: see `sees_order`.)
    pub fn own_customer_id(&self) -> Option<Uuid> {
        match self {
            Principal::User {
                id,
                role: Role::Customer,
            } => Some(*id),
            Principal::TrackingLink { customer_id, .. } => Some(*customer_id),
            _ => None,
        }
    }

    /// May this caller see the order `order_id` of `customer_id`? (Whether it may read
    /// orders at all is `may(ReadOrders)`.)
    pub fn sees_order(&self, order_id: Uuid, customer_id: Uuid) -> bool {
        match self {
            Principal::TrackingLink { order_id: own, .. } => *own == order_id,
            _ => self.own_customer_id().is_none_or(|own| own == customer_id),
        }
    }

    /// The one order a tracking link is for.
    pub fn link_order(&self) -> Option<Uuid> {
        match self {
            Principal::TrackingLink { order_id, .. } => Some(*order_id),
            _ => None,
        }
    }

    pub fn is_staff(&self) -> bool {
        matches!(
            self,
            Principal::User {
                role: Role::Staff | Role::Admin,
                ..
            }
        )
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        matches!(self, Principal::ApiKey { scopes, .. } if scopes.contains(&scope))
    }

    pub fn may(&self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Principal::User { role, .. } => match (p, role) {
                (P::Administer | P::ManageWebhooks, r) => *r == Role::Admin,
                (P::ReadItems | P::WriteOrders | P::ReadOrders, _) => true,
                (_, r) => *r != Role::Customer,
            },
            Principal::ApiKey { .. } => match p {
                P::ReadItems | P::ReadInventory => self.has_scope(Scope::ItemsRead),
                P::WriteItems => self.has_scope(Scope::ItemsWrite),
                P::WriteOrders => self.has_scope(Scope::OrdersWrite),
                P::ReadOrders => self.has_scope(Scope::OrdersRead),
                P::ChangeStatus => {
                    self.has_scope(Scope::OrdersWrite) || self.has_scope(Scope::TrackingWrite)
                }
                P::WriteTracking => self.has_scope(Scope::TrackingWrite),
                P::ManageWebhooks => self.has_scope(Scope::WebhooksManage),
                P::Administer => false,
            },
            Principal::TrackingLink { .. } => p == P::ReadOrders,
        }
    }

    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.may(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this caller may not do this"))
        }
    }
}

/// A normalised e-mail address (trimmed, lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim().to_lowercase();
        let valid = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Email(s))
        } else {
            Err(FieldError::new(field, "must be an e-mail address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password acceptable for a new account.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(field: &str, raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if n < 8 {
            Err(FieldError::new(field, "must have at least 8 characters"))
        } else if n > 512 {
            Err(FieldError::new(field, "must have at most 512 characters"))
        } else {
            Ok(NewPassword(raw))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: 1..=200 characters after trimming.
pub fn parse_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 200 {
        Err(FieldError::new(field, "must have 1 to 200 characters"))
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_by_role() {
        let customer = Principal::User {
            id: Uuid::nil(),
            role: Role::Customer,
        };
        let staff = Principal::User {
            id: Uuid::nil(),
            role: Role::Staff,
        };
        let admin = Principal::User {
            id: Uuid::nil(),
            role: Role::Admin,
        };
        assert!(customer.may(Permission::WriteOrders));
        assert!(!customer.may(Permission::ChangeStatus));
        assert!(!customer.may(Permission::WriteItems));
        assert!(staff.may(Permission::WriteItems));
        assert!(!staff.may(Permission::Administer));
        assert!(admin.may(Permission::Administer));
    }

    #[test]
    fn api_keys_have_exactly_their_scopes() {
        let key = Principal::ApiKey {
            id: Uuid::nil(),
            scopes: vec![Scope::TrackingWrite],
        };
        assert!(key.may(Permission::WriteTracking));
        assert!(key.may(Permission::ChangeStatus));
        assert!(!key.may(Permission::ReadOrders));
        assert!(!key.may(Permission::ReadItems));
        assert!(!key.may(Permission::Administer));
    }

    #[test]
    fn a_tracking_link_reads_its_one_order_only() {
        let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());
        let link = Principal::TrackingLink {
            order_id: order,
            customer_id: customer,
        };
        assert!(link.may(Permission::ReadOrders));
        for p in [
            Permission::WriteOrders,
            Permission::ReadItems,
            Permission::ChangeStatus,
            Permission::WriteTracking,
            Permission::Administer,
            Permission::ManageWebhooks,
        ] {
            assert!(!link.may(p), "{p:?}");
        }
        assert!(link.sees_order(order, customer));
        assert!(
            !link.sees_order(Uuid::now_v7(), customer),
            "another order of the same customer"
        );
        assert_eq!(link.user_id(), None);
        assert!(!link.is_staff());
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("email", " Ann@Example.COM ").map(|e| e.0),
            Ok("ann@example.com".into())
        );
        assert!(Email::parse("email", "nope").is_err());
        assert!(Email::parse("email", "a@b").is_err());
    }
}
