//! # sekisho-devidp — a development OpenID provider and demo upstreams
//!
//! **For development, tests and `sekisho demo` only.** This crate starts, on loopback:
//!
//! - [`DevIdp`]: a small but real OpenID Provider (authorization code flow with PKCE S256,
//!   `state`, `nonce`, RFC 9207 `iss` on the redirect, `prompt=login`, `max_age`,
//!   `acr_values` step-up to MFA, refresh tokens with rotation, ES256-signed ID tokens and
//!   `at+jwt` access tokens, JWKS, userinfo, RP-initiated logout, an IdP session cookie).
//!   Its login page carries a "開発用 / DEVELOPMENT ONLY" banner and lists the
//!   [`demo_users`] — whose passwords are published.
//! - [`upstreams`]: the demo back-ends — an LGWAN-side 庁内ポータル and an internet-side
//!   グループウェア — that show which headers Sekisho passed on.
//!
//! The gateway reaches the development IdP through exactly the same OIDC client code as a
//! production IdP: it cannot tell the two apart, which is what makes the demo honest.
//!
//! ## What it never is
//!
//! - **Not a production identity provider.** Users are in memory, passwords are published,
//!   there is no consent, no brute-force protection, no persistence (keys and sessions die with
//!   the process).
//! - **Never reachable from `sekisho serve`.** The gateway configuration has no key that
//!   starts it; only `sekisho demo` and tests link and call it. It also refuses to listen on
//!   anything but a loopback address ([`DevIdpError::NotLoopback`]).
//!
//! Passwords, codes, tokens and cookies are never logged.
//!
//! ## Endpoints (under the issuer `http://127.0.0.1:<port>`)
//!
//! | path | what |
//! |---|---|
//! | `/.well-known/openid-configuration` | discovery (ES256, PKCE S256 only, RFC 9207 `iss`) |
//! | `GET /authorize` | validates the request; silent sign-in from the IdP session, else the login form |
//! | `POST /authorize` | the login form: password (and the MFA box) → single-use code |
//! | `POST /token` | `authorization_code` (PKCE checked) and `refresh_token` (rotated); `client_secret_basic` or `client_secret_post` |
//! | `/jwks` | the per-process ES256 public key with its `kid` |
//! | `/userinfo` | Bearer access token → current claims |
//! | `/end_session` | RP-initiated logout; redirects only to a registered `post_logout_redirect_uri` |
//!
//! Errors about the client or its `redirect_uri` are shown as a page and **never redirected**;
//! other authorization errors go back to the registered URI with `error`, `state` and `iss`.
//! A code is redeemable once, for 60 s, by the client, redirect URI and PKCE verifier it was
//! issued for; a wrong verifier does not consume it; a replayed code revokes the refresh
//! token it produced. Refresh tokens are issued without `offline_access` (the demo's gateway
//! refreshes claims) and rotate on each use; signing out revokes them.
//!
//! Claims (ID token and `at+jwt` access token): `iss sub aud exp iat auth_time amr acr email
//! email_verified name preferred_username groups` (+ `nonce azp sid` in ID tokens, `client_id
//! scope jti` in access tokens). `amr` is `[pwd]` with `acr` [`ACR_PWD`], or after the MFA box
//! (users with MFA only) `[pwd, otp]` with [`ACR_MFA`]. `acr_values` containing [`ACR_MFA`]
//! makes a password-only IdP session sign in again with the MFA box ticked.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sekisho_devidp::DevIdpError> {
//! use sekisho_devidp::{DevClient, DevIdp, DevIdpConfig};
//! let idp = DevIdp::start(DevIdpConfig::with_clients(vec![DevClient {
//!     client_id: "sekisho".into(),
//!     client_secret: "demo-secret-123".into(),
//!     redirect_uris: vec!["https://portal.localhost:8443/.sekisho/callback".into()],
//!     post_logout_redirect_uris: vec!["https://portal.localhost:8443/".into()],
//! }]))
//! .await?;
//! println!("issuer: {}", idp.issuer());
//! idp.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
mod html;
mod keys;
mod provider;
mod serve;
pub mod upstreams;
mod users;

pub use config::{DevClient, DevIdpConfig};
pub use error::{DevIdpError, Result};
pub use provider::{DevIdp, MintedTokens, RunningIdp, SESSION_COOKIE};
pub use users::{ACR_MFA, ACR_PWD, DemoUser, demo_users};
