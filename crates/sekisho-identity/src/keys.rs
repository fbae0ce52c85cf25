//! Secrets: the cookie key ring and a redacting string wrapper.
//!
//! Cookie values are sealed with `cookie`'s private jar: AES-256-GCM with the cookie name bound
//! in as associated data, so a value cannot be moved from one cookie name to another. The jar
//! takes one key; rotation is ours: the newest key seals, every key in the ring opens, and a key
//! stops opening when the operator removes it from the ring.

use std::fmt;

use cookie::{Cookie, CookieJar, Key};
use subtle::ConstantTimeEq;

use crate::error::IdentityError;

/// A secret string (client secret, admin token …). `Debug` and `Display` print `[redacted]`;
/// equality is constant-time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; named so every use is easy to find.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}
impl Eq for Secret {}

/// One cookie key: a name for operators (never secret) and 32..=64 bytes of master key
/// material, from which the AES-256-GCM key is derived (HKDF-SHA256 in `cookie`).
pub struct CookieKey {
    id: String,
    master: Vec<u8>,
    key: Key,
}

impl CookieKey {
    /// `master` must hold at least 32 random bytes (e.g. `openssl rand 32`).
    pub fn new(id: impl Into<String>, master: &[u8]) -> Result<Self, IdentityError> {
        if master.len() < 32 || master.len() > 64 {
            return Err(IdentityError::Config(
                "a cookie key needs 32 to 64 bytes of key material".into(),
            ));
        }
        Ok(CookieKey {
            id: id.into(),
            master: master.to_vec(),
            key: Key::derive_from(master),
        })
    }

    /// A fresh random key (for tests and for `sekisho` to print a new key).
    pub fn generate(id: impl Into<String>) -> Self {
        let mut master = [0u8; 32];
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        master[..16].copy_from_slice(a.as_bytes());
        master[16..].copy_from_slice(b.as_bytes());
        // uuid v4 uses the OS CSPRNG (getrandom); 2 × 122 random bits.
        CookieKey::new(id, &master).expect("32 bytes")
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Clone for CookieKey {
    fn clone(&self) -> Self {
        CookieKey::new(self.id.clone(), &self.master).expect("already validated")
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CookieKey({:?}, [redacted])", self.id)
    }
}

impl PartialEq for CookieKey {
    fn eq(&self, other: &Self) -> bool {
        self.master.ct_eq(&other.master).into()
    }
}
impl Eq for CookieKey {}

impl Drop for CookieKey {
    fn drop(&mut self) {
        // Best effort without unsafe code: overwrite our copy of the master key. (`cookie::Key`
        // keeps its derived copy; it offers no wiping.)
        for b in self.master.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.master);
    }
}

/// Keys newest first: the first seals, all open.
#[derive(Clone, Debug)]
pub struct CookieKeyRing {
    keys: Vec<CookieKey>,
    /// Different for every ring built (clones share it: same keys). A session memo remembers
    /// the ring that opened its cookie and is not used under another.
    generation: u64,
}

impl CookieKeyRing {
    /// `keys` newest first; at least one; no two equal.
    pub fn new(keys: Vec<CookieKey>) -> Result<Self, IdentityError> {
        if keys.is_empty() {
            return Err(IdentityError::Config("the cookie key ring is empty".into()));
        }
        for (i, a) in keys.iter().enumerate() {
            if keys[i + 1..].iter().any(|b| a == b) {
                return Err(IdentityError::Config(format!(
                    "cookie key {:?} appears twice in the key ring",
                    a.id
                )));
            }
        }
        static RINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(CookieKeyRing {
            keys,
            generation: RINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The id of the key that seals new cookies.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `plaintext` for the cookie `name` with the newest key.
    pub fn seal(&self, name: &str, plaintext: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.keys[0].key)
            .add(Cookie::new(name.to_owned(), plaintext.to_owned()));
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// Opens a value sealed for the cookie `name` by any key of the ring.
    pub fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let jar = CookieJar::new();
        self.keys.iter().find_map(|k| {
            jar.private(&k.key)
                .decrypt(Cookie::new(name.to_owned(), sealed.to_owned()))
                .map(|c| c.value().to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_newest_seals_older_opens_removed_fails() {
        let old = CookieKey::generate("2025");
        let new = CookieKey::generate("2026");
        let ring_old = CookieKeyRing::new(vec![old.clone()]).unwrap();
        let sealed_old = ring_old.seal("__Host-sekisho", "hello");
        let ring = CookieKeyRing::new(vec![new.clone(), old.clone()]).unwrap();
        assert_eq!(
            ring.open("__Host-sekisho", &sealed_old).as_deref(),
            Some("hello")
        );
        let sealed_new = ring.seal("__Host-sekisho", "world");
        assert_eq!(ring_old.open("__Host-sekisho", &sealed_new), None);
        let ring_removed = CookieKeyRing::new(vec![new]).unwrap();
        assert_eq!(ring_removed.open("__Host-sekisho", &sealed_old), None);
        assert_eq!(
            ring_removed.open("__Host-sekisho", &sealed_new).as_deref(),
            Some("world")
        );
    }

    #[test]
    fn name_is_bound() {
        let ring = CookieKeyRing::new(vec![CookieKey::generate("k")]).unwrap();
        let sealed = ring.seal("__Host-a", "v");
        assert_eq!(ring.open("__Host-b", &sealed), None);
    }

    #[test]
    fn debug_never_prints_key_material() {
        let k = CookieKey::new("k1", &[7u8; 32]).unwrap();
        let s = format!("{k:?} {:?}", CookieKeyRing::new(vec![k.clone()]).unwrap());
        assert!(!s.contains("7, 7"), "{s}");
        assert!(s.contains("redacted"));
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret([redacted])"
        );
    }

    #[test]
    fn short_keys_and_duplicates_are_refused() {
        assert!(CookieKey::new("x", &[1u8; 16]).is_err());
        let k = CookieKey::new("a", &[1u8; 32]).unwrap();
        let k2 = CookieKey::new("b", &[1u8; 32]).unwrap();
        assert!(CookieKeyRing::new(vec![k, k2]).is_err());
        assert!(CookieKeyRing::new(vec![]).is_err());
    }
}
