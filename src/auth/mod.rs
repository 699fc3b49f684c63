//! Identity and roles: accounts, passwords, access tokens, API keys and who may do what.

pub mod domain;
pub mod http;
pub mod links;
pub mod service;
pub mod store;
