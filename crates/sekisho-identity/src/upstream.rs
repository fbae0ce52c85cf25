//! What goes upstream: client-sent identity headers removed, Sekisho's cookies removed, and a
//! signed assertion (ES256 JWT) that upstreams verify against `/.sekisho/jwks.json`.
//!
//! An ES256 signature costs more than everything else the gateway does for a request
//! (≈ 16 µs here, ≈ 35 % of a request's CPU in the benchmark), so an assertion is reused for the
//! same user, device, route and policy version for a while (`reuse`, by default half its
//! lifetime), the way Google IAP and Cloudflare Access reuse theirs. A reused assertion names no
//! request; with `reuse: 0s` every request gets a fresh one carrying its request ID.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{COOKIE, HeaderName, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::claims::VerifiedIdentity;
use crate::error::IdentityError;

/// Header names (normalised: lowercase, `_` → `-`) that carry identity in common proxies and
/// platforms. Any client-sent header whose normalised name is here, or starts with one of
/// [`IDENTITY_HEADER_PREFIXES`], is removed before the gateway sets its own.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-remote-user",
    "x-remote-email",
    "x-remote-groups",
    "remote-user",
    "x-user",
    "x-user-id",
    "x-email",
    "x-groups",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-authenticated-groups",
    "x-webauth-user",
    "x-id-token",
    "x-access-token",
    "x-userinfo",
];

/// Normalised prefixes of identity-bearing header families.
pub const IDENTITY_HEADER_PREFIXES: &[&str] = &[
    "x-sekisho-",
    "x-auth-request-",
    "x-ms-client-principal",
    "x-ms-token-",
    "x-goog-authenticated-user-",
    "x-goog-iap-jwt",
    "x-amzn-oidc-",
    "oidc-claim-",
    "x-oidc-",
    "oidc-access-token",
    "oidc-id-token",
];

/// The first bytes of the built-in identity names and families (see `is_identity_header`).
const BUILT_IN_FIRST: &[u8] = b"xro";

/// One byte of a header name in its normalised form: lowercase, `_` read as `-`.
fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// `name` starts with `prefix`, both compared in normalised form. No allocation: this runs
/// for every header of every request.
fn starts_like(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name.iter().zip(prefix).all(|(a, p)| fold(*a) == fold(*p))
}

/// `name` is `pattern`, both compared in normalised form.
fn same_name(name: &[u8], pattern: &[u8]) -> bool {
    name.len() == pattern.len() && starts_like(name, pattern)
}

/// Whether a client-sent header name carries identity: the built-in list and families, with
/// case, `_`/`-` variants, or one of the `configured` names (empty entries match nothing).
/// A gateway that copies a client's headers drops these as it copies them.
pub fn is_identity_header(name: &str, configured: &[&str]) -> bool {
    let n = name.as_bytes();
    // Every built-in name and family starts with one of these (a test keeps it so): most
    // headers of a request (host, cookie, accept, user-agent …) need only the configured names.
    configured.iter().any(|c| same_name(n, c.as_bytes()))
        || (n
            .first()
            .is_some_and(|b| BUILT_IN_FIRST.contains(&fold(*b)))
            && (IDENTITY_HEADERS.iter().any(|h| same_name(n, h.as_bytes()))
                || IDENTITY_HEADER_PREFIXES
                    .iter()
                    .any(|p| starts_like(n, p.as_bytes()))))
}

/// Removes every identity-looking header: the built-in list, the configured names (the
/// gateway's own identity headers and assertion header), with case, `_`/`-` and duplicate
/// variants (`X_Forwarded_Email`, `x-forwarded-email` twice …). Returns how many header names
/// were removed (for the audit record).
pub fn strip_identity_headers(headers: &mut HeaderMap, configured: &[&str]) -> usize {
    // Empty unless a client sent such a header, so nothing is allocated on the usual path.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_identity_header(k.as_str(), configured))
        .cloned()
        .collect();
    for name in &doomed {
        // `remove` drops every value of a repeated header.
        headers.remove(name);
    }
    doomed.len()
}

