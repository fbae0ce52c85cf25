//! Device identity and device posture for Sekisho (関所): step 4 of the request pipeline.
//!
//! **What it is for.** Turning the client certificate on a TLS connection into a
//! [`VerifiedDevice`], and that device into a [`Posture`] the policy can judge:
//!
//! - [`DeviceTrust`]: the device CAs and CRLs as a rustls
//!   [`ClientCertVerifier`](rustls::server::danger::ClientCertVerifier) (certificate optional at
//!   the handshake) **and** a per-request [`DeviceTrust::check`] against the newest snapshot, so
//!   a revocation also reaches resumed TLS sessions; reloadable, with a generation counter and a
//!   change notification for closing long-lived connections.
//! - [`identity`]: device ID (SAN URI by default, or SAN DNS, subject CN, serial), SHA-256
//!   fingerprint, issuer, serial and validity, read with `x509-parser`.
//! - [`inventory`]: the MDM export (YAML or CSV) with `file:line` errors, reloaded on change,
//!   keeping the last good one.
//! - [`assertion`]: signed posture assertions (JWT) bound to the certificate by `cnf.x5t#S256`,
//!   algorithm taken from the configured key type, with a maximum age.
//! - [`posture`]: the merge; every fact is a [`Fact`] with source and observation time, and
//!   stale or missing facts are [`Fact::Unknown`].
//! - [`DevicePosture::evaluate`]: the single per-request call the gateway makes.
//! - [`pki`]: `rcgen` tooling behind `sekisho certs` (development CA, server certificate,
//!   device certificates with PKCS#12 bundles, CRLs); `testkit` (feature `testkit`): fixtures.
//!
//! **What it never does.** It never decides allow or deny (that is `sekisho-policy`), never maps
//! errors to HTTP responses (the gateway does), never reads the system clock in its logic
//! (`now` is always passed in; only the testkit's `TestPki::new` and the CLI read it), never
//! trusts a JWT header's `alg`, never treats a missing or stale fact as good, never lets a
//! device agent assert registration facts (managed, ownership, owner, tags — those come from the
//! MDM inventory only), and never writes private keys with permissions wider than 0600.
//! It opens no sockets.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod device;
mod error;
pub mod identity;
pub mod inventory;
pub mod pki;
pub mod posture;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trust;
pub mod watch;

pub use device::{DeviceOutcome, DevicePosture, DeviceView, DevicesConfig, PostureStamp};
pub use error::DeviceCertError;
pub use identity::{DeviceIdSource, VerifiedDevice};
pub use posture::{Fact, FactSource, Posture, PostureConfig};
pub use trust::{DeviceTrust, DeviceTrustConfig, TrustLoadError};
