//! The shop front's customer side: the cart, checkout from the cart (through the same
//! atomic placement as `POST /v1/orders`) and the wishlist.

pub mod domain;
pub mod http;
pub mod service;
pub mod store;
