//! Device identity and device posture for Sekisho.
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

pub use device::{DeviceOutcome, DevicePosture, DeviceView, DevicesConfig};
pub use error::DeviceCertError;
pub use identity::{DeviceIdSource, VerifiedDevice};
pub use posture::{Fact, FactSource, Posture, PostureConfig};
pub use trust::{DeviceTrust, DeviceTrustConfig, TrustLoadError};
