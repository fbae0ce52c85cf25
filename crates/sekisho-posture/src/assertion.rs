//! Signed posture assertions: a JWT from the MDM or an endpoint agent, sent in a request
//! header, bound to the device certificate.
//!
//! Rules that never bend:
//! - the algorithm comes from the configured **key type** (an allow-list per key), never from
//!   the token header; `none` and HMAC are refused;
//! - the token must carry `cnf: {"x5t#S256": …}` equal to the SHA-256 thumbprint of the client
//!   certificate on *this* connection, so an assertion replayed from another device is refused;
//! - `iat` is required and must be younger than `max_age`; time is passed in.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::VerifiedDevice;

/// Default request header carrying the assertion.
pub const DEFAULT_HEADER: &str = "Sekisho-Device-Posture";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Posture assertion configuration (`devices.assertions` in the gateway configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// Request header name. Default: `Sekisho-Device-Posture`.
    #[serde(default = "default_header")]
    pub header: String,
    /// Keys that may sign assertions. Required, non-empty.
    pub keys: Vec<AssertionKeyConfig>,
    /// Required `aud` value, if set. Default: none.
    #[serde(default)]
    pub audience: Option<String>,
    /// Oldest acceptable `iat`. Default: 15 minutes.
    #[serde(default = "default_max_age")]
    pub max_age: SignedDuration,
    /// Clock skew tolerated for `iat`/`nbf`/`exp`. Default: 60 seconds.
    #[serde(default = "default_leeway")]
    pub leeway: SignedDuration,
}

fn default_header() -> String {
    DEFAULT_HEADER.into()
}
fn default_max_age() -> SignedDuration {
    SignedDuration::from_mins(15)
}
fn default_leeway() -> SignedDuration {
    SignedDuration::from_secs(60)
}

/// One signing key of an MDM or endpoint agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionKeyConfig {
    /// `kid` the tokens name; if unset, the key is tried for tokens without a `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo): EC P-256/P-384, Ed25519 or RSA.
    pub public_key_file: PathBuf,
    /// Narrow the algorithms further (must fit the key type), e.g. `PS256`. Default: all that fit.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Required `iss` for tokens signed by this key. Default: any.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// Configuration of posture assertions is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AssertionConfigError {
    #[error("{}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("posture assertions: {0}")]
    Config(String),
}

/// Why an assertion was not accepted. Each has a stable code and ja/en sentences.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    #[error("posture assertion is malformed: {0}")]
    Malformed(String),
    #[error("posture assertion is signed with an unknown key")]
    UnknownKey,
    #[error("posture assertion algorithm {0} is not allowed for its key")]
    AlgorithmNotAllowed(String),
    #[error("posture assertion signature is invalid")]
    BadSignature,
    #[error("posture assertion is not bound to a device certificate (no cnf.x5t#S256)")]
    NotBound,
    #[error("posture assertion is bound to another device certificate")]
    WrongDevice,
    #[error("posture assertion is too old (issued {issued_at})")]
    Stale { issued_at: Timestamp },
    #[error("posture assertion has expired or is not valid yet")]
    OutsideValidity,
    #[error("posture assertion issuer or audience does not match")]
    WrongIssuerOrAudience,
}

impl AssertionError {
    /// Stable machine code, safe as a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "posture_assertion_malformed",
            Self::UnknownKey => "posture_assertion_unknown_key",
            Self::AlgorithmNotAllowed(_) => "posture_assertion_bad_algorithm",
            Self::BadSignature => "posture_assertion_bad_signature",
            Self::NotBound => "posture_assertion_not_bound",
            Self::WrongDevice => "posture_assertion_wrong_device",
            Self::Stale { .. } => "posture_assertion_stale",
            Self::OutsideValidity => "posture_assertion_outside_validity",
            Self::WrongIssuerOrAudience => "posture_assertion_wrong_issuer",
        }
    }
    pub fn message_ja(&self) -> &'static str {
        match self {
            Self::Stale { .. } | Self::OutsideValidity => {
                "端末の状態報告が古いため確認できませんでした。端末管理エージェントが動作しているか確認してください。"
            }
            Self::WrongDevice | Self::NotBound => {
                "端末の状態報告がこの端末のものではありません。情報システム担当に連絡してください。"
            }
            _ => "端末の状態報告を検証できませんでした。情報システム担当に連絡してください。",
        }
    }
    pub fn message_en(&self) -> &'static str {
        match self {
            Self::Stale { .. } | Self::OutsideValidity => {
                "The device's posture report is out of date. Check that the device management agent is running."
            }
            Self::WrongDevice | Self::NotBound => {
                "The device's posture report does not belong to this device. Contact the IT team."
            }
            _ => "The device's posture report could not be verified. Contact the IT team.",
        }
    }
}

