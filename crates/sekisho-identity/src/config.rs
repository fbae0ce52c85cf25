//! Typed configuration. The gateway turns its YAML into these structs (it owns parsing and
//! file:line errors); every field has a safe default where one exists.

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use crate::keys::Secret;

/// Everything the identity step needs.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Browser login. `None`: no login (bearer-only deployments).
    pub oidc: Option<OidcConfig>,
    /// Browser sessions.
    pub session: SessionConfig,
    /// Bearer token verification. `None`: `Authorization: Bearer` is not accepted.
    pub bearer: Option<BearerConfig>,
}

/// Which claims hold what. The same mapping applies to ID tokens, userinfo and bearer tokens.
#[derive(Debug, Clone)]
pub struct ClaimsMapping {
    /// Claim with the user's stable identifier. Default `sub`.
    pub subject: String,
    /// Claim with the e-mail address. Default `email`; Entra ID often needs `preferred_username`
    /// or `upn`.
    pub email: String,
    /// Claim with the display name. Default `name`.
    pub name: String,
    /// Claim with the groups, as a dotted path into nested objects (`realm_access.roles` for
    /// Keycloak realm roles). Default `groups`. An array of strings or one string.
    pub groups: String,
    /// Group identifiers mapped to names (Entra ID sends object GUIDs). Unmapped groups are kept
    /// as they are.
    pub group_names: BTreeMap<String, String>,
    /// When set, only these groups (after mapping) are kept in sessions and identities: the
    /// groups the policies mention. Keeps cookies small for users in hundreds of groups.
    pub relevant_groups: Option<Vec<String>>,
    /// Further claims kept for policy ("any claim" criteria), e.g. `tid`, `department`.
    pub keep_claims: Vec<String>,
}

impl Default for ClaimsMapping {
    fn default() -> Self {
        ClaimsMapping {
            subject: "sub".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
            group_names: BTreeMap::new(),
            relevant_groups: None,
            keep_claims: Vec::new(),
        }
    }
}

/// The OpenID provider and this relying party's registration at it.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer identifier; discovery is at `<issuer>/.well-known/openid-configuration` and the
    /// discovered `issuer` must equal it exactly.
    pub issuer: Url,
    pub client_id: String,
    /// Client secret (`client_secret_basic`). Redacted in `Debug`.
    pub client_secret: Option<Secret>,
    /// Scopes requested. Default `openid email profile`. Add `offline_access` (Entra ID,
    /// Keycloak) or set `access_type=offline` in `extra_auth_params` (Google) for refresh tokens.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (e.g. Google's `access_type=offline`, `hd`).
    pub extra_auth_params: Vec<(String, String)>,
    /// Scheme of the redirect URI built from the request host. Default `https`.
    pub redirect_scheme: String,
    /// Reserved path of the callback on every route host. Default `/.sekisho/callback`.
    pub callback_path: String,
    /// Where the IdP sends the browser after logout. Default `/.sekisho/logged-out`.
    pub post_logout_path: String,
    /// Timeout of every request to the IdP. Default 10 s.
    pub http_timeout: Duration,
    /// Clock skew accepted on ID token `exp`/`iat`/`nbf`. Default 60 s.
    pub leeway: Duration,
    /// ID token signing algorithms accepted. Default RS256, PS256, ES256, ES384, EdDSA.
    pub id_token_algs: Vec<Algorithm>,
    /// Re-fetch the discovery document at every login start, so a down IdP is reported as a
    /// clear 503 page instead of a browser error at the IdP. Default true.
    pub probe_on_login: bool,
    /// After an IdP outage is seen, refresh attempts pause this long (sessions keep working).
    /// Default 30 s.
    pub outage_backoff: Duration,
    /// Minimum interval between JWKS refreshes triggered by unknown key ids. Default 30 s.
    pub jwks_min_refresh_interval: Duration,
    pub claims: ClaimsMapping,
}

impl OidcConfig {
    /// A configuration with defaults for everything but the issuer and the client.
    pub fn new(issuer: Url, client_id: impl Into<String>, client_secret: Option<Secret>) -> Self {
        OidcConfig {
            issuer,
            client_id: client_id.into(),
            client_secret,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            extra_auth_params: Vec::new(),
            redirect_scheme: "https".into(),
            callback_path: "/.sekisho/callback".into(),
            post_logout_path: "/.sekisho/logged-out".into(),
            http_timeout: Duration::from_secs(10),
            leeway: Duration::from_secs(60),
            id_token_algs: default_algs(),
            probe_on_login: true,
            outage_backoff: Duration::from_secs(30),
            jwks_min_refresh_interval: Duration::from_secs(30),
            claims: ClaimsMapping::default(),
        }
    }
}

