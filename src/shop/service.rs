//! Cart and wishlist operations; checkout hands the cart to `OrderService::place`.

use std::sync::Arc;

use uuid::Uuid;

use super::domain::{CartOp, CartRefusal, MAX_WISHLIST};
use super::store::{CartRow, WishOutcome, WishRow};
use crate::auth::domain::Principal;
use crate::cache::TaggedCache;
use crate::clock::Clock;
use crate::ids::UserRef;
use crate::storage::{DynStore, Error as StoreError};

/// What can go wrong with a cart or a wishlist, in the shop's terms; an HTTP answer only
/// at the edge (`impl From<ShopError> for ApiError` in `http.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// No such customer, or one the caller may not reach.
    #[error("not found")]
    NotFound,
    /// The cart refused the change; nothing changed.
    #[error("the cart refused the change: {0:?}")]
    Cart(CartRefusal),
    #[error("no such item")]
    UnknownItem,
    #[error("a wishlist holds at most {MAX_WISHLIST} items")]
    WishlistFull,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ShopResult<T> = Result<T, ShopError>;

/// Carts a node keeps: what it last read of each (bounded; a full cache starts over).
const KEPT_CARTS: usize = 65_536;

/// A cart's lines (item, quantity) under the cart's version, per customer.
type KeptCarts = TaggedCache<Uuid, i64, Vec<(Uuid, i32)>>;

#[derive(Clone)]
pub struct ShopService {
    store: DynStore,
    clock: Arc<dyn Clock>,
    /// The lines (item, quantity) of each cart this node read last, under the cart's
    /// version: a checkout orders them without reading the cart again. Never wrong: the
    /// order's placement claims the cart only at that version (compare-and-set in the
    /// order's transaction), and a version names one content for good (new carts start at
    /// a random version). When the cart moved on (another node, another device), the
    /// placement refuses and the checkout reads the cart and tries once more.
    carts: Arc<KeptCarts>,
}

/// What a checkout orders: the cart's version and lines, and whether they were kept from
/// an earlier read (so may be behind the database).
pub struct CheckoutCart {
    pub version: i64,
    pub lines: Arc<Vec<(Uuid, i32)>>,
    pub kept: bool,
}

impl ShopService {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>) -> Self {
        ShopService {
            store,
            clock,
            carts: Arc::new(TaggedCache::new(KEPT_CARTS)),
        }
    }

    /// The customer whose cart or wishlist `raw` (`me` or a user id) names, if `caller`
    /// may reach it: a customer only its own, staff and integrations anybody's. Anything
    /// else is "not found", never "forbidden".
    pub async fn owner(&self, caller: &Principal, who: UserRef) -> ShopResult<Uuid> {
        let id = caller.named(who).ok_or(ShopError::NotFound)?;
        match caller.own_customer_id() {
            Some(own) if own == id => Ok(id),
            Some(_) => Err(ShopError::NotFound),
            None if caller.user_id() == Some(id) => Ok(id),
            None => match self.store.user_by_id(id).await? {
                Some(_) => Ok(id),
                None => Err(ShopError::NotFound),
            },
        }
    }

    #[tracing::instrument(skip_all, fields(customer_id = %customer))]
    pub async fn cart(&self, customer: Uuid) -> ShopResult<CartRow> {
        Ok(self.read_cart(customer).await?.0)
    }

    /// The cart as it is now, and its lines as kept for a later checkout.
    async fn read_cart(&self, customer: Uuid) -> ShopResult<(CartRow, Arc<Vec<(Uuid, i32)>>)> {
        let cart = self.store.cart(customer).await?;
        let lines = Arc::new(cart.lines.iter().map(|l| (l.item_id, l.quantity)).collect());
        self.carts
            .remember(customer, cart.version, Arc::clone(&lines));
        Ok((cart, lines))
    }

    /// The cart a checkout orders: the one this node kept when it has lines and `read` is
    /// false, else the cart read now.
    #[tracing::instrument(skip_all, fields(customer_id = %customer))]
    pub async fn to_check_out(&self, customer: Uuid, read: bool) -> ShopResult<CheckoutCart> {
        if !read
            && let Some((version, lines)) = self.carts.latest(&customer)
            && !lines.is_empty()
        {
            metrics::counter!("ordo_checkout_carts_total", "outcome" => "kept").increment(1);
            return Ok(CheckoutCart {
                version,
                lines,
                kept: true,
            });
        }
        metrics::counter!("ordo_checkout_carts_total", "outcome" => "read").increment(1);
        let (cart, lines) = self.read_cart(customer).await?;
        Ok(CheckoutCart {
            version: cart.version,
            lines,
            kept: false,
        })
    }

    /// After a checkout, whatever its outcome: the kept lines are behind the cart now.
    pub fn checked_out(&self, customer: Uuid) {
        self.carts.forget(&customer);
    }

    #[tracing::instrument(skip_all, fields(customer_id = %customer, item_id = %item))]
    pub async fn change_cart(&self, customer: Uuid, item: Uuid, op: CartOp) -> ShopResult<CartRow> {
        match self
            .store
            .change_cart(customer, item, op, self.clock.ts())
            .await?
        {
            Ok(()) => self.cart(customer).await,
            Err(refusal) => Err(ShopError::Cart(refusal)),
        }
    }

    #[tracing::instrument(skip_all, fields(customer_id = %customer))]
    pub async fn wishlist(&self, customer: Uuid) -> ShopResult<Vec<WishRow>> {
        Ok(self.store.wishlist(customer).await?)
    }

    /// Adds an item (again adding it changes nothing); true when it was new.
    #[tracing::instrument(skip_all, fields(customer_id = %customer, item_id = %item))]
    pub async fn wish(&self, customer: Uuid, item: Uuid) -> ShopResult<bool> {
        match self
            .store
            .add_to_wishlist(customer, item, self.clock.ts())
            .await?
        {
            WishOutcome::Added => Ok(true),
            WishOutcome::AlreadyThere => Ok(false),
            WishOutcome::UnknownItem => Err(ShopError::UnknownItem),
            WishOutcome::Full => Err(ShopError::WishlistFull),
        }
    }

    #[tracing::instrument(skip_all, fields(customer_id = %customer, item_id = %item))]
    pub async fn unwish(&self, customer: Uuid, item: Uuid) -> ShopResult<()> {
        self.store.remove_from_wishlist(customer, item).await?;
        Ok(())
    }
}