/// Health facts an assertion may carry. Registration facts (managed, ownership, owner, tags)
/// come only from the MDM inventory: an agent on the device does not get to say it is managed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AssertedPosture {
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub disk_encryption: Option<bool>,
    pub screen_lock: Option<bool>,
    pub firewall: Option<bool>,
    pub antivirus: Option<bool>,
    pub edr: Option<bool>,
    pub compliant: Option<bool>,
}

#[derive(Deserialize)]
struct Cnf {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    cnf: Option<Cnf>,
    /// When the agent measured the facts, if earlier than `iat`.
    observed_at: Option<i64>,
    #[serde(default)]
    posture: AssertedPosture,
}

/// An assertion that passed every check, for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub issuer: Option<String>,
    pub device_id: String,
    pub issued_at: Timestamp,
    /// When the facts were measured (`observed_at` claim, else `iat`).
    pub observed_at: Timestamp,
    pub posture: AssertedPosture,
}

struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
    issuer: Option<String>,
}

/// Verifies posture assertions against the configured keys.
#[derive(Clone)]
pub struct AssertionVerifier {
    keys: Arc<[Key]>,
    header: String,
    audience: Option<String>,
    max_age: SignedDuration,
    leeway: SignedDuration,
}

impl std::fmt::Debug for AssertionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionVerifier")
            .field("keys", &self.keys.len())
            .field("header", &self.header)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// The algorithms a public key may verify, from its SubjectPublicKeyInfo, and the decoding key.
pub fn key_algorithms(spki_pem: &[u8]) -> Result<(Vec<Algorithm>, DecodingKey), String> {
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    use rustls_pki_types::pem::PemObject;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(spki_pem)
        .map_err(|e| format!("expected a PEM PUBLIC KEY: {e}"))?;
    let (_, spki) = SubjectPublicKeyInfo::from_der(der.as_ref())
        .map_err(|e| format!("not a public key: {e}"))?;
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    let bad = |e: jsonwebtoken::errors::Error| format!("unusable key: {e}");
    match alg_oid.as_str() {
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let alg = match curve.as_str() {
                OID_P256 => Algorithm::ES256,
                OID_P384 => Algorithm::ES384,
                other => {
                    return Err(format!(
                        "EC curve {other} is not supported (use P-256 or P-384)"
                    ));
                }
            };
            Ok((vec![alg], DecodingKey::from_ec_pem(spki_pem).map_err(bad)?))
        }
        OID_ED25519 => Ok((
            vec![Algorithm::EdDSA],
            DecodingKey::from_ed_pem(spki_pem).map_err(bad)?,
        )),
        OID_RSA => Ok((
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            DecodingKey::from_rsa_pem(spki_pem).map_err(bad)?,
        )),
        other => Err(format!(
            "key algorithm {other} is not supported (EC P-256/P-384, Ed25519, RSA)"
        )),
    }
}

impl AssertionVerifier {
    /// Read the key files named in `config`.
    pub fn from_config(config: &AssertionConfig) -> Result<Self, AssertionConfigError> {
        let mut keys = Vec::new();
        for k in &config.keys {
            let pem = std::fs::read(&k.public_key_file).map_err(|e| AssertionConfigError::Key {
                path: k.public_key_file.clone(),
                message: format!("cannot read: {e}"),
            })?;
            keys.push(AssertionKey {
                kid: k.kid.clone(),
                public_key_pem: pem,
                algorithm: k.algorithm.clone(),
                issuer: k.issuer.clone(),
            });
        }
        Self::new(config, keys).map_err(|(i, message)| AssertionConfigError::Key {
            path: config.keys[i].public_key_file.clone(),
            message,
        })
    }

