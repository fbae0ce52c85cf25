//! The facts a decision is made from. The gateway fills these from the identity
//! step (OIDC session or bearer token), the device step (client certificate and
//! posture sources) and the request itself. Nothing here does I/O or reads a clock:
//! `now` is always passed in.

use std::borrow::Cow;
use std::net::IpAddr;

use jiff::Timestamp;
use serde_json::{Map, Value};

/// Who the user is, as the identity step verified it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// OIDC `sub`.
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// OIDC `amr` (RFC 8176 values such as `pwd`, `otp`, `hwk`, `mfa`).
    pub amr: Vec<String>,
    pub acr: Option<String>,
    /// When the user last actively authenticated (OIDC `auth_time`).
    pub auth_time: Option<Timestamp>,
    /// Every other claim of the token, for `claim:` criteria.
    pub claims: Map<String, Value>,
}

/// What the TLS layer saw of the device's client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Certificate {
    /// No client certificate was presented.
    #[default]
    Absent,
    /// A certificate was presented but did not verify. `reason` is a short stable
    /// code from the device step, e.g. `expired`, `revoked`, `unknown_issuer`.
    Invalid { reason: String },
    /// A verified device certificate.
    Present { id: String, fingerprint: String },
}

/// A posture fact: either known (with the time it was observed) or unknown.
/// Unknown is a value of its own: it never satisfies an allow criterion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fact<T> {
    Known {
        value: T,
        observed_at: Timestamp,
    },
    #[default]
    Unknown,
}

impl<T> Fact<T> {
    pub fn known(value: T, observed_at: Timestamp) -> Fact<T> {
        Fact::Known { value, observed_at }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Fact::Known { value, .. } => Some(value),
            Fact::Unknown => None,
        }
    }
}

/// Who owns the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ownership {
    Corporate,
    Byod,
}

impl Ownership {
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Corporate => "corporate",
            Ownership::Byod => "byod",
        }
    }
}

/// The device the request comes from: its certificate and its posture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Device {
    pub certificate: Certificate,
    pub managed: Fact<bool>,
    pub ownership: Fact<Ownership>,
    pub compliant: Fact<bool>,
    /// Lower-case OS family: `windows`, `macos`, `ios`, `android`, `linux`, `chromeos`.
    pub os: Fact<String>,
    /// Dotted version, compared numerically (`10.0.19045` ≥ `10.0.19044`).
    pub os_version: Fact<String>,
    pub disk_encryption: Fact<bool>,
    pub screen_lock: Fact<bool>,
    pub firewall: Fact<bool>,
    pub antivirus: Fact<bool>,
    pub edr: Fact<bool>,
    /// When the device last checked in with the MDM.
    pub last_check_in: Fact<Timestamp>,
    pub tags: Fact<Vec<String>>,
}

impl Device {
    /// A device about which nothing is known (no certificate, unknown posture).
    pub const UNKNOWN: Device = Device {
        certificate: Certificate::Absent,
        managed: Fact::Unknown,
        ownership: Fact::Unknown,
        compliant: Fact::Unknown,
        os: Fact::Unknown,
        os_version: Fact::Unknown,
        disk_encryption: Fact::Unknown,
        screen_lock: Fact::Unknown,
        firewall: Fact::Unknown,
        antivirus: Fact::Unknown,
        edr: Fact::Unknown,
        last_check_in: Fact::Unknown,
        tags: Fact::Unknown,
    };

    pub fn certificate_id(&self) -> Option<&str> {
        match &self.certificate {
            Certificate::Present { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// What is being asked for. `path` is the canonical path (the gateway normalises
/// it once; the same string is routed on, decided on and forwarded).
///
/// Its text is borrowed where it can be: the gateway decides on the strings it already holds
/// for the request and the route (copying them was five allocations per request); a policy
/// test case owns its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Upper-case HTTP method.
    pub method: Cow<'a, str>,
    pub host: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub zone: Cow<'a, str>,
    pub route: Cow<'a, str>,
    pub source_ip: IpAddr,
}

/// Everything one decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// `None`: the request carries no (valid) session or token.
    pub identity: Option<&'a Identity>,
    /// `None` is the same as [`Device::UNKNOWN`].
    pub device: Option<&'a Device>,
    pub request: &'a Request<'a>,
    pub now: Timestamp,
}

static NO_DEVICE: Device = Device::UNKNOWN;

impl<'a> Input<'a> {
    pub(crate) fn device(&self) -> &'a Device {
        self.device.unwrap_or(&NO_DEVICE)
    }
}
