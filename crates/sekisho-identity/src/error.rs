//! One error type for the crate ([`IdentityError`]) and the reasons a JWT is refused
//! ([`TokenError`]). Messages are safe to show in logs: they never contain a token, a cookie
//! or a secret. The gateway maps them to pages in one place (see [`IdentityError::status`]).

use thiserror::Error;

/// Why a JWT (bearer token or ID token) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("token is larger than the configured limit")]
    TooLarge,
    #[error("token is malformed")]
    Malformed,
    #[error("token type is not accepted")]
    WrongType(String),
    #[error("algorithm is not allowed for this key")]
    AlgorithmNotAllowed,
    #[error("no signing key with this key id")]
    UnknownKey,
    #[error("signature is invalid")]
    BadSignature,
    #[error("issuer does not match")]
    WrongIssuer,
    #[error("audience does not match")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("required claim {0} is missing or invalid")]
    MissingClaim(&'static str),
    #[error("nonce does not match")]
    WrongNonce,
    #[error("bearer tokens are not accepted here")]
    NotAccepted,
    #[error("signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl TokenError {
    /// The RFC 6750 `error` code for a `WWW-Authenticate` header.
    pub fn rfc6750_code(&self) -> &'static str {
        match self {
            TokenError::Missing => "",
            TokenError::KeysUnavailable(_) => "temporarily_unavailable",
            _ => "invalid_token",
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The identity provider cannot be reached or answered with a server error. New logins
    /// fail with this; existing sessions keep working.
    #[error("identity provider unavailable: {0}")]
    IdpUnavailable(String),
    /// The callback had no matching login cookie (another browser, expired, or cleared).
    #[error("no login in progress for this state in this browser")]
    LoginStateMissing,
    /// The `state` in the callback was already used.
    #[error("login state was already used")]
    LoginStateReplayed,
    /// The login took longer than the configured login timeout.
    #[error("login took too long")]
    LoginExpired,
    /// The callback host does not match the host the login started on.
    #[error("login callback arrived on a different host")]
    LoginHostMismatch,
    /// RFC 9207: the `iss` parameter of the authorization response is missing or wrong.
    #[error("authorization response issuer does not match")]
    IssuerMismatch,
    /// The ID token's nonce does not match the login's nonce.
    #[error("ID token nonce does not match")]
    NonceMismatch,
    /// The identity provider returned an error to the callback (e.g. access_denied).
    #[error("identity provider refused the login: {error}")]
    AuthorizationDenied {
        error: String,
        description: Option<String>,
    },
    /// The callback request is malformed (no code, no state, …).
    #[error("malformed login callback: {0}")]
    BadCallback(&'static str),
    /// The token endpoint refused the code or the refresh token.
    #[error("token endpoint refused the grant: {0}")]
    GrantRejected(String),
    /// An ID token failed verification.
    #[error("ID token refused: {0}")]
    IdToken(TokenError),
    /// A bearer token failed verification.
    #[error("bearer token refused: {0}")]
    Bearer(TokenError),
    /// The session would not fit in the configured cookie budget.
    #[error("session does not fit in {limit} bytes of cookies ({size} needed)")]
    SessionTooLarge { size: usize, limit: usize },
    /// The identity provider's answer is not what OIDC requires.
    #[error("identity provider protocol error: {0}")]
    Protocol(String),
    /// Configuration is invalid (reported at start, never on the request path).
    #[error("identity configuration: {0}")]
    Config(String),
}

impl IdentityError {
    /// The HTTP status the gateway should answer with.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            IdentityError::IdpUnavailable(_) => S::SERVICE_UNAVAILABLE,
            IdentityError::Bearer(TokenError::KeysUnavailable(_)) => S::SERVICE_UNAVAILABLE,
            IdentityError::Bearer(_) => S::UNAUTHORIZED,
            IdentityError::Protocol(_) => S::BAD_GATEWAY,
            IdentityError::Config(_) => S::INTERNAL_SERVER_ERROR,
            IdentityError::SessionTooLarge { .. } => S::INTERNAL_SERVER_ERROR,
            IdentityError::AuthorizationDenied { .. } => S::FORBIDDEN,
            _ => S::BAD_REQUEST,
        }
    }

    /// A short, stable identifier for pages, logs and bounded metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            IdentityError::IdpUnavailable(_) => "idp_unavailable",
            IdentityError::LoginStateMissing => "login_state_missing",
            IdentityError::LoginStateReplayed => "login_state_replayed",
            IdentityError::LoginExpired => "login_expired",
            IdentityError::LoginHostMismatch => "login_host_mismatch",
            IdentityError::IssuerMismatch => "issuer_mismatch",
            IdentityError::NonceMismatch => "nonce_mismatch",
            IdentityError::AuthorizationDenied { .. } => "authorization_denied",
            IdentityError::BadCallback(_) => "bad_callback",
            IdentityError::GrantRejected(_) => "grant_rejected",
            IdentityError::IdToken(_) => "id_token_invalid",
            IdentityError::Bearer(_) => "bearer_invalid",
            IdentityError::SessionTooLarge { .. } => "session_too_large",
            IdentityError::Protocol(_) => "idp_protocol",
            IdentityError::Config(_) => "config",
        }
    }
}
