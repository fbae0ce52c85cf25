//! Bearer tokens (`Authorization: Bearer <JWT>`) for scripts and apps.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::claims::{AuthMethod, MappedClaims, VerifiedIdentity};
use crate::config::BearerConfig;
use crate::error::{IdentityError, TokenError};
use crate::http_client::IdpHttpClient;
use crate::jwks::{JwksCache, JwksSource, JwtRules, Refresh, verify_jwt};
use crate::metrics::IdentityMetrics;

/// Verifies bearer JWTs of one issuer against its JWKS.
#[derive(Debug)]
pub struct BearerVerifier {
    cfg: BearerConfig,
    types: Vec<String>,
    jwks: Arc<JwksCache>,
    metrics: Arc<IdentityMetrics>,
    verified: VerifiedTokens,
}

/// Longest time between two full verifications of one token (and moka's memory bound).
const VERIFIED_TOKEN_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// Most tokens kept in the cache of verified tokens.
const VERIFIED_TOKEN_CAPACITY: u64 = 10_000;

/// Tokens that passed full verification, keyed by the SHA-256 of the token.
///
/// Why: profiling showed the full verification of every bearer request (the RSA-2048 signature
/// check in `verify_jwt`, then the claims mapping) at ~17% of the gateway's CPU for bearer
/// requests, although API clients present the same token thousands of times in a row.
///
/// How stale a hit can be — an entry is used only while all of these hold, decided with the
/// injected `now` (moka's wall-clock time-to-live is a memory bound, not a security decision):
/// * the JWKS generation is the one the token was verified under, so a token revoked by
///   removing its signing key from the JWKS stops working at the next JWKS refresh (exactly as
///   without the cache; a refetch of unchanged keys keeps the entries);
/// * `now < exp + leeway`: a token's own `exp` is always honoured (a token without `exp` never
///   passes verification, and would get the 5-minute bound only);
/// * `verified_at <= now < verified_at + 5 minutes`: at most 5 minutes pass between full
///   verifications, and a `now` earlier than the verification (`nbf`/`iat` not checked for it)
///   goes through full verification.
///
/// Only accepted tokens are stored: a refused token pays full verification every time (no
/// negative cache), and a refusal removes any earlier entry of the token. The key is a digest,
/// so the cache holds no token; the identity it holds is what the verification returned.
struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
}

struct VerifiedToken {
    identity: VerifiedIdentity,
    /// JWKS generation of the key that verified the token.
    generation: u64,
    /// Unix second of the `now` of the full verification.
    verified_at: i64,
    /// Unix second from which the entry is no longer used: `min(exp + leeway, verified_at +
    /// 5 min)`.
    valid_until: i64,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries (identities and claims), only how many there are.
        f.debug_struct("VerifiedTokens")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl VerifiedTokens {
    fn new() -> Self {
        VerifiedTokens {
            cache: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKEN_CAPACITY)
                .time_to_live(VERIFIED_TOKEN_MAX_AGE)
                .build(),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity of a still-valid entry (see the type's documentation).
    fn get(&self, key: &[u8; 32], generation: u64, now: Timestamp) -> Option<VerifiedIdentity> {
        let entry = self.cache.get(key)?;
        let now_s = now.as_second();
        let valid = entry.generation == generation
            && entry.verified_at <= now_s
            && now_s < entry.valid_until;
        valid.then(|| entry.identity.clone())
    }

    fn insert(
        &self,
        key: [u8; 32],
        identity: &VerifiedIdentity,
        generation: u64,
        exp: Option<i64>,
        leeway: Duration,
        now: Timestamp,
    ) {
        let verified_at = now.as_second();
        let max_age = VERIFIED_TOKEN_MAX_AGE.as_secs() as i64;
        let mut valid_until = verified_at.saturating_add(max_age);
        if let Some(exp) = exp {
            valid_until = valid_until.min(exp.saturating_add(leeway.as_secs() as i64));
        }
        if valid_until <= verified_at {
            return;
        }
        self.cache.insert(
            key,
            Arc::new(VerifiedToken {
                identity: identity.clone(),
                generation,
                verified_at,
                valid_until,
            }),
        );
    }
}

/// The bearer token of a request: `Ok(None)` without an `Authorization` header, an error for
/// several headers, another scheme with a JWT-looking value, or an empty token.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(TokenError::Malformed);
    }
    let s = first.to_str().map_err(|_| TokenError::Malformed)?;
    let Some((scheme, token)) = s.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Some(token))
}

