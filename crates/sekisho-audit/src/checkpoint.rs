//! Signed checkpoints: an Ed25519 signature over (seq, line hash, time, instance, file) of
//! the last record written, appended to a sidecar file (`checkpoints.jsonl` by default).
//!
//! The signing key lives outside the log directory, so whoever can edit the log cannot
//! forge a checkpoint: records up to the last checkpoint cannot be changed, dropped or
//! cut off without `verify` noticing, even by someone who recomputes the whole hash chain.
//! Records written after the last checkpoint are protected by the chain alone.
//!
//! Keys: the private key is PKCS#8 (PEM `PRIVATE KEY` or DER); the public key is PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo) or the raw 32 bytes. Crypto: aws-lc-rs.
use std::path::Path;

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::AuditError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// One line of the checkpoint sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Sequence number of the record attested.
    pub seq: u64,
    /// File holding that record.
    pub file: String,
    /// SHA-256 (hex) of that record's line.
    pub hash: String,
    /// When the checkpoint was made (RFC 3339).
    pub time: String,
    /// Gateway instance.
    pub instance: String,
    /// Ed25519 signature (base64) over [`Checkpoint::signed_message`].
    pub sig: String,
}

impl Checkpoint {
    /// The exact bytes that are signed.
    pub fn signed_message(&self) -> Vec<u8> {
        format!(
            "sekisho-audit-checkpoint-v1\n{}\n{}\n{}\n{}\n{}",
            self.seq, self.hash, self.time, self.instance, self.file
        )
        .into_bytes()
    }

    /// Check the signature against a public key.
    pub fn verify(&self, key: &PublicKey) -> bool {
        let Ok(sig) = B64.decode(&self.sig) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ED25519, &key.0)
            .verify(&self.signed_message(), &sig)
            .is_ok()
    }
}

/// The checkpoint signing key. It has no `Debug` and never prints.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// Load a PKCS#8 private key (PEM or DER).
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let bytes = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
        let der = pem_or_der(&bytes, "PRIVATE KEY")
            .ok_or_else(|| AuditError::Key(format!("{}: not a PEM or DER key", path.display())))?;
        Self::from_pkcs8(&der)
    }

    /// From PKCS#8 DER bytes.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, AuditError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(SigningKey)
            .map_err(|e| AuditError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key().as_ref().to_vec())
    }

    /// Sign a checkpoint (fills `sig`).
    pub fn sign(&self, cp: &mut Checkpoint) {
        cp.sig = B64.encode(self.0.sign(&cp.signed_message()).as_ref());
    }
}

/// A checkpoint verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// Load from a PEM `PUBLIC KEY` file, DER SPKI, or 32 raw bytes.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let bytes = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
        Self::from_bytes(&bytes).ok_or_else(|| {
            AuditError::Key(format!("{}: not an Ed25519 public key", path.display()))
        })
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let der = pem_or_der(bytes, "PUBLIC KEY")?;
        if der.len() == 32 {
            return Some(PublicKey(der));
        }
        let raw = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        (raw.len() == 32).then(|| PublicKey(raw.to_vec()))
    }

    /// PEM `PUBLIC KEY` text.
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der)
    }
}

/// A new key pair: (private key PEM, public key PEM).
pub fn generate_key_pair() -> Result<(String, String), AuditError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| AuditError::Key("key generation failed".into()))?;
    let key = SigningKey::from_pkcs8(doc.as_ref())?;
    Ok((pem("PRIVATE KEY", doc.as_ref()), key.public_key().to_pem()))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn pem_or_der(bytes: &[u8], label: &str) -> Option<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some(bytes.to_vec());
    };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        // Not PEM: DER if it is not text at all.
        return (!text.trim().is_empty() && !text.contains("-----")).then(|| bytes.to_vec());
    };
    let body = &text[start + begin.len()..];
    let stop = body.find(&end)?;
    let b64: String = body[..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok()
}

/// Read every checkpoint in a sidecar file; unparsable lines are returned as errors
/// with their 1-based line number.
pub fn read_sidecar(path: &Path) -> Result<Vec<Result<Checkpoint, usize>>, AuditError> {
    let data = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(path, e)),
    };
    Ok(data
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| serde_json::from_slice(l).map_err(|_| i + 1))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_tamper() {
        let (priv_pem, pub_pem) = generate_key_pair().unwrap();
        let key = SigningKey::from_pkcs8(&pem_or_der(priv_pem.as_bytes(), "PRIVATE KEY").unwrap())
            .unwrap();
        let public = PublicKey::from_bytes(pub_pem.as_bytes()).unwrap();
        assert_eq!(public, key.public_key());
        let mut cp = Checkpoint {
            seq: 7,
            file: "audit-2026-11-23-0001.jsonl".into(),
            hash: "ab".repeat(32),
            time: "2026-11-23T09:00:00.000+09:00".into(),
            instance: "gw-1".into(),
            sig: String::new(),
        };
        key.sign(&mut cp);
        assert!(cp.verify(&public));
        let mut other = cp.clone();
        other.seq = 8;
        assert!(!other.verify(&public));
        let (_, other_pub) = generate_key_pair().unwrap();
        assert!(!cp.verify(&PublicKey::from_bytes(other_pub.as_bytes()).unwrap()));
    }
}
