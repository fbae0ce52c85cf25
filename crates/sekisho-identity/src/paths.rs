//! Reserved paths under `/.sekisho/` (served on every route host by the gateway) and the
//! browser-or-API decision for unauthenticated requests.

use http::HeaderMap;
use http::header::ACCEPT;

/// Prefix of every reserved path; the gateway never forwards it upstream.
pub const RESERVED_PREFIX: &str = "/.sekisho/";
/// Starts a login explicitly (`?rd=<path>`), e.g. from a "sign in" link.
pub const LOGIN: &str = "/.sekisho/login";
/// The OIDC redirect URI path.
pub const CALLBACK: &str = "/.sekisho/callback";
/// Logout (POST; a GET should show a confirmation page so a cross-site link cannot log out).
pub const LOGOUT: &str = "/.sekisho/logout";
/// Where the IdP sends the browser after RP-initiated logout.
pub const LOGGED_OUT: &str = "/.sekisho/logged-out";
/// The public keys of the upstream assertion.
pub const JWKS: &str = "/.sekisho/jwks.json";

/// True for a path under `/.sekisho/`.
pub fn is_reserved(path: &str) -> bool {
    path.starts_with(RESERVED_PREFIX) || path == "/.sekisho"
}

/// A browser navigation (send it to login) rather than an API client (answer 401 with
/// `WWW-Authenticate`): the `Accept` header names `text/html`. Requests with an
/// `Authorization` header are API clients whatever they accept.
pub fn is_browser(headers: &HeaderMap) -> bool {
    if headers.contains_key(http::header::AUTHORIZATION) {
        return false;
    }
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|m| {
                let m = m.split(';').next().unwrap_or("").trim();
                m.eq_ignore_ascii_case("text/html")
                    || m.eq_ignore_ascii_case("application/xhtml+xml")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn browser_or_api() {
        let mut h = HeaderMap::new();
        assert!(!is_browser(&h));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
        );
        assert!(is_browser(&h));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_browser(&h));
        h.insert(ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!is_browser(&h));
        h.insert(ACCEPT, HeaderValue::from_static("TEXT/HTML"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x"),
        );
        assert!(!is_browser(&h));
    }

    #[test]
    fn reserved_paths() {
        for p in [LOGIN, CALLBACK, LOGOUT, LOGGED_OUT, JWKS, "/.sekisho"] {
            assert!(is_reserved(p), "{p}");
        }
        assert!(!is_reserved("/.sekishox"));
        assert!(!is_reserved("/app/.sekisho/"));
    }
}
