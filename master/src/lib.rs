//! master: the compact Berth master.
//!
//! Its first part is [`allocator`]: event-driven, weighted DRF allocation of
//! the agents' resources to frameworks as resource offers, independent of any
//! transport (the HTTP API will drive it through the same calls).

pub mod allocator;
pub mod auth;
pub mod core;
pub mod election;
pub mod http;
pub mod operations;
pub mod registry;
