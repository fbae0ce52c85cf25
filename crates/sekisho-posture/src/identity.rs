//! Device identity read from a client certificate with `x509-parser`.
//!
//! [`CertFacts`] is what a certificate *says* (parsed, not trusted). [`VerifiedDevice`] is a
//! proof type: only [`crate::DeviceTrust::check`] builds one, after the chain, validity and
//! revocation were checked against the current trust snapshot.

use std::sync::Arc;

use base64::Engine as _;
use jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::DeviceCertError;

/// Default SAN URI prefix: `urn:sekisho:device:PC-0042` → `PC-0042`.
pub const DEFAULT_URI_PREFIX: &str = "urn:sekisho:device:";

/// Longest device ID accepted (they end up in audit records and headers).
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// Where in the certificate the device ID is read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeviceIdSource {
    /// The first SAN URI that starts with `prefix`; the rest is the ID.
    SanUri {
        #[serde(default = "default_prefix")]
        prefix: String,
    },
    /// The first SAN DNS name that ends with `suffix` (if set); the part before it is the ID.
    SanDns {
        #[serde(default)]
        suffix: Option<String>,
    },
    /// The subject common name.
    SubjectCn,
    /// The certificate serial number, lowercase hex.
    Serial,
}

fn default_prefix() -> String {
    DEFAULT_URI_PREFIX.to_owned()
}

impl Default for DeviceIdSource {
    fn default() -> Self {
        Self::SanUri {
            prefix: default_prefix(),
        }
    }
}

/// What a certificate says about itself. Parsed, **not** verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// Raw DER of the issuer name (to match CRL issuers byte for byte).
    pub issuer_raw: Vec<u8>,
    /// Serial, lowercase hex, leading zero bytes removed.
    pub serial_hex: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// SHA-256 of the certificate DER, base64url without padding (the JWT `x5t#S256` form).
    pub x5t_s256: String,
    pub san_uris: Vec<String>,
    pub san_dns: Vec<String>,
    pub common_name: Option<String>,
}

/// Normalise a serial: lowercase hex, no separators, no leading zero bytes ("00" for zero).
pub fn normalize_serial_bytes(raw: &[u8]) -> String {
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let s = hex::encode(&raw[first..]);
    if s.is_empty() { "00".into() } else { s }
}

/// Normalise a serial typed by a person (`0A:1b:…`, `0x0a1b`, `0a1b`). `None` if not hex.
pub fn normalize_serial_text(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let cleaned: String = t.chars().filter(|c| *c != ':' && *c != ' ').collect();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let padded = if cleaned.len() % 2 == 1 {
        format!("0{cleaned}")
    } else {
        cleaned
    };
    let bytes = hex::decode(padded).ok()?;
    Some(normalize_serial_bytes(&bytes))
}

/// SHA-256 fingerprint of a DER certificate, lowercase hex: how records and the inventory
/// name a certificate (also one that failed verification).
pub fn fingerprint_sha256(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// SHA-256 thumbprint of a DER certificate as base64url without padding (`x5t#S256`).
pub fn x5t_s256(cert_der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert_der))
}