impl BearerVerifier {
    /// A verifier with its own JWKS cache (nothing is fetched until the first token).
    pub fn new(cfg: BearerConfig, metrics: Arc<IdentityMetrics>) -> Result<Self, IdentityError> {
        let http = IdpHttpClient::new(cfg.http_timeout)
            .map_err(|e| IdentityError::Config(e.to_string()))?;
        let source = match &cfg.jwks_uri {
            Some(u) => JwksSource::Uri(u.clone()),
            None => JwksSource::Discover(url::Url::parse(&cfg.issuer).map_err(|_| {
                IdentityError::Config(format!("bearer.issuer {:?} is not a URL", cfg.issuer))
            })?),
        };
        let jwks = Arc::new(JwksCache::new(
            http,
            source,
            cfg.algorithms.clone(),
            cfg.jwks_min_refresh_interval,
            metrics.clone(),
        ));
        Self::with_jwks(cfg, jwks, metrics)
    }

    /// A verifier sharing a JWKS cache (e.g. the OIDC provider's, same issuer).
    pub fn with_jwks(
        cfg: BearerConfig,
        jwks: Arc<JwksCache>,
        metrics: Arc<IdentityMetrics>,
    ) -> Result<Self, IdentityError> {
        if cfg.audiences.is_empty() {
            return Err(IdentityError::Config(
                "bearer.audiences must not be empty".into(),
            ));
        }
        let types = cfg
            .accepted_types
            .iter()
            .map(|t| {
                let t = t.to_ascii_lowercase();
                t.strip_prefix("application/").unwrap_or(&t).to_owned()
            })
            .collect();
        Ok(BearerVerifier {
            cfg,
            types,
            jwks,
            metrics,
            verified: VerifiedTokens::new(),
        })
    }

    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// Fetches the keys ahead of the first token (at start; failure is not fatal).
    pub async fn prefetch(&self, now: Timestamp) -> Refresh {
        self.jwks.refresh(now).await
    }

