//! The issuer's signing keys: fetched, cached, swapped atomically, refreshed on an unknown
//! `kid` with a rate limit; and the one JWT verification routine used for both ID tokens and
//! bearer tokens.
//!
//! The whole key set is one immutable snapshot behind an `ArcSwap` (a lock-free read on every
//! request), rather than a per-key cache: a JWKS is small and is replaced as a unit, and a
//! failed fetch simply keeps the old snapshot — so a JWKS outage never blocks a token whose key
//! is already known.
//!
//! A generation counter ([`JwksCache::generation`]) increases whenever a refresh actually
//! changes the key set (or the `jwks_uri` changes); results derived from the keys, such as the
//! bearer verifier's cache of verified tokens, are only reused within one generation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use url::Url;

use crate::error::TokenError;
use crate::http_client::IdpHttpClient;
use crate::metrics::IdentityMetrics;

/// A verification key and the algorithms it may verify (decided by its type, never by a token).
pub struct VerifyKey {
    decoding: DecodingKey,
    algs: Vec<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    unnamed: Vec<Arc<VerifyKey>>,
    /// The JWKS entries the usable keys came from (their JSON text): two fetches with equal
    /// fingerprints hold the same keys, so the generation stays.
    fingerprint: BTreeSet<String>,
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The algorithms a JWK may verify: its type decides the family, its `alg` (if any) narrows it
/// to one, and the configured allow-list narrows further. Symmetric (`oct`) keys verify nothing.
pub(crate) fn algs_for_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Vec<Algorithm> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return Vec::new();
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => Vec::new(),
    };
    let narrowed: Vec<Algorithm> = match jwk.common.key_algorithm {
        Some(a) => match key_algorithm(a) {
            Some(a) if family.contains(&a) => vec![a],
            _ => Vec::new(),
        },
        None => family,
    };
    narrowed
        .into_iter()
        .filter(|a| allowed.contains(a) && !is_hmac(*a))
        .collect()
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Where the JWKS is.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A known `jwks_uri`.
    Uri(Url),
    /// Discover `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    Discover(Url),
}

/// Cached signing keys of one issuer.
pub struct JwksCache {
    http: IdpHttpClient,
    source: JwksSource,
    uri: ArcSwapOption<String>,
    keys: ArcSwap<KeySet>,
    /// Increases after every change of `keys` or `uri` (see [`JwksCache::generation`]).
    generation: AtomicU64,
    /// Unix second of the last fetch attempt; the mutex also makes refreshes single-flight.
    last_attempt: tokio::sync::Mutex<Option<i64>>,
    min_interval: Duration,
    allowed: Vec<Algorithm>,
    metrics: Arc<IdentityMetrics>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source)
            .field("keys", &self.keys.load().by_kid.keys().collect::<Vec<_>>())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Outcome of a refresh attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Fetched,
    RateLimited,
    Failed(String),
}

impl JwksCache {
    pub fn new(
        http: IdpHttpClient,
        source: JwksSource,
        allowed: Vec<Algorithm>,
        min_interval: Duration,
        metrics: Arc<IdentityMetrics>,
    ) -> Self {
        let uri = match &source {
            JwksSource::Uri(u) => Some(Arc::new(u.to_string())),
            JwksSource::Discover(_) => None,
        };
        JwksCache {
            http,
            source,
            uri: ArcSwapOption::new(uri),
            keys: ArcSwap::from_pointee(KeySet::default()),
            generation: AtomicU64::new(0),
            last_attempt: tokio::sync::Mutex::new(None),
            min_interval,
            allowed: allowed.into_iter().filter(|a| !is_hmac(*a)).collect(),
            metrics,
        }
    }

