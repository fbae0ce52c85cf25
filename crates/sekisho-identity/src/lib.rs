//! # sekisho-identity — who is asking
//!
//! The identity step of Sekisho's request pipeline (DESIGN.md, step 3) and the identity half of
//! step 7 (forward):
//!
//! * an OpenID Connect relying party ([`oidc::OidcProvider`], built on `openidconnect`):
//!   discovery, authorization-code flow with PKCE (S256), `state` and `nonce`, the RFC 9207
//!   `iss` check of the authorization response, token exchange, refresh and RP-initiated logout;
//! * browser sessions in encrypted, authenticated, chunked `__Host-` cookies
//!   ([`session::SessionManager`]) under a rotating key ring ([`keys::CookieKeyRing`]), with an
//!   absolute lifetime, an idle timeout, a bound on claim age (refresh through the refresh token)
//!   and a revocation list so a cookie replayed after logout is refused;
//! * bearer JWT verification against the issuer's JWKS ([`bearer::BearerVerifier`],
//!   [`jwks::JwksCache`]) with an algorithm allow-list tied to each key's type;
//! * the proof type [`VerifiedIdentity`] that only those verifiers can build;
//! * upstream hygiene: [`upstream::strip_identity_headers`], [`upstream::strip_sekisho_cookies`],
//!   and the signed identity assertion ([`upstream::AssertionSigner`]) with its public JWKS;
//! * [`return_target::safe_return_target`], the only way a post-login redirect target is made;
//! * [`service::IdentityService`], the thin facade the gateway calls with `http` types.
//!
//! ## What it never does
//!
//! * It never serves HTTP, never binds a socket and never decides access: the gateway owns the
//!   listeners and `sekisho-policy` decides. This crate only says *who* (or that nobody is).
//! * It never logs or `Debug`-prints tokens, cookies, keys or client secrets.
//! * It never reads the wall clock for a security decision: every check takes `now`.
//! * It never follows HTTP redirects when talking to the identity provider.
//! * It never trusts a JWT header's `alg` on its own, never accepts `none` or HMAC tokens.
//! * It never yields a redirect target that is not a same-origin path rebuilt from parsed parts.
#![forbid(unsafe_code)]

pub mod bearer;
pub mod claims;
pub mod config;
pub mod error;
pub mod http_client;
pub mod jwks;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod oidc;
pub mod paths;
pub mod return_target;
pub mod service;
pub mod session;
pub mod upstream;

pub use claims::{AuthMethod, VerifiedIdentity};
pub use config::{BearerConfig, ClaimsMapping, IdentityConfig, OidcConfig, SessionConfig};
pub use error::{IdentityError, TokenError};
pub use keys::{CookieKey, CookieKeyRing, Secret};
pub use metrics::IdentityMetrics;
pub use return_target::safe_return_target;
pub use service::{
    IdentityService, LoginComplete, LoginRedirect, LogoutResponse, SessionOutcome, StepUp,
};
pub use session::{SessionMemo, SessionRejection};

pub use upstream::{
    AssertionClaims, AssertionMemo, AssertionSigner, is_identity_header, strip_identity_headers,
    strip_sekisho_cookies, strip_sekisho_set_cookies,
};