    /// Verifies `token` and maps its claims. All claims are kept for policy.
    ///
    /// A token that passed full verification is answered from a cache for a while (at most
    /// 5 minutes, never past its `exp` + leeway, never across a change of the JWKS keys); see
    /// `VerifiedTokens`.
    pub async fn verify(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<VerifiedIdentity, TokenError> {
        // Oversized tokens are refused by `verify_jwt` before any work, hashing included.
        let key = (token.len() <= self.cfg.max_token_bytes).then(|| VerifiedTokens::key(token));
        if let Some(key) = &key
            && let Some(identity) = self.verified.get(key, self.jwks.generation(), now)
        {
            IdentityMetrics::inc(&self.metrics.bearer_ok);
            IdentityMetrics::inc(&self.metrics.bearer_cache_hits);
            return Ok(identity);
        }
        let res = self.verify_full(token, now).await;
        match (&res, key) {
            (Ok((identity, exp, generation)), Some(key)) => {
                self.verified
                    .insert(key, identity, *generation, *exp, self.cfg.leeway, now);
            }
            (Err(_), Some(key)) => self.verified.cache.invalidate(&key),
            _ => {}
        }
        match &res {
            Ok(_) => IdentityMetrics::inc(&self.metrics.bearer_ok),
            Err(_) => IdentityMetrics::inc(&self.metrics.bearer_rejected),
        }
        res.map(|(identity, _, _)| identity)
    }

    /// Full verification: signature, `typ`, `iss`, `aud`, times, then the claims mapping.
    /// Returns the identity, the token's `exp` and the JWKS generation of the key that verified
    /// it.
    async fn verify_full(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<(VerifiedIdentity, Option<i64>, u64), TokenError> {
        let rules = JwtRules {
            issuer: &self.cfg.issuer,
            audiences: &self.cfg.audiences,
            leeway: self.cfg.leeway,
            max_bytes: self.cfg.max_token_bytes,
            accepted_types: &self.types,
            require_typ: self.cfg.require_typ,
        };
        let (claims, generation) = verify_jwt(&self.jwks, token, &rules, now).await?;
        let exp = claims.get("exp").and_then(Value::as_i64);
        let identity = MappedClaims::from_raw(&claims, &self.cfg.claims, true)
            .map(|m| {
                m.into_identity(
                    &self.cfg.issuer,
                    AuthMethod::Bearer,
                    exp.and_then(|e| Timestamp::from_second(e).ok()),
                    None,
                )
            })
            .ok_or(TokenError::MissingClaim("sub"))?;
        Ok((identity, exp, generation))
    }

    /// Whether `token` has an entry in the cache of verified tokens (valid or not).
    #[cfg(test)]
    fn is_cached(&self, token: &str) -> bool {
        self.verified
            .cache
            .contains_key(&VerifiedTokens::key(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::upstream::AssertionSigner;

    const ISS: &str = "https://idp.sekisho.test";
    const AUD: &str = "sekisho-api";

    /// A JWKS endpoint on 127.0.0.1 whose body the test changes (a key rotation at the IdP).
    struct JwksServer {
        url: url::Url,
        body: Arc<Mutex<String>>,
        fetches: Arc<AtomicUsize>,
    }

    impl JwksServer {
        async fn start(body: String) -> JwksServer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap());
            let body = Arc::new(Mutex::new(body));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (b, f) = (body.clone(), fetches.clone());
            tokio::spawn(async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    let (b, f) = (b.clone(), f.clone());
                    tokio::spawn(async move {
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        f.fetch_add(1, Ordering::SeqCst);
                        let body = b.lock().unwrap().clone();
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = conn.write_all(resp.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    });
                }
            });
            JwksServer {
                url: url::Url::parse(&url).unwrap(),
                body,
                fetches,
            }
        }

        fn serve(&self, body: String) {
            *self.body.lock().unwrap() = body;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    /// An ES256 signing key of the test IdP; its tokens live `lifetime_s` seconds.
    fn signer(lifetime_s: u64) -> AssertionSigner {
        AssertionSigner::generate(ISS, Duration::from_secs(lifetime_s))
            .unwrap()
            .0
    }

    /// A token for `sub` and audience `aud`, issued at `iat` (`exp` = `iat` + lifetime).
    fn token(signer: &AssertionSigner, sub: &str, aud: &str, iat: Timestamp) -> String {
        let who = VerifiedIdentity::dangerous_unverified(
            ISS,
            sub,
            vec![format!("{sub}-group")],
            vec![],
            AuthMethod::Bearer,
        );
        signer
            .sign(&who, aud, None, "v1", &format!("req-{sub}"), iat)
            .unwrap()
    }

    fn verifier(jwks: &JwksServer) -> (BearerVerifier, Arc<IdentityMetrics>) {
        let mut cfg = BearerConfig::new(ISS, vec![AUD.to_owned()]);
        cfg.jwks_uri = Some(jwks.url.clone());
        cfg.http_timeout = Duration::from_secs(5);
        let metrics = Arc::new(IdentityMetrics::default());
        (BearerVerifier::new(cfg, metrics.clone()).unwrap(), metrics)
    }

    /// The signer and its JWKS server (kept alive for the test's length).
    type Idp = (AssertionSigner, JwksServer);

    /// A verifier with its metrics, the time now, a token for alice issued then, and the
    /// signer (tokens live `ttl` seconds) with its JWKS on loopback.
    async fn fixture(ttl: u64) -> (BearerVerifier, Arc<IdentityMetrics>, Timestamp, String, Idp) {
        let idp = signer(ttl);
        let jwks = JwksServer::start(idp.jwks_json()).await;
        let (v, m) = verifier(&jwks);
        let t0 = Timestamp::now();
        let tok = token(&idp, "alice", AUD, t0);
        (v, m, t0, tok, (idp, jwks))
    }

    fn at(base: Timestamp, secs: i64) -> Timestamp {
        Timestamp::from_second(base.as_second() + secs).unwrap()
    }

    fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn same_token_twice_is_a_cache_hit_with_the_same_identity() {
        let (v, m, t0, tok, (_, jwks)) = fixture(3600).await;

        let first = v.verify(&tok, t0).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 0);
        assert!(v.is_cached(&tok));
        let second = v.verify(&tok, at(t0, 10)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 1);
        assert_eq!(count(&m.bearer_ok), 2, "hits are accepted requests too");
        assert_eq!(first, second);
        assert_eq!(second.sub(), "alice");
        assert_eq!(second.groups(), ["alice-group".to_owned()]);
        assert_eq!(jwks.fetches(), 1);
    }

    #[tokio::test]
    async fn cached_token_is_refused_once_now_passes_exp_plus_leeway() {
        // exp = t0 + 60, leeway 60 s: exp + leeway comes well before the 5-minute bound, so
        // only the `exp` check can end the hits.
        let (v, m, t0, tok, _idp) = fixture(60).await;

        v.verify(&tok, t0).await.unwrap();
        v.verify(&tok, at(t0, 60 + 59)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 1);
        assert_eq!(
            v.verify(&tok, at(t0, 60 + 61)).await.unwrap_err(),
            TokenError::Expired
        );
        assert_eq!(count(&m.bearer_cache_hits), 1);
        assert!(!v.is_cached(&tok), "a refusal removes the entry");
        assert_eq!(
            v.verify(&tok, at(t0, 60 + 62)).await.unwrap_err(),
            TokenError::Expired
        );
    }

    #[tokio::test]
    async fn cached_token_is_not_used_before_the_time_it_was_verified_at() {
        // Verified at t0 (iat = t0); a request whose `now` is earlier than iat - leeway must
        // get the `iat` check of full verification, not the entry.
        let (v, m, t0, tok, _idp) = fixture(3600).await;

        v.verify(&tok, t0).await.unwrap();
        assert_eq!(
            v.verify(&tok, at(t0, -61)).await.unwrap_err(),
            TokenError::NotYetValid
        );
        assert_eq!(count(&m.bearer_cache_hits), 0);
    }

    #[tokio::test]
    async fn cached_token_is_verified_again_after_five_minutes() {
        let (v, m, t0, tok, _idp) = fixture(3600).await;

        v.verify(&tok, t0).await.unwrap();
        v.verify(&tok, at(t0, 299)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 1);
        // Full verification again (accepted: the token lives an hour), which starts a new entry.
        v.verify(&tok, at(t0, 300)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 1);
        v.verify(&tok, at(t0, 301)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 2);
        assert_eq!(count(&m.bearer_ok), 4);
    }

    #[tokio::test]
    async fn cached_token_is_refused_after_its_key_leaves_the_jwks() {
        let old = signer(3600);
        let new = signer(3600);
        let jwks = JwksServer::start(old.jwks_json()).await;
        let (v, m) = verifier(&jwks);
        let t0 = Timestamp::now();
        let tok = token(&old, "alice", AUD, t0);

        v.verify(&tok, t0).await.unwrap();
        v.verify(&tok, at(t0, 1)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 1);
        let before = v.jwks().generation();

        // The IdP rotates: the old key is gone. Until the JWKS is refreshed nothing changes
        // (as without the cache); after the refresh the cached token is refused.
        jwks.serve(new.jwks_json());
        assert_eq!(v.prefetch(at(t0, 31)).await, Refresh::Fetched);
        assert!(v.jwks().generation() > before);
        assert_eq!(
            v.verify(&tok, at(t0, 32)).await.unwrap_err(),
            TokenError::UnknownKey
        );
        assert_eq!(count(&m.bearer_cache_hits), 1);
        assert!(!v.is_cached(&tok));
        // Tokens of the new key verify.
        let fresh = token(&new, "alice", AUD, at(t0, 32));
        assert_eq!(v.verify(&fresh, at(t0, 33)).await.unwrap().sub(), "alice");
    }

    #[tokio::test]
    async fn jwks_generation_moves_only_when_the_keys_or_the_uri_change() {
        let (v, m, t0, tok, (_, jwks)) = fixture(3600).await;
        v.verify(&tok, t0).await.unwrap();
        let g = v.jwks().generation();

        // A refetch of the same keys keeps the generation, and so the entries.
        assert_eq!(v.prefetch(at(t0, 31)).await, Refresh::Fetched);
        assert_eq!(jwks.fetches(), 2);
        assert_eq!(v.jwks().generation(), g);
        v.verify(&tok, at(t0, 32)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 1);
        // A failed fetch keeps the cached keys and the generation.
        jwks.serve("not json".into());
        assert!(matches!(v.prefetch(at(t0, 62)).await, Refresh::Failed(_)));
        assert_eq!(v.jwks().generation(), g);
        v.verify(&tok, at(t0, 63)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 2);
        // Discovery naming the same jwks_uri keeps it; another jwks_uri starts a new one, and
        // the token goes through full verification again (accepted: the keys are still there).
        v.jwks().set_uri(jwks.url.as_str());
        assert_eq!(v.jwks().generation(), g);
        v.jwks().set_uri("http://127.0.0.1:9/other-jwks");
        assert!(v.jwks().generation() > g);
        v.verify(&tok, at(t0, 64)).await.unwrap();
        assert_eq!(count(&m.bearer_cache_hits), 2);
        assert_eq!(count(&m.bearer_ok), 4);
    }

    #[tokio::test]
    async fn refused_tokens_are_never_cached() {
        let idp = signer(3600);
        let jwks = JwksServer::start(idp.jwks_json()).await;
        let (v, m) = verifier(&jwks);
        let t0 = Timestamp::now();
        let wrong_aud = token(&idp, "alice", "another-api", t0);

        for i in 0..2 {
            assert_eq!(
                v.verify(&wrong_aud, at(t0, i)).await.unwrap_err(),
                TokenError::WrongAudience
            );
            assert!(!v.is_cached(&wrong_aud));
        }
        assert_eq!(count(&m.bearer_cache_hits), 0);
        assert_eq!(count(&m.bearer_rejected), 2);
        assert_eq!(count(&m.bearer_ok), 0);
    }

    #[tokio::test]
    async fn different_tokens_never_return_each_others_identity() {
        let idp = signer(3600);
        let jwks = JwksServer::start(idp.jwks_json()).await;
        let (v, m) = verifier(&jwks);
        let t0 = Timestamp::now();
        let alice = token(&idp, "alice", AUD, t0);
        let bob = token(&idp, "bob", AUD, t0);

        assert_eq!(v.verify(&alice, t0).await.unwrap().sub(), "alice");
        assert_eq!(v.verify(&bob, t0).await.unwrap().sub(), "bob");
        for i in 1..3 {
            let a = v.verify(&alice, at(t0, i)).await.unwrap();
            let b = v.verify(&bob, at(t0, i)).await.unwrap();
            assert_eq!(
                (a.sub(), a.groups()),
                ("alice", &["alice-group".to_owned()][..])
            );
            assert_eq!(
                (b.sub(), b.groups()),
                ("bob", &["bob-group".to_owned()][..])
            );
        }
        assert_eq!(count(&m.bearer_cache_hits), 4);
    }

    #[test]
    fn authorization_header_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&h), Ok(Some("abc.def.ghi")));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), Err(TokenError::Malformed));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer d.e.f"));
        assert_eq!(bearer_token(&h), Err(TokenError::Malformed));
    }
}
