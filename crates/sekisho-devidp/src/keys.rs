//! The per-process ES256 signing key, its JWK, and random values.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};

use crate::error::{DevIdpError, Result};

/// `length` random bytes from the OS generator (aws-lc-rs), base64url.
pub(crate) fn random_token(length: usize) -> String {
    let mut b = vec![0u8; length];
    aws_lc_rs::rand::fill(&mut b).expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn sha256_b64url(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// An ES256 key generated when the IdP starts; it never leaves the process.
pub(crate) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl SigningKey {
    pub(crate) fn generate() -> Result<Self> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| DevIdpError::Key(e.to_string()))?;
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y.
        let raw = kp.public_key_raw();
        if raw.len() != 65 || raw[0] != 4 {
            return Err(DevIdpError::Key(
                "unexpected P-256 public key encoding".into(),
            ));
        }
        let x = URL_SAFE_NO_PAD.encode(&raw[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&raw[33..]);
        // RFC 7638 thumbprint as the kid: unique per key, so rotation tests can tell keys apart.
        let thumb = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = sha256_b64url(thumb.as_bytes());
        let decoding =
            DecodingKey::from_ec_components(&x, &y).map_err(|e| DevIdpError::Key(e.to_string()))?;
        let encoding = EncodingKey::from_ec_der(&kp.serialize_der());
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "use": "sig", "alg": "ES256",
        });
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` with header `typ` (`JWT` or `at+jwt`).
    pub(crate) fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some(typ.into());
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("ES256 signing with our own key")
    }

    /// Verifies a token this key signed: signature, ES256, `typ`, `iss`. Time claims are the
    /// caller's (it owns the clock).
    pub(crate) fn verify(
        &self,
        token: &str,
        typ: &str,
        issuer: &str,
    ) -> Option<Map<String, Value>> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::ES256
            || header.kid.as_deref() != Some(self.kid.as_str())
            || !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(typ))
        {
            return None;
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.set_issuer(&[issuer]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}
