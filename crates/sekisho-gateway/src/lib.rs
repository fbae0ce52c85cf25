//! The Sekisho gateway: configuration, listeners, routing, zones and egress, the request
//! pipeline, the proxy, admin endpoints, metrics and reload.
//!
//! This crate wires the pure libraries (policy, identity, posture, audit) into one
//! request path (see `pipeline`). It never decides access on anything but the canonical
//! request it forwards.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod canon;
pub mod config;
pub mod device;
pub mod egress;
pub mod h1guard;
pub mod host;
pub mod identity_config;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod respond;
pub mod routing;
pub mod schema;
pub mod server;
pub mod snapshot;
pub mod tls;

pub use config::{Config, LoadError, load};
