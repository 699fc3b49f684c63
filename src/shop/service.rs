//! Cart and wishlist operations; checkout hands the cart to `OrderService::place`.

use std::sync::Arc;

use uuid::Uuid;

use super::domain::{CartOp, CartRefusal, MAX_CART_LINES, MAX_WISHLIST};
use super::store::{CartRow, WishOutcome, WishRow};
use crate::auth::domain::Principal;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::storage::DynStore;

#[derive(Clone)]
pub struct ShopService {
    store: DynStore,
    clock: Arc<dyn Clock>,
}

impl ShopService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        ShopService { store, clock }
    }

    /// The customer whose cart or wishlist `raw` (`me` or a user id) names, if `caller`
    /// may reach it: a customer only its own, staff and integrations anybody's. Anything
    /// else is "not found", never "forbidden".
    pub async fn owner(&self, caller: &Principal, raw: &str) -> ApiResult<Uuid> {
        let id = if raw == "me" {
            caller.user_id().ok_or(ApiError::NotFound)?
        } else {
            Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)?
        };
        match caller.own_customer_id() {
            Some(own) if own == id => Ok(id),
            Some(_) => Err(ApiError::NotFound),
            None if caller.user_id() == Some(id) => Ok(id),
            None => match self.store.user_by_id(id).await? {
                Some(_) => Ok(id),
                None => Err(ApiError::NotFound),
            },
        }
    }

    pub async fn cart(&self, customer: Uuid) -> ApiResult<CartRow> {
        Ok(self.store.cart(customer).await?)
    }

    pub async fn change_cart(&self, customer: Uuid, item: Uuid, op: CartOp) -> ApiResult<CartRow> {
        match self
            .store
            .change_cart(customer, item, op, self.clock.ts())
            .await?
        {
            Ok(()) => self.cart(customer).await,
            Err(CartRefusal::UnknownItem) => Err(ApiError::validation("item_id", "no such item")),
            Err(CartRefusal::TooMany) => Err(ApiError::validation(
                "quantity",
                "a cart line holds at most 1000",
            )),
            Err(CartRefusal::TooManyLines) => Err(ApiError::validation(
                "item_id",
                format!("a cart holds at most {MAX_CART_LINES} different items"),
            )),
            Err(CartRefusal::MixedCurrencies) => Err(ApiError::validation(
                "item_id",
                "is priced in another currency than the rest of the cart",
            )),
        }
    }

    pub async fn wishlist(&self, customer: Uuid) -> ApiResult<Vec<WishRow>> {
        Ok(self.store.wishlist(customer).await?)
    }

    /// Adds an item (again adding it changes nothing); true when it was new.
    pub async fn wish(&self, customer: Uuid, item: Uuid) -> ApiResult<bool> {
        match self
            .store
            .add_to_wishlist(customer, item, self.clock.ts())
            .await?
        {
            WishOutcome::Added => Ok(true),
            WishOutcome::AlreadyThere => Ok(false),
            WishOutcome::UnknownItem => Err(ApiError::validation("item_id", "no such item")),
            WishOutcome::Full => Err(ApiError::validation(
                "item_id",
                format!("a wishlist holds at most {MAX_WISHLIST} items"),
            )),
        }
    }

    pub async fn unwish(&self, customer: Uuid, item: Uuid) -> ApiResult<()> {
        self.store.remove_from_wishlist(customer, item).await?;
        Ok(())
    }
}