/// Removes Sekisho's own cookies (`__Host-sekisho…`, session chunks and login cookies) from
/// every `Cookie` header, keeping the others byte for byte. Cookie names are case-sensitive
/// (RFC 6265), but browsers and servers disagree on odd forms, so the prefix match here is
/// case-insensitive: stripping too much of our own namespace is the safe side.
pub fn strip_sekisho_cookies(headers: &mut HeaderMap, cookie_name: &str) {
    let ours = |pair: &str| {
        let name = pair.split('=').next().unwrap_or("").trim().as_bytes();
        name.len() >= cookie_name.len()
            && name[..cookie_name.len()].eq_ignore_ascii_case(cookie_name.as_bytes())
    };
    // One look first, building nothing: most requests carry none of ours (nothing to do) or
    // nothing but ours (drop the header). Only a mix needs the pairs to keep.
    let (mut touched, mut others) = (false, false);
    for value in headers.get_all(COOKIE) {
        match cookie_text(value) {
            // A value that is not text cannot be filtered safely: it goes whole.
            None => touched = true,
            Some(s) => {
                for pair in pairs_of(s) {
                    if ours(pair) {
                        touched = true;
                    } else {
                        others = true;
                    }
                }
            }
        }
    }
    if !touched {
        return;
    }
    if !others {
        headers.remove(COOKIE);
        return;
    }
    let mut kept: Vec<&str> = Vec::new();
    for value in headers.get_all(COOKIE) {
        if let Some(s) = cookie_text(value) {
            kept.extend(pairs_of(s).filter(|p| !ours(p)));
        }
    }
    let joined = HeaderValue::from_str(&kept.join("; "));
    headers.remove(COOKIE);
    if let Ok(v) = joined {
        headers.insert(COOKIE, v);
    }
}

/// A `Cookie` value as text: `HeaderValue::to_str`'s answer (a header value holds visible
/// ASCII, tabs and bytes from 0x80 up, so it is text exactly when it is ASCII), found with
/// the word-at-a-time `is_ascii` and `from_utf8` rather than `to_str`'s byte-at-a-time
/// check — which, over a long session cookie, showed in the request path's profile.
pub(crate) fn cookie_text(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.is_ascii() {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// Removes every `Set-Cookie` from an upstream's response that would set, replace or delete
/// one of Sekisho's cookies (the session, its chunks, login state): an upstream, or a script
/// it serves, must not be able to sign a user out or plant login state. Other cookies stay in
/// order. Returns how many were removed.
pub fn strip_sekisho_set_cookies(headers: &mut HeaderMap, cookie_name: &str) -> usize {
    let ours = |v: &HeaderValue| {
        // A value that is not UTF-8 cannot be read safely: treat it as ours.
        v.to_str().map_or(true, |s| {
            let name = s
                .split(';')
                .next()
                .unwrap_or("")
                .split('=')
                .next()
                .unwrap_or("");
            let name = name.trim().as_bytes();
            name.len() >= cookie_name.len()
                && name[..cookie_name.len()].eq_ignore_ascii_case(cookie_name.as_bytes())
        })
    };
    let all = headers.get_all(SET_COOKIE);
    let removed = all.iter().filter(|v| ours(v)).count();
    if removed == 0 {
        return 0;
    }
    let kept: Vec<HeaderValue> = all.iter().filter(|v| !ours(v)).cloned().collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
    removed
}

/// The `name=value` pairs of one `Cookie` header, trimmed, empty ones skipped.
fn pairs_of(s: &str) -> impl Iterator<Item = &str> {
    cookie_parts(s).map(str::trim).filter(|p| !p.is_empty())
}

/// `s.split(';')`, found with memchr's vectorised search: core's `split` looks a word at a
/// time, which over a long session cookie (two passes per request) showed in the profile.
pub(crate) fn cookie_parts(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b';', r.as_bytes()) {
            // `;` is ASCII, so both sides are whole UTF-8.
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Sets the gateway's own identity headers (user, email, groups) after stripping. Values that
/// are not valid header values (control characters) are left out rather than mangled.
pub fn set_identity_headers(
    headers: &mut HeaderMap,
    identity: &VerifiedIdentity,
    user_header: Option<&HeaderName>,
    email_header: Option<&HeaderName>,
    groups_header: Option<&HeaderName>,
) {
    let values = identity.headers.get(identity);
    for (name, value) in [
        (user_header, &values.user),
        (email_header, &values.email),
        (groups_header, &values.groups),
    ] {
        if let (Some(h), Some(v)) = (name, value) {
            headers.insert(h.clone(), v.clone());
        }
    }
}

/// The claims of an upstream assertion.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AssertionClaims {
    pub iss: String,
    /// The route name.
    pub aud: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub policy_version: String,
    /// Only in per-request assertions (`reuse: 0s`); the request ID is always in `X-Request-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

struct SigningKey {
    kid: String,
    /// Parsed once: parsing and checking a PKCS#8 key per request cost about 8% of a
    /// request's CPU in the benchmark profile.
    key: aws_lc_rs::signature::EcdsaKeyPair,
    /// `base64url({"alg":"ES256","kid":…,"typ":"JWT"})`, the same for every assertion.
    header_b64: String,
    jwk: serde_json::Value,
}

/// Signs upstream assertions with ES256 and publishes the public keys.
///
/// Keys rotate by construction: [`AssertionSigner::new`] takes the current PKCS#8 PEM key and
/// older public-only keys stay in the JWKS through `retired_public_jwks` until upstreams have
/// picked up the new one.
pub struct AssertionSigner {
    /// Tells this signer from any other in the process (a reload builds a new one), so a
    /// connection's [`AssertionMemo`] never hands out what another signer made.
    id: u64,
    issuer: String,
    lifetime: std::time::Duration,
    current: std::sync::Arc<SigningKey>,
    jwks: serde_json::Value,
    /// Assertions already signed, by a digest of everything they say except their times and
    /// ID ([`subject_key`]): a hit is only ever the same claims.
    reused: moka::sync::Cache<[u8; 32], std::sync::Arc<Minted>>,
}

/// Bytes of assertions kept for reuse: one per (user, device, route) in use within `reuse`.
/// An assertion is about 600 bytes plus its groups, so a town's staff × routes fits many
/// times over; a user with hundreds of groups weighs what they weigh.
const REUSE_CAPACITY_BYTES: u64 = 32 << 20;

fn next_signer_id() -> u64 {
    static SIGNERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SIGNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The assertion one connection was given last and everything it says but its times and ID
/// (the inputs of [`subject_key`], compared as they are).
///
/// A connection carries one user's requests to one route, as a rule, so the next request
/// usually wants the same assertion: comparing these few strings is cheaper than hashing them
/// into the shared cache's key and looking it up (≈ 9 % of the gateway's own instructions on
/// a full-check request). Behind a trusted front proxy a connection may carry several users;
/// they simply differ and go to the shared cache.
#[derive(Default)]
pub struct AssertionMemo(std::sync::Mutex<Option<Remembered>>);

impl std::fmt::Debug for AssertionMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionMemo(..)")
    }
}

struct Remembered {
    signer: u64,
    minted: std::sync::Arc<Minted>,
}

struct Minted {
    value: HeaderValue,
    /// What it says: its `iat` (= `nbf`, whole seconds, at or before the signing time) gives
    /// its age, and a connection's memo compares a request's claims with the rest.
    claims: AssertionClaims,
}

impl Minted {
    /// Whether it says what an assertion about `identity` for this request would say, but for
    /// its times and ID (the inputs of [`subject_key`], compared as they are; the issuer is
    /// the signer's).
    fn says(
        &self,
        identity: &VerifiedIdentity,
        route: &str,
        device_id: Option<&str>,
        policy_version: &str,
    ) -> bool {
        let c = &self.claims;
        c.aud == route
            && c.sub == identity.sub()
            && c.email.as_deref() == identity.email()
            && c.groups == identity.groups()
            && c.amr == identity.amr()
            && c.device_id.as_deref() == device_id
            && c.policy_version == policy_version
    }
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("issuer", &self.issuer)
            .field("kid", &self.current.kid)
            .finish_non_exhaustive()
    }
}

fn ec_public_jwk(public_raw: &[u8]) -> Result<(String, serde_json::Value), IdentityError> {
    // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
    if public_raw.len() != 65 || public_raw[0] != 4 {
        return Err(IdentityError::Config(
            "assertion key must be an EC P-256 key".into(),
        ));
    }
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public_raw)[..12]);
    let jwk = serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&public_raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&public_raw[33..65]),
        "use": "sig",
        "alg": "ES256",
        "kid": kid,
    });
    Ok((kid, jwk))
}

