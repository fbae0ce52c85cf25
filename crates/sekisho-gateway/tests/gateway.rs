//! The gateway's integration tests, in one test binary: each module starts real gateways
//! with real TLS in front of real upstreams on loopback. One binary rather than one per file,
//! because each linked test binary carries the whole gateway, and a dozen of them made a clean
//! `cargo test --workspace` slow to link and heavy on CI's disk.

mod common;
#[path = "../../sekisho-identity/tests/support/mod.rs"]
mod idp;

mod assertion_keys;
mod audit;
mod devices;
mod identity;
mod large_body;
mod paths;
mod proxy;
mod reload;
mod schema;
mod smuggling;