    /// Sets the `jwks_uri` found by OIDC discovery. A different URI starts a new generation
    /// (discovery runs before every login, so an unchanged URI must not).
    pub fn set_uri(&self, uri: &str) {
        let old = self.uri.swap(Some(Arc::new(uri.to_owned())));
        if old.as_deref().map(String::as_str) != Some(uri) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The key-set generation: increases whenever a refresh changes the set of keys (a key
    /// added, removed or replaced) and when the `jwks_uri` changes; a refetch of the same keys
    /// or a failed fetch keeps it. A caller that reads it *before* verifying a token with
    /// these keys knows that the keys used were at least that new: the keys are swapped in
    /// before the counter moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Key ids currently cached.
    pub fn kids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.load().by_kid.keys().cloned().collect();
        v.sort();
        v
    }

    async fn resolve_uri(&self) -> Result<String, String> {
        if let Some(u) = self.uri.load_full() {
            return Ok((*u).clone());
        }
        let JwksSource::Discover(issuer) = &self.source else {
            return Err("no jwks_uri".into());
        };
        let url = discovery_url(issuer);
        let resp = self
            .http
            .get(&url, "application/json", None)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("discovery answered {}", resp.status()));
        }
        let doc: Value =
            serde_json::from_slice(resp.body()).map_err(|_| "discovery is not JSON")?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer_str(issuer).as_str()) {
            return Err("discovered issuer does not match".into());
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("discovery has no jwks_uri")?
            .to_owned();
        self.set_uri(&jwks);
        Ok(jwks)
    }

    /// Fetches the JWKS unless one was attempted less than `min_interval` ago (by `now`).
    /// On failure the cached keys stay.
    pub async fn refresh(&self, now: Timestamp) -> Refresh {
        let mut last = self.last_attempt.lock().await;
        let now_s = now.as_second();
        if let Some(t) = *last
            && now_s >= t
            && now_s - t < self.min_interval.as_secs() as i64
        {
            IdentityMetrics::inc(&self.metrics.jwks_refresh_limited);
            return Refresh::RateLimited;
        }
        *last = Some(now_s);
        match self.fetch().await {
            Ok(set) => {
                // Single-flight (the mutex above), so nothing else swaps `keys` in between.
                let changed = self.keys.load().fingerprint != set.fingerprint;
                // Keys first, then the generation: whoever sees the new generation also sees
                // the new keys.
                self.keys.store(Arc::new(set));
                if changed {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                }
                IdentityMetrics::inc(&self.metrics.jwks_fetch_ok);
                Refresh::Fetched
            }
            Err(e) => {
                IdentityMetrics::inc(&self.metrics.jwks_fetch_failed);
                tracing::warn!(error = %e, "JWKS fetch failed; keeping cached keys");
                Refresh::Failed(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let uri = self.resolve_uri().await?;
        let resp = self
            .http
            .get(&uri, "application/jwk-set+json, application/json", None)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("JWKS answered {}", resp.status()));
        }
        // Parse key by key so one exotic key does not hide the others.
        let raw: Value = serde_json::from_slice(resp.body()).map_err(|_| "JWKS is not JSON")?;
        let list = raw
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no keys")?;
        let mut set = KeySet::default();
        for k in list {
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            let algs = algs_for_jwk(&jwk, &self.allowed);
            if algs.is_empty() {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let key = Arc::new(VerifyKey { decoding, algs });
            set.fingerprint.insert(k.to_string());
            match &jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid.clone(), key);
                }
                None => set.unnamed.push(key),
            }
        }
        if set.by_kid.is_empty() && set.unnamed.is_empty() {
            // Never swap in an empty key set: an IdP glitch must not drop the cached keys.
            return Err("JWKS has no usable signing keys".into());
        }
        Ok(set)
    }

    /// The key for `kid` (or the one key for `alg` without a kid) and a generation the key
    /// set it came from is at least as new as.
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<(Arc<VerifyKey>, u64)> {
        // The generation before the keys: `refresh` swaps the keys in before it moves the
        // generation, so these keys are at least this generation's (never older).
        let generation = self.generation();
        let set = self.keys.load();
        let key = match kid {
            Some(kid) => set.by_kid.get(kid).cloned(),
            None => {
                let mut candidates = set
                    .by_kid
                    .values()
                    .chain(set.unnamed.iter())
                    .filter(|k| k.algs.contains(&alg));
                let first = candidates.next()?.clone();
                // Without a kid, only an unambiguous key is used.
                if candidates.next().is_some() {
                    None
                } else {
                    Some(first)
                }
            }
        };
        key.map(|k| (k, generation))
    }

    /// The key for a token's `kid`, refreshing (rate-limited) when it is unknown, with the
    /// generation of the key set (see [`JwksCache::lookup`]).
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: Timestamp,
    ) -> Result<(Arc<VerifyKey>, u64), TokenError> {
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        match self.refresh(now).await {
            Refresh::Fetched => self.lookup(kid, alg).ok_or(TokenError::UnknownKey),
            Refresh::RateLimited => {
                let set = self.keys.load();
                if set.by_kid.is_empty() && set.unnamed.is_empty() {
                    // Never fetched successfully yet: the keys are unavailable, not unknown.
                    return Err(TokenError::KeysUnavailable("no keys fetched yet".into()));
                }
                self.lookup(kid, alg).ok_or(TokenError::UnknownKey)
            }
            Refresh::Failed(e) => Err(TokenError::KeysUnavailable(e)),
        }
    }
}