impl AssertionSigner {
    /// `pkcs8_pem`: an EC P-256 private key (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`). `lifetime`: assertion lifetime (keep it short: 60 s).
    pub fn new(
        issuer: impl Into<String>,
        pkcs8_pem: &str,
        lifetime: std::time::Duration,
        retired_public_jwks: Vec<serde_json::Value>,
    ) -> Result<Self, IdentityError> {
        let kp = rcgen::KeyPair::from_pem(pkcs8_pem)
            .map_err(|_| IdentityError::Config("assertion key is not a PKCS#8 PEM key".into()))?;
        if kp.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(IdentityError::Config(
                "assertion key must be an EC P-256 key".into(),
            ));
        }
        let (kid, jwk) = ec_public_jwk(kp.public_key_raw())?;
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &kp.serialize_der(),
        )
        .map_err(|_| IdentityError::Config("assertion key cannot sign ES256".into()))?;
        let header = serde_json::json!({ "alg": "ES256", "kid": kid, "typ": "JWT" });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let mut keys = vec![jwk.clone()];
        keys.extend(
            retired_public_jwks
                .into_iter()
                .filter(|k| k.get("kid") != jwk.get("kid")),
        );
        Ok(AssertionSigner {
            id: next_signer_id(),
            issuer: issuer.into(),
            lifetime,
            current: std::sync::Arc::new(SigningKey {
                kid,
                key,
                header_b64,
                jwk,
            }),
            jwks: serde_json::json!({ "keys": keys }),
            reused: reuse_cache(lifetime),
        })
    }

    /// The same key and published keys with another issuer or lifetime, and nothing reused
    /// from before (a reused assertion must say what this signer would say).
    pub fn reconfigured(&self, issuer: &str, lifetime: std::time::Duration) -> Self {
        AssertionSigner {
            id: next_signer_id(),
            issuer: issuer.to_owned(),
            lifetime,
            current: self.current.clone(),
            jwks: self.jwks.clone(),
            reused: reuse_cache(lifetime),
        }
    }

    /// The `iss` of its assertions.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How long its assertions are valid (`exp − iat`, whole seconds of it).
    pub fn lifetime(&self) -> std::time::Duration {
        self.lifetime
    }

    /// A signer with a fresh key (development and tests). Returns the PEM so it can be stored.
    pub fn generate(
        issuer: impl Into<String>,
        lifetime: std::time::Duration,
    ) -> Result<(Self, String), IdentityError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Config(format!("key generation failed: {e}")))?;
        let pem = kp.serialize_pem();
        Ok((
            AssertionSigner::new(issuer, &pem, lifetime, Vec::new())?,
            pem,
        ))
    }

    /// The public JWK of the current key (to keep as a retired key after rotation).
    pub fn current_public_jwk(&self) -> &serde_json::Value {
        &self.current.jwk
    }

    /// The body of `/.sekisho/jwks.json`.
    pub fn jwks_json(&self) -> String {
        self.jwks.to_string()
    }

    /// The assertion header for a request: an assertion for the same claims whose `iat` is less
    /// than `reuse` ago, or a fresh one. A reused assertion is valid already (`nbf` ≤ now) and
    /// has more than `lifetime − reuse` left; the configuration keeps `reuse` at most half the
    /// lifetime. `reuse` zero: a fresh assertion per request, with `request_id` and `jti` = the
    /// request ID.
    /// With `memo` (a connection's): that connection's last assertion when it says exactly
    /// the same and is young enough comes before the shared cache; what is used is remembered.
    #[allow(clippy::too_many_arguments)]
    pub fn assertion(
        &self,
        memo: Option<&AssertionMemo>,
        identity: &VerifiedIdentity,
        route: &str,
        device_id: Option<&str>,
        policy_version: &str,
        request_id: &str,
        now: Timestamp,
        reuse: std::time::Duration,
    ) -> Result<HeaderValue, IdentityError> {
        let header = |jws: String| {
            HeaderValue::try_from(jws)
                .map(|mut v| {
                    // A credential: never into an HTTP/2 upstream's HPACK table.
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| IdentityError::Config("assertion is not a header value".into()))
        };
        let reuse_ms = i64::try_from(reuse.as_millis()).unwrap_or(i64::MAX);
        if reuse_ms == 0 {
            return header(self.sign(
                identity,
                route,
                device_id,
                policy_version,
                request_id,
                now,
            )?);
        }
        let now_ms = now.as_millisecond();
        // Age from the `iat` it says, not from when it was signed (up to a second later), so
        // `exp − now > lifetime − reuse` holds exactly. An assertion from a clock that has
        // since gone back would not be valid yet (`nbf`).
        let young = |m: &Minted| (0..reuse_ms).contains(&(now_ms - m.claims.iat * 1000));
        if let Some(memo) = memo {
            let held = memo.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = held.as_ref()
                && r.signer == self.id
                && r.minted.says(identity, route, device_id, policy_version)
                && young(&r.minted)
            {
                return Ok(r.minted.value.clone());
            }
        }
        let remember = |minted: std::sync::Arc<Minted>| {
            if let Some(memo) = memo {
                *memo.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Remembered {
                    signer: self.id,
                    minted,
                });
            }
        };
        let key = subject_key(&self.issuer, identity, route, device_id, policy_version);
        if let Some(m) = self.reused.get(&key)
            && young(&m)
        {
            let value = m.value.clone();
            remember(m);
            return Ok(value);
        }
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id)
            .map_err(|_| IdentityError::Config("no randomness for the assertion ID".into()))?;
        let (jws, claims) = self.mint(
            identity,
            route,
            device_id,
            policy_version,
            None,
            URL_SAFE_NO_PAD.encode(id),
            now,
        )?;
        let value = header(jws)?;
        let minted = std::sync::Arc::new(Minted {
            value: value.clone(),
            claims,
        });
        self.reused.insert(key, minted.clone());
        remember(minted);
        Ok(value)
    }

    /// Signs a fresh assertion for `route` about `identity`, for one request: `request_id` and
    /// `jti` are the request ID.
    pub fn sign(
        &self,
        identity: &VerifiedIdentity,
        route: &str,
        device_id: Option<&str>,
        policy_version: &str,
        request_id: &str,
        now: Timestamp,
    ) -> Result<String, IdentityError> {
        self.mint(
            identity,
            route,
            device_id,
            policy_version,
            Some(request_id),
            request_id.to_owned(),
            now,
        )
        .map(|(jws, _)| jws)
    }

    #[allow(clippy::too_many_arguments)]
    fn mint(
        &self,
        identity: &VerifiedIdentity,
        route: &str,
        device_id: Option<&str>,
        policy_version: &str,
        request_id: Option<&str>,
        jti: String,
        now: Timestamp,
    ) -> Result<(String, AssertionClaims), IdentityError> {
        let iat = now.as_second();
        let claims = AssertionClaims {
            iss: self.issuer.clone(),
            aud: route.to_owned(),
            sub: identity.sub().to_owned(),
            email: identity.email().map(str::to_owned),
            groups: identity.groups().to_vec(),
            amr: identity.amr().to_vec(),
            device_id: device_id.map(str::to_owned),
            policy_version: policy_version.to_owned(),
            request_id: request_id.map(str::to_owned),
            iat,
            nbf: iat,
            exp: iat + self.lifetime.as_secs() as i64,
            jti,
        };
        // A compact JWS (RFC 7515) with ES256: the signature is the fixed-size r‖s form.
        let payload = serde_json::to_vec(&claims)
            .map_err(|e| IdentityError::Config(format!("assertion encoding failed: {e}")))?;
        let mut jws = format!(
            "{}.{}",
            self.current.header_b64,
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = self
            .current
            .key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), jws.as_bytes())
            .map_err(|_| IdentityError::Config("assertion signing failed".into()))?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok((jws, claims))
    }
}

