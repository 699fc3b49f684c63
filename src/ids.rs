//! Typed ids: one newtype per kind of resource, so that an order id cannot be passed where
//! an item id is wanted, and a malformed id in a path is a 404 at the edge
//! ([`crate::http::Path`]) rather than a `parse_id` call in every handler.
//!
//! Each is a UUID (v7 for the ids Ordo makes) and reads, writes, serializes and binds as
//! one: `Display`/`FromStr` are the hyphenated form, serde is transparent, and the sqlx
//! impls delegate to `Uuid` on both backends, so a row may decode straight into one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

macro_rules! ids {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The id as the plain UUID the stores take.
            pub const fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            Uuid: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <Uuid as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <Uuid as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            Uuid: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                self.0.encode_by_ref(buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            Uuid: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Uuid::decode(value).map($name)
            }
        }
    )*};
}

ids! {
    /// An order (`orders.id`).
    OrderId;
    /// An item of the catalogue (`items.id`).
    ItemId;
    /// An account: a customer, a staff member or an admin (`users.id`).
    UserId;
    /// An API key (`api_keys.id`).
    ApiKeyId;
    /// A webhook endpoint (`webhook_endpoints.id`).
    EndpointId;
    /// A notification or webhook delivery (`deliveries.id`).
    DeliveryId;
}

/// The account a `/v1/users/{user_id}/…` route is about: `me` (the caller) or an id. Who
/// may name whom is the service's call; this only reads the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserRef {
    Me,
    Id(UserId),
}

impl FromStr for UserRef {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "me" {
            Ok(UserRef::Me)
        } else {
            s.parse().map(UserRef::Id)
        }
    }
}

impl<'de> Deserialize<'de> for UserRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Me => f.write_str("me"),
            UserRef::Id(id) => id.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_and_writes_as_its_uuid() {
        let u = Uuid::now_v7();
        let id: OrderId = u.to_string().parse().unwrap();
        assert_eq!(id.uuid(), u);
        assert_eq!(id.to_string(), u.to_string());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{u}\""));
        let back: OrderId = serde_json::from_str(&format!("\"{u}\"")).unwrap();
        assert_eq!(back, id);
        assert!("not-an-id".parse::<ItemId>().is_err());
    }

    #[test]
    fn a_user_ref_is_me_or_an_id() {
        let u = Uuid::now_v7();
        assert_eq!("me".parse::<UserRef>().unwrap(), UserRef::Me);
        assert_eq!(
            u.to_string().parse::<UserRef>().unwrap(),
            UserRef::Id(UserId(u))
        );
        assert!("Me".parse::<UserRef>().is_err());
        assert!("".parse::<UserRef>().is_err());
        let r: UserRef = serde_json::from_str("\"me\"").unwrap();
        assert_eq!(r, UserRef::Me);
    }
}