pub(crate) fn issuer_str(issuer: &Url) -> String {
    // `Url` adds a `/` to a bare origin; issuers are compared as the IdP writes them.
    let s = issuer.as_str();
    if issuer.path() == "/" && issuer.query().is_none() {
        s.trim_end_matches('/').to_owned()
    } else {
        s.to_owned()
    }
}

pub(crate) fn discovery_url(issuer: &Url) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.as_str().trim_end_matches('/')
    )
}

/// What a JWT must satisfy besides its signature.
pub(crate) struct JwtRules<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub leeway: Duration,
    pub max_bytes: usize,
    /// Accepted `typ` values, lowercase, without `application/`. Empty: any.
    pub accepted_types: &'a [String],
    pub require_typ: bool,
}

fn header_json(token: &str) -> Result<Map<String, Value>, TokenError> {
    let h = token.split('.').next().ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Verifies a compact JWS: size, shape, `typ`, algorithm against the key's type, signature,
/// `iss`, `aud`, `exp`, `nbf`, `iat` (all times against `now` with the leeway). Returns the
/// claims and the JWKS generation of the key that verified the signature (results kept for
/// reuse, like the bearer verifier's cache, are valid only within that generation).
pub(crate) async fn verify_jwt(
    cache: &JwksCache,
    token: &str,
    rules: &JwtRules<'_>,
    now: Timestamp,
) -> Result<(Map<String, Value>, u64), TokenError> {
    if token.len() > rules.max_bytes {
        return Err(TokenError::TooLarge);
    }
    if token.split('.').count() != 3
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(TokenError::Malformed);
    }
    let raw_header = header_json(token)?;
    let alg_name = raw_header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed)?;
    if alg_name.eq_ignore_ascii_case("none") || alg_name.to_ascii_uppercase().starts_with("HS") {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if raw_header.contains_key("crit") {
        // No critical extensions are understood, so none may be present (RFC 7515 §4.1.11).
        return Err(TokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::AlgorithmNotAllowed)?;
    match header.typ.as_deref() {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if !rules.accepted_types.is_empty() && !rules.accepted_types.iter().any(|a| a == t) {
                return Err(TokenError::WrongType(t.to_owned()));
            }
        }
        None if rules.require_typ => return Err(TokenError::WrongType(String::new())),
        None => {}
    }
    if !cache.allowed.contains(&header.alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    let (key, generation) = cache
        .key_for(header.kid.as_deref(), header.alg, now)
        .await?;
    if !key.algs.contains(&header.alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
            _ => TokenError::Malformed,
        },
    )?;
    let claims = data.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => rules.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| rules.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    let now_s = now.as_second();
    let leeway = rules.leeway.as_secs() as i64;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenError::MissingClaim("exp"))?;
    if now_s > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or(TokenError::MissingClaim("nbf"))?;
        if now_s + leeway < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    if let Some(iat) = claims.get("iat") {
        let iat = iat.as_i64().ok_or(TokenError::MissingClaim("iat"))?;
        if now_s + leeway < iat {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok((claims, generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn key_type_decides_algorithms() {
        let all = crate::config::default_algs();
        let rsa = jwk(serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}));
        assert_eq!(
            algs_for_jwk(&rsa, &all),
            vec![Algorithm::RS256, Algorithm::PS256]
        );
        let rsa_alg = jwk(serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS256"}));
        assert_eq!(algs_for_jwk(&rsa_alg, &all), vec![Algorithm::RS256]);
        let mismatched = jwk(serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB","alg":"ES256"}));
        assert!(algs_for_jwk(&mismatched, &all).is_empty());
        let oct = jwk(serde_json::json!({"kty":"oct","k":"c2VjcmV0","alg":"HS256"}));
        let mut with_hmac = all.clone();
        with_hmac.push(Algorithm::HS256);
        assert!(algs_for_jwk(&oct, &with_hmac).is_empty());
        let enc = jwk(serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB","use":"enc"}));
        assert!(algs_for_jwk(&enc, &all).is_empty());
    }

    #[test]
    fn issuer_string_has_no_trailing_slash_for_origins() {
        assert_eq!(
            issuer_str(&Url::parse("http://127.0.0.1:9/").unwrap()),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            issuer_str(&Url::parse("https://login.example/tenant/v2.0").unwrap()),
            "https://login.example/tenant/v2.0"
        );
        assert_eq!(
            discovery_url(&Url::parse("https://kc.example/realms/city/").unwrap()),
            "https://kc.example/realms/city/.well-known/openid-configuration"
        );
    }
}
