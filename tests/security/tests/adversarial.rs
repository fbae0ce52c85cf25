//! The adversarial suite in one test binary (issue 9): each module attacks a real gateway in
//! front of real upstreams on loopback, class by class. One binary rather than one per file,
//! because each linked test binary carries the whole gateway, and separate binaries made a
//! clean `cargo test --workspace` slow to link and heavy on CI's disk.

#[path = "../../../crates/sekisho-gateway/tests/common/mod.rs"]
mod common;
#[path = "../../../crates/sekisho-identity/tests/support/mod.rs"]
mod idp;
mod signin;
mod support;

mod edges;
mod exhaustion;
mod properties;
mod signin_attacks;
mod spoofing;
mod tokens;
mod wire;