fn asn1_to_ts(t: &x509_parser::time::ASN1Time) -> Timestamp {
    Timestamp::from_second(t.timestamp()).unwrap_or(if t.timestamp() < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Parse a DER certificate. Never panics, whatever the bytes.
pub fn parse_cert(der: &[u8]) -> Result<CertFacts, DeviceCertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| DeviceCertError::Malformed {
        detail: format!("not an X.509 certificate: {e}"),
    })?;
    if !rest.is_empty() {
        return Err(DeviceCertError::Malformed {
            detail: "trailing bytes after certificate".into(),
        });
    }
    let mut san_uris = Vec::new();
    let mut san_dns = Vec::new();
    match cert.subject_alternative_name() {
        Ok(Some(ext)) => {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::URI(u) => san_uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => san_dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            return Err(DeviceCertError::Malformed {
                detail: format!("subjectAltName extension: {e}"),
            });
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let digest = Sha256::digest(der);
    Ok(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
        serial_hex: normalize_serial_bytes(cert.raw_serial()),
        not_before: asn1_to_ts(&cert.validity().not_before),
        not_after: asn1_to_ts(&cert.validity().not_after),
        fingerprint_sha256: hex::encode(digest),
        x5t_s256: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        san_uris,
        san_dns,
        common_name,
    })
}

/// A device ID must be short printable ASCII without spaces, so it is safe in logs and headers.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

/// Read the device ID from parsed certificate facts.
pub fn device_id(facts: &CertFacts, source: &DeviceIdSource) -> Result<String, DeviceCertError> {
    let found = match source {
        DeviceIdSource::SanUri { prefix } => facts
            .san_uris
            .iter()
            .find_map(|u| u.strip_prefix(prefix.as_str()).map(str::to_owned)),
        DeviceIdSource::SanDns { suffix } => facts.san_dns.iter().find_map(|d| match suffix {
            Some(s) => d.strip_suffix(s.as_str()).map(str::to_owned),
            None => Some(d.clone()),
        }),
        DeviceIdSource::SubjectCn => facts.common_name.clone(),
        DeviceIdSource::Serial => Some(facts.serial_hex.clone()),
    };
    let where_ = match source {
        DeviceIdSource::SanUri { prefix } => format!("no SAN URI starting with {prefix:?}"),
        DeviceIdSource::SanDns { suffix: Some(s) } => format!("no SAN DNS name ending with {s:?}"),
        DeviceIdSource::SanDns { suffix: None } => "no SAN DNS name".into(),
        DeviceIdSource::SubjectCn => "no subject common name".into(),
        DeviceIdSource::Serial => "no serial".into(),
    };
    match found {
        None => Err(DeviceCertError::NoDeviceId { detail: where_ }),
        Some(id) if !valid_device_id(&id) => Err(DeviceCertError::NoDeviceId {
            detail: "device ID is empty, too long or has characters outside [A-Za-z0-9._:@-]"
                .into(),
        }),
        Some(id) => Ok(id),
    }
}

/// A device whose certificate was verified against the current device trust snapshot.
///
/// Only [`crate::DeviceTrust::check`] constructs this value (the fields are private and
/// there is no public constructor), so holding one is proof the check happened.
#[derive(Debug, Clone)]
pub struct VerifiedDevice {
    pub(crate) id: String,
    /// Shared: a connection's device is re-used for each of its requests (`check_memo`), and
    /// copying a dozen strings per request showed in the profile.
    pub(crate) facts: Arc<CertFacts>,
    pub(crate) chain: Arc<[CertificateDer<'static>]>,
    pub(crate) verified_at: Timestamp,
    pub(crate) trust_generation: u64,
}

impl VerifiedDevice {
    /// The device ID (for example `PC-0042`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// SHA-256 fingerprint of the certificate DER, lowercase hex.
    pub fn fingerprint_sha256(&self) -> &str {
        &self.facts.fingerprint_sha256
    }
    /// The certificate thumbprint as posture assertions carry it in `cnf.x5t#S256`.
    pub fn x5t_s256(&self) -> &str {
        &self.facts.x5t_s256
    }
    pub fn subject(&self) -> &str {
        &self.facts.subject
    }
    pub fn issuer(&self) -> &str {
        &self.facts.issuer
    }
    /// Serial, lowercase hex without separators.
    pub fn serial_hex(&self) -> &str {
        &self.facts.serial_hex
    }
    pub fn not_before(&self) -> Timestamp {
        self.facts.not_before
    }
    pub fn not_after(&self) -> Timestamp {
        self.facts.not_after
    }
    /// The `now` the check ran with.
    pub fn verified_at(&self) -> Timestamp {
        self.verified_at
    }
    /// The trust snapshot generation this device was verified under; when
    /// [`crate::DeviceTrust::generation`] moves on, re-check long-lived connections.
    pub fn trust_generation(&self) -> u64 {
        self.trust_generation
    }
    /// The presented chain (end entity first), kept so long-lived connections can be re-checked.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_text_normalises() {
        assert_eq!(normalize_serial_text("0A:1B").as_deref(), Some("0a1b"));
        assert_eq!(normalize_serial_text("00:0a:1b").as_deref(), Some("0a1b"));
        assert_eq!(normalize_serial_text("0xA1B").as_deref(), Some("0a1b"));
        assert_eq!(normalize_serial_text("PC-0042"), None);
        assert_eq!(normalize_serial_text(""), None);
    }

    #[test]
    fn device_id_charset() {
        assert!(valid_device_id("PC-0042"));
        assert!(valid_device_id("iphone.tanaka@city"));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id("PC 42"));
        assert!(!valid_device_id("PC-42\r\nX-Injected: 1"));
        assert!(!valid_device_id(&"A".repeat(MAX_DEVICE_ID_LEN + 1)));
    }

    #[test]
    fn garbage_is_malformed_not_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x82\xff\xff",
            b"-----BEGIN CERTIFICATE-----",
        ] {
            assert_eq!(
                parse_cert(bytes).unwrap_err().code(),
                "device_cert_malformed"
            );
        }
    }
}