    /// Build from keys already in memory (`config.keys` is ignored).
    pub fn new(config: &AssertionConfig, keys: Vec<AssertionKey>) -> Result<Self, (usize, String)> {
        if keys.is_empty() {
            return Err((0, "no keys configured".into()));
        }
        let mut built = Vec::new();
        for (i, k) in keys.into_iter().enumerate() {
            let (mut algorithms, decoding) =
                key_algorithms(&k.public_key_pem).map_err(|e| (i, e))?;
            if let Some(name) = &k.algorithm {
                let alg: Algorithm = name
                    .parse()
                    .map_err(|_| (i, format!("unknown algorithm {name:?}")))?;
                if !algorithms.contains(&alg) {
                    return Err((
                        i,
                        format!(
                            "algorithm {name} does not fit this key type (allowed: {algorithms:?})"
                        ),
                    ));
                }
                algorithms = vec![alg];
            }
            built.push(Key {
                kid: k.kid,
                algorithms,
                decoding,
                issuer: k.issuer,
            });
        }
        Ok(Self {
            keys: built.into(),
            header: config.header.clone(),
            audience: config.audience.clone(),
            max_age: config.max_age,
            leeway: config.leeway,
        })
    }

    /// The request header to read the assertion from.
    pub fn header_name(&self) -> &str {
        &self.header
    }

    pub fn max_age(&self) -> SignedDuration {
        self.max_age
    }

    /// Verify `token` for `device` at `now`.
    pub fn verify(
        &self,
        token: &str,
        device: &VerifiedDevice,
        now: Timestamp,
    ) -> Result<VerifiedAssertion, AssertionError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AssertionError::Malformed(
                "empty or longer than 8 KiB".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AssertionError::Malformed(e.to_string()))?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (None, None) => true,
                _ => false,
            })
            .collect();
        if candidates.is_empty() {
            return Err(AssertionError::UnknownKey);
        }
        // The header's alg is only checked against each key's allow-list, never trusted alone.
        let usable: Vec<&Key> = candidates
            .into_iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if usable.is_empty() {
            return Err(AssertionError::AlgorithmNotAllowed(format!(
                "{:?}",
                header.alg
            )));
        }
        let mut claims = None;
        for key in &usable {
            let mut v = Validation::new(header.alg);
            v.algorithms = key.algorithms.clone();
            // Time is checked below with the injected clock.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &v) {
                Ok(data) => {
                    claims = Some((data.claims, *key));
                    break;
                }
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                        return Err(AssertionError::AlgorithmNotAllowed(format!(
                            "{:?}",
                            header.alg
                        )));
                    }
                    _ => return Err(AssertionError::Malformed(e.to_string())),
                },
            }
        }
        let (c, key) = claims.ok_or(AssertionError::BadSignature)?;
        if let Some(want) = &key.issuer
            && c.iss.as_deref() != Some(want.as_str())
        {
            return Err(AssertionError::WrongIssuerOrAudience);
        }
        if let Some(want) = &self.audience {
            let ok = match &c.aud {
                Some(serde_json::Value::String(s)) => s == want,
                Some(serde_json::Value::Array(a)) => {
                    a.iter().any(|v| v.as_str() == Some(want.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(AssertionError::WrongIssuerOrAudience);
            }
        }
        // Binding first: a replayed token must say "wrong device", whatever its age.
        let bound = c
            .cnf
            .and_then(|cnf| cnf.x5t_s256)
            .ok_or(AssertionError::NotBound)?;
        if bound != device.x5t_s256() {
            return Err(AssertionError::WrongDevice);
        }
        if let Some(sub) = &c.sub
            && sub != device.id()
        {
            return Err(AssertionError::WrongDevice);
        }
        let ts = |s: i64| {
            Timestamp::from_second(s)
                .map_err(|_| AssertionError::Malformed("time claim out of range".into()))
        };
        let issued_at = ts(c
            .iat
            .ok_or_else(|| AssertionError::Malformed("iat is required".into()))?)?;
        if issued_at > now + self.leeway {
            return Err(AssertionError::OutsideValidity);
        }
        if now.duration_since(issued_at) > self.max_age {
            return Err(AssertionError::Stale { issued_at });
        }
        if let Some(nbf) = c.nbf
            && ts(nbf)? > now + self.leeway
        {
            return Err(AssertionError::OutsideValidity);
        }
        if let Some(exp) = c.exp
            && ts(exp)? + self.leeway <= now
        {
            return Err(AssertionError::OutsideValidity);
        }
        let observed_at = match c.observed_at {
            Some(o) => ts(o)?.min(issued_at),
            None => issued_at,
        };
        Ok(VerifiedAssertion {
            issuer: c.iss,
            device_id: device.id().to_owned(),
            issued_at,
            observed_at,
            posture: c.posture,
        })
    }
}

/// A signing key given in memory.
#[derive(Debug, Clone)]
pub struct AssertionKey {
    pub kid: Option<String>,
    pub public_key_pem: Vec<u8>,
    pub algorithm: Option<String>,
    pub issuer: Option<String>,
}
