//! Items and stock: the catalogue, prices and what can still be sold.

pub mod domain;
pub mod http;
pub mod service;
pub mod store;
