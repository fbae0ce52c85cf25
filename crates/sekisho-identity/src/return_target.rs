//! No open redirects: the post-login return target is a same-origin path, rebuilt from parsed
//! parts, that a configured route serves.

use percent_encoding::percent_decode_str;
use url::Url;

const MAX_LEN: usize = 2048;
const PROBE_HOST: &str = "sekisho.invalid";

fn hostile_bytes(s: &str) -> bool {
    // Only visible ASCII: no space, tab, CR, LF, NUL, DEL or raw non-ASCII (browsers send those
    // percent-encoded), and never a backslash (WHATWG URL parsers treat it as `/`).
    s.bytes().any(|b| !(0x21..=0x7e).contains(&b) || b == b'\\')
}

fn looks_like_authority(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'/' && (b[1] == b'/' || b[1] == b'\\')
}

/// Returns the path (and query) to send the browser to after login, or `None`.
///
/// `raw` must be an origin-relative path (`/app/page?x=1`): absolute URLs, scheme-relative
/// forms (`//evil`, `/\evil`), schemes (`https:evil`, `javascript:`), control characters and
/// their percent-encoded forms are all refused. The result is rebuilt from the parsed path and
/// query (the fragment is dropped), and `allowed(host, path)` — the gateway's "does a
/// configured route on this host serve this path" — must say yes.
pub fn safe_return_target(
    host: &str,
    raw: &str,
    allowed: impl Fn(&str, &str) -> bool,
) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_LEN || hostile_bytes(raw) {
        return None;
    }
    if !raw.starts_with('/') || looks_like_authority(raw) {
        return None;
    }
    // Percent-decoded forms must be just as harmless: an upstream that decodes `%2F%2Fevil`
    // and redirects would otherwise become the open redirect. Decode repeatedly (double
    // encoding) up to a small bound.
    let mut cur = raw.to_owned();
    for _ in 0..3 {
        let decoded = percent_decode_str(&cur).decode_utf8().ok()?.into_owned();
        if decoded.chars().any(|c| c.is_control() || c == '\\')
            || looks_like_authority(&decoded)
            || decoded.contains("://")
        {
            return None;
        }
        if decoded == cur {
            break;
        }
        cur = decoded;
    }
    let base = Url::parse(&format!("https://{PROBE_HOST}/")).ok()?;
    let parsed = base.join(raw).ok()?;
    if parsed.scheme() != "https"
        || parsed.host_str() != Some(PROBE_HOST)
        || parsed.port().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return None;
    }
    let path = parsed.path();
    if !path.starts_with('/') || looks_like_authority(path) {
        return None;
    }
    if !allowed(host, path) {
        return None;
    }
    let mut out = path.to_owned();
    if let Some(q) = parsed.query() {
        out.push('?');
        out.push_str(q);
    }
    if hostile_bytes(&out) || looks_like_authority(&out) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: &str, _: &str) -> bool {
        true
    }

    #[test]
    fn plain_paths_pass_and_are_rebuilt() {
        assert_eq!(safe_return_target("h", "/", any).as_deref(), Some("/"));
        assert_eq!(
            safe_return_target("h", "/app/x?y=1&z=%20", any).as_deref(),
            Some("/app/x?y=1&z=%20")
        );
        assert_eq!(
            safe_return_target("h", "/a/b#frag", any).as_deref(),
            Some("/a/b")
        );
        assert_eq!(
            safe_return_target("h", "/a/./b/../c", any).as_deref(),
            Some("/a/c")
        );
        assert_eq!(
            safe_return_target("h", "/%E5%B8%82", any).as_deref(),
            Some("/%E5%B8%82")
        );
    }

    #[test]
    fn route_check_is_applied_to_the_normalised_path() {
        let only_app = |h: &str, p: &str| h == "portal.city.example.jp" && p.starts_with("/app/");
        assert!(safe_return_target("portal.city.example.jp", "/app/x", only_app).is_some());
        assert!(safe_return_target("portal.city.example.jp", "/app/../admin", only_app).is_none());
        assert!(safe_return_target("other.example.jp", "/app/x", only_app).is_none());
    }

    #[test]
    fn hostile_forms_fail() {
        let hostile = [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "https:evil.example",
            "https://evil.example/",
            "http://evil.example",
            "HTTPS://evil.example",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.example",
            "./evil",
            "../evil",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%252F%252Fevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            " //evil.example",
            "/ /evil.example",
            "/%00",
            "/a%0d%0aSet-Cookie:x=1",
            "/x\u{0}y",
            "//evil.example/%2e%2e",
            "/.//evil.example",
            "/evil\u{3002}example",
            "/@evil.example",
            "/a?next=https://evil.example",
        ];
        let mut passed = Vec::new();
        for h in hostile {
            if let Some(out) = safe_return_target("h", h, any) {
                passed.push((h, out));
            }
        }
        // `/@evil.example` and `/.//evil.example` normalise to harmless same-origin paths: allow
        // them only if the rebuilt form is a single-slash path.
        passed.retain(|(_, out)| looks_like_authority(out) || !out.starts_with('/'));
        assert!(passed.is_empty(), "{passed:?}");
        for h in hostile
            .iter()
            .filter(|h| !matches!(**h, "/@evil.example" | "/.//evil.example"))
        {
            assert_eq!(safe_return_target("h", h, any), None, "{h:?}");
        }
    }

    #[test]
    fn dot_slash_slash_does_not_become_scheme_relative() {
        // `/.//evil` normalises to `//evil` in some parsers; the result must never start with `//`.
        let out = safe_return_target("h", "/.//evil.example", any);
        assert!(
            out.as_deref().is_none_or(|o| !o.starts_with("//")),
            "{out:?}"
        );
    }

    #[test]
    fn too_long_fails() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(safe_return_target("h", &long, any), None);
    }

    proptest::proptest! {
        #[test]
        fn result_is_always_a_single_slash_path(raw in "\\PC{0,40}") {
            if let Some(out) = safe_return_target("h", &raw, any) {
                proptest::prop_assert!(out.starts_with('/'));
                proptest::prop_assert!(!out.starts_with("//"));
                proptest::prop_assert!(!out.contains('\\'));
                proptest::prop_assert!(out.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            }
        }
    }
}