/// The asymmetric algorithms accepted unless configured otherwise. HMAC is never accepted.
pub fn default_algs() -> Vec<Algorithm> {
    vec![
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ]
}

/// Browser sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cookie name; must start with `__Host-`. Default `__Host-sekisho`. Further chunks are
    /// named `<name>.1`, `<name>.2` …; login cookies `<name>-login-<8 hex>`.
    pub cookie_name: String,
    /// A session ends this long after login, whatever happens. Default 10 h (a working day).
    pub absolute_lifetime: Duration,
    /// A session ends after this long without a request. Default 1 h.
    pub idle_timeout: Duration,
    /// Claims (groups …) older than this are refreshed through the refresh token before the
    /// request is decided: the bound within which a group change at the IdP reaches policy.
    /// Default 10 min (must be ≤ 15 min unless `allow_long_claims_age`).
    pub claims_max_age: Duration,
    /// The cookie is re-issued (to move the idle deadline) at most this often. Default 60 s.
    pub touch_interval: Duration,
    /// A login must complete within this. Default 10 min.
    pub login_timeout: Duration,
    /// Largest value of one cookie chunk. Default 3,000 bytes.
    pub chunk_bytes: usize,
    /// Largest total of all session chunks. Default 6,000 bytes, so the session plus other
    /// cookies stays well under the common 8 KiB request-header line limits (no 431).
    pub max_cookie_bytes: usize,
    /// How many revoked session ids are remembered (until each session's absolute end).
    pub revocation_capacity: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: "__Host-sekisho".into(),
            absolute_lifetime: Duration::from_secs(10 * 3600),
            idle_timeout: Duration::from_secs(3600),
            claims_max_age: Duration::from_secs(600),
            touch_interval: Duration::from_secs(60),
            login_timeout: Duration::from_secs(600),
            chunk_bytes: 3000,
            max_cookie_bytes: 6000,
            revocation_capacity: 1_000_000,
        }
    }
}

/// Bearer tokens (`Authorization: Bearer <JWT>`) for scripts and apps.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    /// Expected `iss`, exactly.
    pub issuer: String,
    /// Accepted `aud` values (at least one must be present in the token).
    pub audiences: Vec<String>,
    /// JWKS location; `None`: discovered from `<issuer>/.well-known/openid-configuration`.
    pub jwks_uri: Option<Url>,
    /// Clock skew accepted on `exp`/`nbf`/`iat`. Default 60 s.
    pub leeway: Duration,
    /// Accepted algorithms, further limited by each key's type. Default RS256, PS256, ES256,
    /// ES384, EdDSA. HMAC algorithms are refused even if listed.
    pub algorithms: Vec<Algorithm>,
    /// Tokens longer than this are refused before any parsing. Default 8 KiB.
    pub max_token_bytes: usize,
    /// Accepted header `typ` values (compared case-insensitively, `application/` ignored).
    /// Default `at+jwt`, `jwt`.
    pub accepted_types: Vec<String>,
    /// Refuse tokens without a `typ` header. Default false (many IdPs omit it).
    pub require_typ: bool,
    /// Minimum interval between JWKS refreshes triggered by unknown key ids. Default 30 s.
    pub jwks_min_refresh_interval: Duration,
    /// Timeout of JWKS and discovery requests. Default 10 s.
    pub http_timeout: Duration,
    pub claims: ClaimsMapping,
}

impl BearerConfig {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        BearerConfig {
            issuer: issuer.into(),
            audiences,
            jwks_uri: None,
            leeway: Duration::from_secs(60),
            algorithms: default_algs(),
            max_token_bytes: 8192,
            accepted_types: vec!["at+jwt".into(), "jwt".into()],
            require_typ: false,
            jwks_min_refresh_interval: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            claims: ClaimsMapping::default(),
        }
    }
}

impl SessionConfig {
    /// Checks the invariants the rest of the crate relies on; every problem at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if !self.cookie_name.starts_with("__Host-") {
            errs.push(format!(
                "session.cookie_name {:?} must start with __Host-",
                self.cookie_name
            ));
        }
        if !self
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            errs.push("session.cookie_name may hold only letters, digits, - and _".into());
        }
        if self.claims_max_age > Duration::from_secs(15 * 60) {
            errs.push("session.claims_max_age must be at most 15 minutes".into());
        }
        if self.idle_timeout.is_zero() || self.absolute_lifetime.is_zero() {
            errs.push("session lifetimes must be positive".into());
        }
        if self.chunk_bytes < 512 || self.chunk_bytes > 4000 {
            errs.push("session.chunk_bytes must be between 512 and 4000".into());
        }
        if self.max_cookie_bytes < self.chunk_bytes {
            errs.push("session.max_cookie_bytes must be at least chunk_bytes".into());
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}