fn reuse_cache(
    lifetime: std::time::Duration,
) -> moka::sync::Cache<[u8; 32], std::sync::Arc<Minted>> {
    moka::sync::Cache::builder()
        // The header is the claims in base64 and a signature, so twice its length covers
        // the header and the claims kept beside it.
        .weigher(|_, m: &std::sync::Arc<Minted>| {
            u32::try_from(2 * m.value.len() + 100).unwrap_or(u32::MAX)
        })
        .max_capacity(REUSE_CAPACITY_BYTES)
        // Housekeeping only: whether an entry may still be used is decided against the
        // caller's clock in `assertion`.
        .time_to_live(lifetime)
        .build()
}

/// A digest of every claim of an assertion except `iat`, `nbf`, `exp`, `jti` and `request_id`.
/// Each field is length-prefixed (and lists counted), so no two claim sets share a digest.
fn subject_key(
    issuer: &str,
    identity: &VerifiedIdentity,
    route: &str,
    device_id: Option<&str>,
    policy_version: &str,
) -> [u8; 32] {
    fn field(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    fn optional(h: &mut Sha256, s: Option<&str>) {
        h.update([u8::from(s.is_some())]);
        field(h, s.unwrap_or(""));
    }
    fn list(h: &mut Sha256, l: &[String]) {
        h.update((l.len() as u64).to_le_bytes());
        for s in l {
            field(h, s);
        }
    }
    let mut h = Sha256::new();
    field(&mut h, issuer);
    field(&mut h, route);
    field(&mut h, identity.sub());
    optional(&mut h, identity.email());
    list(&mut h, identity.groups());
    list(&mut h, identity.amr());
    optional(&mut h, device_id);
    field(&mut h, policy_version);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::AuthMethod;

    #[test]
    fn built_in_identity_names_start_with_the_prefiltered_bytes() {
        for name in IDENTITY_HEADERS.iter().chain(IDENTITY_HEADER_PREFIXES) {
            let first = fold(name.as_bytes()[0]);
            assert!(
                BUILT_IN_FIRST.contains(&first),
                "{name}: add its first byte to is_identity_header's pre-filter"
            );
        }
        // A configured name outside those letters is still found.
        let mut h = HeaderMap::new();
        h.insert("city-user", HeaderValue::from_static("x"));
        h.insert("X_Remote_User", HeaderValue::from_static("x"));
        h.insert("accept", HeaderValue::from_static("x"));
        assert_eq!(strip_identity_headers(&mut h, &["City_User"]), 2);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn strips_variants_and_duplicates() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-email", HeaderValue::from_static("a@evil"));
        h.append("x-forwarded-email", HeaderValue::from_static("b@evil"));
        h.append(
            HeaderName::from_static("x_forwarded_email"),
            HeaderValue::from_static("c@evil"),
        );
        h.append(
            HeaderName::from_static("x_forwarded_user"),
            HeaderValue::from_static("root"),
        );
        h.append("x-sekisho-assertion", HeaderValue::from_static("forged"));
        h.append(
            HeaderName::from_static("x_sekisho_user"),
            HeaderValue::from_static("forged"),
        );
        h.append(
            "x-ms-client-principal-name",
            HeaderValue::from_static("forged"),
        );
        h.append("x-auth-request-email", HeaderValue::from_static("forged"));
        h.append(
            HeaderName::from_static("oidc_claim_email"),
            HeaderValue::from_static("forged"),
        );
        h.append("x-city-user", HeaderValue::from_static("forged"));
        h.append(
            HeaderName::from_static("x_city_user"),
            HeaderValue::from_static("forged"),
        );
        h.append("accept", HeaderValue::from_static("text/html"));
        h.append("x-request-id", HeaderValue::from_static("keep"));
        let n = strip_identity_headers(&mut h, &["X-City-User"]);
        assert_eq!(n, 10);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, vec!["accept".to_string(), "x-request-id".to_string()]);
    }

    #[test]
    fn upstreams_cannot_set_our_cookies() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("__Host-sekisho=; Max-Age=0; Path=/"),
        );
        h.append(
            SET_COOKIE,
            HeaderValue::from_static(" __HOST-Sekisho-login-ab=x"),
        );
        h.append(SET_COOKIE, HeaderValue::from_bytes(b"\xff=1").unwrap());
        h.append(SET_COOKIE, HeaderValue::from_static("other=2; HttpOnly"));
        assert_eq!(strip_sekisho_set_cookies(&mut h, "__Host-sekisho"), 3);
        let left: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, vec!["app=1; Path=/", "other=2; HttpOnly"]);
        let mut none = HeaderMap::new();
        none.append(SET_COOKIE, HeaderValue::from_static("app=1"));
        assert_eq!(strip_sekisho_set_cookies(&mut none, "__Host-sekisho"), 0);
        assert_eq!(none.get(SET_COOKIE).unwrap(), "app=1");
    }

    /// `cookie_parts` is `split(';')`, empty parts and all.
    #[test]
    fn cookie_parts_are_what_split_gives() {
        for s in ["", ";", "a=1", "a=1;b=2", ";;a=1; b=2;", "東=京; x", "a;"] {
            assert_eq!(
                cookie_parts(s).collect::<Vec<_>>(),
                s.split(';').collect::<Vec<_>>(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn strips_only_our_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-sekisho=xxx; __Host-sekisho.1=yyy"),
        );
        h.append(
            COOKIE,
            HeaderValue::from_static("__Host-sekisho-login-abcd1234=zzz; b=2=3"),
        );
        strip_sekisho_cookies(&mut h, "__Host-sekisho");
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, vec![HeaderValue::from_static("a=1; b=2=3")]);

        let mut only = HeaderMap::new();
        only.append(COOKIE, HeaderValue::from_static("__host-SEKISHO=x"));
        strip_sekisho_cookies(&mut only, "__Host-sekisho");
        assert!(only.get(COOKIE).is_none());

        let mut untouched = HeaderMap::new();
        untouched.append(COOKIE, HeaderValue::from_static("a=1;b=2"));
        strip_sekisho_cookies(&mut untouched, "__Host-sekisho");
        assert_eq!(untouched.get(COOKIE).unwrap(), "a=1;b=2");

        // A value with bytes from 0x80 up cannot be split as text: it goes whole, ours in
        // it or not; the readable header beside it is still filtered pair by pair.
        let mut odd = HeaderMap::new();
        odd.append(
            COOKIE,
            HeaderValue::from_bytes(b"x=\xe6\x9d\xb1; __Host-sekisho=s").unwrap(),
        );
        odd.append(
            COOKIE,
            HeaderValue::from_static("\t__Host-sekisho.1 =t ;c=3"),
        );
        strip_sekisho_cookies(&mut odd, "__Host-sekisho");
        let all: Vec<_> = odd.get_all(COOKIE).iter().collect();
        assert_eq!(all, vec![HeaderValue::from_static("c=3")]);
    }

    #[test]
    fn assertion_verifies_against_published_jwks() {
        let (signer, _pem) = AssertionSigner::generate(
            "https://sekisho.city.example.jp",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let id = VerifiedIdentity::dangerous_unverified(
            "iss",
            "alice",
            vec!["staff".into()],
            vec![],
            AuthMethod::Session,
        );
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let jwt = signer
            .sign(&id, "payroll", Some("dev-42"), "pv-abc", "req-1", now)
            .unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&signer.jwks_json()).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["payroll"]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<AssertionClaims>(&jwt, &key, &v).unwrap();
        assert_eq!(data.claims.sub, "alice");
        assert_eq!(data.claims.groups, vec!["staff".to_string()]);
        assert_eq!(data.claims.device_id.as_deref(), Some("dev-42"));
        assert_eq!(data.claims.policy_version, "pv-abc");
        assert_eq!(data.claims.exp - data.claims.iat, 60);
        // Wrong audience fails.
        v.set_audience(&["other-route"]);
        assert!(jsonwebtoken::decode::<AssertionClaims>(&jwt, &key, &v).is_err());
    }

    /// A signer with a fresh key, assertions valid 60 s.
    fn signer60() -> AssertionSigner {
        AssertionSigner::generate("s", std::time::Duration::from_secs(60))
            .unwrap()
            .0
    }

    /// alice in `groups`, signed in by `method`.
    fn alice_in(groups: &[&str], method: AuthMethod) -> VerifiedIdentity {
        VerifiedIdentity::dangerous_unverified(
            "iss",
            "alice",
            groups.iter().map(|g| g.to_string()).collect(),
            vec![],
            method,
        )
    }

    #[test]
    fn identity_headers_carry_the_identity_and_a_changed_copy_its_own() {
        let names = [
            HeaderName::from_static("x-sekisho-user"),
            HeaderName::from_static("x-sekisho-email"),
            HeaderName::from_static("x-sekisho-groups"),
        ];
        let set = |id: &VerifiedIdentity| {
            let mut h = HeaderMap::new();
            set_identity_headers(
                &mut h,
                id,
                Some(&names[0]),
                Some(&names[1]),
                Some(&names[2]),
            );
            h
        };
        let alice = alice_in(&["staff", "finance"], AuthMethod::Session);
        let first = set(&alice);
        assert_eq!(first["x-sekisho-user"], "alice");
        assert_eq!(first["x-sekisho-groups"], "staff,finance");
        assert!(
            !first.contains_key("x-sekisho-email"),
            "no e-mail, no header"
        );
        // Made once per identity and kept: the next request gets the same values.
        assert!(alice.headers.is_made(), "kept after the first use");
        assert_eq!(set(&alice), first);
        // A copy changed after the first use carries its own values, not the cached ones.
        let mut changed = alice.clone();
        changed.email = Some("alice@city.example.jp".into());
        changed.groups = vec!["admins".into()];
        let h = set(&changed);
        assert_eq!(h["x-sekisho-email"], "alice@city.example.jp");
        assert_eq!(h["x-sekisho-groups"], "admins");
        // Only the configured headers are set.
        let mut only_user = HeaderMap::new();
        set_identity_headers(&mut only_user, &alice, Some(&names[0]), None, None);
        assert_eq!(only_user.len(), 1);
    }

    fn decoded(signer: &AssertionSigner, jwt: &str, aud: &str) -> AssertionClaims {
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&signer.jwks_json()).unwrap();
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[aud]);
        v.validate_exp = false;
        jsonwebtoken::decode::<AssertionClaims>(jwt, &key, &v)
            .unwrap()
            .claims
    }

    #[test]
    fn an_assertion_is_reused_for_the_same_claims_within_the_window_only() {
        reuse_rules(None);
    }

    /// One connection that carries every request below (several users, routes, devices, as
    /// behind a trusted front proxy): its memo changes nothing an upstream can see.
    #[test]
    fn a_connection_memo_follows_the_same_reuse_rules() {
        reuse_rules(Some(&AssertionMemo::default()));
    }

    fn reuse_rules(memo: Option<&AssertionMemo>) {
        let signer = signer60();
        let reuse = std::time::Duration::from_secs(30);
        let alice = |groups: &[&str]| alice_in(groups, AuthMethod::Session);
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let at = |s: i64| {
            t0.checked_add(jiff::SignedDuration::from_millis(s))
                .unwrap()
        };
        let get =
            |id: &VerifiedIdentity, route: &str, dev: Option<&str>, pv: &str, rid: &str, t| {
                signer
                    .assertion(memo, id, route, dev, pv, rid, t, reuse)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            };
        let a = alice(&["staff"]);
        let first = get(&a, "payroll", Some("dev-1"), "pv-1", "req-1", t0);
        let claims = decoded(&signer, &first, "payroll");
        assert_eq!(
            claims.request_id, None,
            "a reusable assertion names no request"
        );
        assert_ne!(claims.jti, "req-1");
        assert_eq!(
            (claims.iat, claims.exp),
            (t0.as_second(), t0.as_second() + 60)
        );
        assert_eq!(claims.device_id.as_deref(), Some("dev-1"));

        // Same claims, another request, within the window: the same assertion.
        assert_eq!(
            get(&a, "payroll", Some("dev-1"), "pv-1", "req-2", at(29_999)),
            first
        );
        // Anything that the assertion says differs: a new one, for what it says — each asked
        // right after the same claims, so a connection memo holding them is tried first.
        let bob = VerifiedIdentity::dangerous_unverified(
            "iss",
            "bob",
            vec!["staff".into()],
            vec![],
            AuthMethod::Session,
        );
        let with_amr = VerifiedIdentity::dangerous_unverified(
            "iss",
            "alice",
            vec!["staff".into()],
            vec!["otp".into()],
            AuthMethod::Session,
        );
        let mut with_email = a.clone();
        with_email.email = Some("alice@city.example.jp".into());
        let variants = [
            (alice(&["staff", "admin"]), "payroll", Some("dev-1"), "pv-1"),
            (with_email, "payroll", Some("dev-1"), "pv-1"),
            (bob, "payroll", Some("dev-1"), "pv-1"),
            (with_amr, "payroll", Some("dev-1"), "pv-1"),
            (a.clone(), "tax", Some("dev-1"), "pv-1"),
            (a.clone(), "payroll", Some("dev-2"), "pv-1"),
            (a.clone(), "payroll", None, "pv-1"),
            (a.clone(), "payroll", Some("dev-1"), "pv-2"),
        ];
        for (id, aud, dev, pv) in &variants {
            assert_eq!(get(&a, "payroll", Some("dev-1"), "pv-1", "r", t0), first);
            let other = get(id, aud, *dev, pv, "r", t0);
            assert_ne!(other, first, "{aud} {dev:?} {pv}");
            let c = decoded(&signer, &other, aud);
            assert_ne!(c.jti, claims.jti);
            assert_eq!(
                (c.sub.as_str(), c.email.as_deref(), c.amr.clone()),
                (id.sub(), id.email(), id.amr().to_vec())
            );
        }
        assert_eq!(
            decoded(
                &signer,
                &get(&a, "payroll", None, "pv-1", "r", t0),
                "payroll"
            )
            .device_id,
            None
        );

        // At the end of the window, and on a clock that went back: a fresh one.
        let later = get(&a, "payroll", Some("dev-1"), "pv-1", "req-3", at(30_000));
        assert_ne!(later, first);
        let c = decoded(&signer, &later, "payroll");
        assert_eq!(c.iat, t0.as_second() + 30);
        assert_eq!(
            get(&a, "payroll", Some("dev-1"), "pv-1", "req-4", at(30_001)),
            later
        );
        let back = get(&a, "payroll", Some("dev-1"), "pv-1", "req-5", t0);
        assert_ne!(back, later);
        assert_eq!(decoded(&signer, &back, "payroll").iat, t0.as_second());

        // Signed 0.9 s into a second: `iat` is that whole second, and the window counts from
        // it, so the upstream still gets more than `lifetime − reuse` of validity.
        let b = alice(&["b"]);
        let signed = get(&b, "payroll", None, "pv-1", "r", at(900));
        assert_eq!(decoded(&signer, &signed, "payroll").iat, t0.as_second());
        assert_eq!(get(&b, "payroll", None, "pv-1", "r", at(29_999)), signed);
        assert_ne!(get(&b, "payroll", None, "pv-1", "r", at(30_000)), signed);

        let v = signer
            .assertion(memo, &a, "payroll", None, "pv-1", "r", t0, reuse)
            .unwrap();
        assert!(v.is_sensitive(), "kept out of HPACK tables");
        let again = signer
            .assertion(memo, &a, "payroll", None, "pv-1", "r", t0, reuse)
            .unwrap();
        assert!(again.is_sensitive(), "a reused one too");
    }

    #[test]
    fn reconfigured_signer_keeps_its_key_and_reuses_nothing_from_before() {
        let signer = signer60();
        let id = alice_in(&[], AuthMethod::Session);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let reuse = std::time::Duration::from_secs(30);
        // A connection that outlives the reload keeps its memo.
        let memo = AssertionMemo::default();
        let before = signer
            .assertion(Some(&memo), &id, "r", None, "v", "q", now, reuse)
            .unwrap();
        let longer = signer.reconfigured("s2", std::time::Duration::from_secs(300));
        assert_eq!(
            longer.jwks_json(),
            signer.jwks_json(),
            "same published keys"
        );
        assert_eq!((longer.issuer(), longer.lifetime().as_secs()), ("s2", 300));
        let after = longer
            .assertion(Some(&memo), &id, "r", None, "v", "q", now, reuse)
            .unwrap();
        assert_ne!(after, before);
        let c = decoded(&longer, after.to_str().unwrap(), "r");
        assert_eq!((c.iss.as_str(), c.exp - c.iat), ("s2", 300));
    }

    #[test]
    fn no_reuse_signs_every_request_with_its_id() {
        let signer = signer60();
        let id = alice_in(&[], AuthMethod::Bearer);
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let zero = std::time::Duration::ZERO;
        let one = signer
            .assertion(None, &id, "r", None, "v", "req-1", now, zero)
            .unwrap();
        let two = signer
            .assertion(None, &id, "r", None, "v", "req-2", now, zero)
            .unwrap();
        assert_ne!(one, two);
        for (v, rid) in [(one, "req-1"), (two, "req-2")] {
            let c = decoded(&signer, v.to_str().unwrap(), "r");
            assert_eq!(c.request_id.as_deref(), Some(rid));
            assert_eq!(c.jti, rid);
        }
    }

    #[test]
    fn rotation_keeps_retired_key_in_jwks() {
        let (old, _) = AssertionSigner::generate("s", std::time::Duration::from_secs(60)).unwrap();
        let (_, pem) = AssertionSigner::generate("s", std::time::Duration::from_secs(60)).unwrap();
        let new = AssertionSigner::new(
            "s",
            &pem,
            std::time::Duration::from_secs(60),
            vec![old.current_public_jwk().clone()],
        )
        .unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&new.jwks_json()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert!(format!("{new:?}").contains("kid"));
    }
}
