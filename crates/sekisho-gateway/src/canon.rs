//! The one canonical path.
//!
//! Identity-aware proxies are bypassed when the proxy decides on one reading of a path and
//! the upstream acts on another (`/public/..;/admin` on Tomcat, `//admin` on nginx with
//! `merge_slashes`, `/ADMIN` on IIS, `%2e%2e/`, overlong UTF-8 …). Sekisho avoids the whole
//! class by computing **one** canonical path per request, deciding on it, and forwarding
//! exactly it. Anything whose meaning differs between common servers is refused (400)
//! instead of guessed at.
//!
//! Steps, in order:
//! 1. the path must be origin-form (`/…`); `*` and anything else is refused;
//! 2. percent-escapes are validated; those that encode unreserved characters
//!    (`A-Z a-z 0-9 - . _ ~`) are decoded, the rest are kept with upper-case hex;
//!    escapes of `/`, `\`, `%`, NUL or other control characters, invalid UTF-8 (which
//!    includes overlong forms such as `%C0%AE`) are refused;
//! 3. raw `\`, `;` (matrix parameters, `..;/`), control characters and non-ASCII bytes
//!    are refused;
//! 4. empty segments are merged (`//a` → `/a`) and dot segments removed (RFC 3986 §5.2.4;
//!    `..` at the root stays at the root);
//! 5. segments that some servers trim (trailing `.` or space, e.g. `admin.`) are refused.
//!
//! Route prefixes are compared case-insensitively on segment boundaries (see
//! [`prefix_matches`]): `/ADMIN` reaches the `/admin` route — the stricter one — rather
//! than slipping to a catch-all route on a case-insensitive upstream.

use std::fmt;

/// Why a path was refused. Shown to the client as a 400 reason and counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    BadEscape,
    EncodedSlash,
    EncodedBackslash,
    EncodedPercent,
    ControlCharacter,
    InvalidUtf8,
    Backslash,
    MatrixParameter,
    NonAscii,
    /// An escaped character that some servers turn into ASCII (`／`, `ａ`, `ı`, `∕` …).
    LookAlike,
    TrimmedSegment,
    TooLong,
}

impl PathError {
    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not_origin_form",
            PathError::BadEscape => "bad_escape",
            PathError::EncodedSlash => "encoded_slash",
            PathError::EncodedBackslash => "encoded_backslash",
            PathError::EncodedPercent => "encoded_percent",
            PathError::ControlCharacter => "control_character",
            PathError::InvalidUtf8 => "invalid_utf8",
            PathError::Backslash => "backslash",
            PathError::MatrixParameter => "matrix_parameter",
            PathError::NonAscii => "non_ascii",
            PathError::LookAlike => "look_alike",
            PathError::TrimmedSegment => "trimmed_segment",
            PathError::TooLong => "too_long",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the path must start with `/`",
            PathError::BadEscape => "a `%` escape is incomplete or not hexadecimal",
            PathError::EncodedSlash => "an encoded `/` (%2F) is ambiguous",
            PathError::EncodedBackslash => "an encoded `\\` (%5C) is ambiguous",
            PathError::EncodedPercent => {
                "an encoded `%` (%25) would be decoded twice by some servers"
            }
            PathError::ControlCharacter => "control characters are not allowed",
            PathError::InvalidUtf8 => "escaped bytes are not valid UTF-8",
            PathError::Backslash => "`\\` is read as `/` by some servers",
            PathError::MatrixParameter => {
                "`;` parameters are read differently by different servers"
            }
            PathError::NonAscii => "raw non-ASCII bytes must be percent-encoded",
            PathError::LookAlike => {
                "an escaped character that some servers read as an ASCII letter, `/`, `.` or `\\`"
            }
            PathError::TrimmedSegment => {
                "a segment ending in `.` or a space is trimmed by some servers"
            }
            PathError::TooLong => "the path is too long",
        })
    }
}

const MAX_PATH: usize = 8192;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed raw in a path (RFC 3986 pchar and `/`), minus `;` which we refuse.
fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Canonicalises a request path (without the query). See the module docs for the rules.
pub fn canonicalize(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Pass 1: validate escapes and characters; decode unreserved escapes.
    let mut decoded = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                // Collect a run of escapes so multi-byte UTF-8 sequences are checked whole.
                let mut run = Vec::new();
                while i < bytes.len() && bytes[i] == b'%' {
                    let (Some(h), Some(l)) = (
                        bytes.get(i + 1).copied().and_then(hex),
                        bytes.get(i + 2).copied().and_then(hex),
                    ) else {
                        return Err(PathError::BadEscape);
                    };
                    run.push(h << 4 | l);
                    i += 3;
                }
                let text = std::str::from_utf8(&run).map_err(|_| PathError::InvalidUtf8)?;
                for ch in text.chars() {
                    match ch {
                        '/' => return Err(PathError::EncodedSlash),
                        '\\' => return Err(PathError::EncodedBackslash),
                        '%' => return Err(PathError::EncodedPercent),
                        c if c.is_control() => return Err(PathError::ControlCharacter),
                        ';' => return Err(PathError::MatrixParameter),
                        c if c.is_ascii() && is_unreserved(c as u8) => decoded.push(c),
                        c if !c.is_ascii() && is_look_alike(c) => return Err(PathError::LookAlike),
                        c => {
                            let mut buf = [0u8; 4];
                            for byte in c.encode_utf8(&mut buf).bytes() {
                                decoded.push('%');
                                decoded
                                    .push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
                                decoded
                                    .push(char::from(b"0123456789ABCDEF"[usize::from(byte & 15)]));
                            }
                        }
                    }
                }
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::MatrixParameter),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => return Err(PathError::NonAscii),
            b if is_path_char(b) => decoded.push(char::from(b)),
            // Anything else (`"`, `<`, space, `{`, `#`, `?`…) has no place in a path.
            _ => return Err(PathError::ControlCharacter),
        }
        i += 1;
    }
    // Pass 2: merge empty segments, remove dot segments, refuse trimmed segments.
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s if s.ends_with('.') || s.ends_with("%20") || s.ends_with("%09") => {
                return Err(PathError::TrimmedSegment);
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// Whether an upstream could read `c` as ASCII: NFKC normalisation (`／` → `/`, `ａ` → `a`,
/// `𝐚` → `a`, `․` → `.`), Unicode case mapping (`ı` → `I`, `ſ` → `S`, `K` → `k`), or a
/// "best fit" code page mapping of slashes (`∕`, `⁄`, `⧸`, `∖`). Such a path could be routed
/// here as one thing and read by the upstream as `/admin`, so it is refused. Ordinary
/// Japanese paths (漢字, かな) are unaffected; full-width digits and letters are refused —
/// write them in ASCII.
fn is_look_alike(c: char) -> bool {
    use unicode_normalization::UnicodeNormalization;
    const BEST_FIT_SLASHES: &[char] = &[
        '\u{2215}', '\u{2044}', '\u{29F8}', '\u{29F9}', '\u{2216}', '\u{FE68}',
    ];
    BEST_FIT_SLASHES.contains(&c)
        || std::iter::once(c).nfkc().any(|n| n.is_ascii())
        || c.to_uppercase().any(|u| u.is_ascii())
        || c.to_lowercase().any(|l| l.is_ascii())
}

/// Canonicalises a configured route prefix: the same rules, and a trailing `/` is kept
/// meaningful only as "below this directory".
pub fn canonicalize_prefix(raw: &str) -> Result<String, String> {
    let c = canonicalize(raw).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Whether `path` (canonical) lies under `prefix` (canonical), on segment boundaries and
/// ignoring ASCII case: `/admin` covers `/admin`, `/admin/x` and `/ADMIN/x`, but not
/// `/administrator`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let p = prefix.as_bytes();
    let q = path.as_bytes();
    if q.len() < p.len() || !q[..p.len()].eq_ignore_ascii_case(p) {
        return false;
    }
    prefix.ends_with('/') || q.len() == p.len() || q[p.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/kintai/2026-11.csv",
            "/a-b_c~d",
            "/x:y@z!$&'()*+,=",
        ] {
            assert_eq!(canonicalize(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn normalisations() {
        let cases = [
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%61dmin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/a%7e", "/a~"),
            ("/%e6%97%a5", "/%E6%97%A5"),
            (
                "/%E6%96%87%E6%9B%B8/%E3%81%8B%E3%81%AA",
                "/%E6%96%87%E6%9B%B8/%E3%81%8B%E3%81%AA",
            ),
            ("/%20x", "/%20x"),
            ("/a%3fb", "/a%3Fb"),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        let cases = [
            ("admin", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
            ("http://x/a", PathError::NotOriginForm),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%5cb", PathError::EncodedBackslash),
            ("/a%252e%252e/", PathError::EncodedPercent),
            ("/a%00", PathError::ControlCharacter),
            ("/a%0d%0a", PathError::ControlCharacter),
            ("/a%c0%ae", PathError::InvalidUtf8),
            ("/a%e0%80%ae", PathError::InvalidUtf8),
            ("/a%ff", PathError::InvalidUtf8),
            ("/a%", PathError::BadEscape),
            ("/a%g1", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a\\b", PathError::Backslash),
            ("/public/..;/admin", PathError::MatrixParameter),
            ("/admin;jsessionid=1", PathError::MatrixParameter),
            ("/a%3bb", PathError::MatrixParameter),
            ("/admin./x", PathError::TrimmedSegment),
            ("/admin%20/x", PathError::TrimmedSegment),
            ("/a...", PathError::TrimmedSegment),
            ("/a b", PathError::ControlCharacter),
            ("/a\u{7f}", PathError::ControlCharacter),
            ("/日本", PathError::NonAscii),
            ("/pub%EF%BC%8F..%EF%BC%8Fadmin", PathError::LookAlike),
            ("/pub/%EF%BC%8E%EF%BC%8E/admin", PathError::LookAlike),
            ("/pub%E2%88%95..%E2%88%95admin", PathError::LookAlike),
            ("/adm%C4%B1n", PathError::LookAlike),
            ("/%EF%BD%81dmin", PathError::LookAlike),
            ("/%F0%9D%90%9Adm", PathError::LookAlike),
            ("/%E2%84%AA", PathError::LookAlike),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalize(input), Err(want), "{input}");
        }
    }

    #[test]
    fn prefixes_match_on_segments_ignoring_case() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/admin", "/admin"));
        assert!(prefix_matches("/admin", "/admin/x"));
        assert!(prefix_matches("/admin", "/ADMIN/x"));
        assert!(prefix_matches("/admin/", "/admin/x"));
        assert!(!prefix_matches("/admin/", "/admin"));
        assert!(!prefix_matches("/admin", "/administrator"));
        assert!(!prefix_matches("/admin", "/adm"));
    }

    proptest::proptest! {
        /// Canonicalisation is idempotent: what we forward canonicalises to itself, so the
        /// decision and the forwarded request cannot disagree.
        #[test]
        fn idempotent(s in "/[a-zA-Z0-9%./_~;\\\\-]{0,40}") {
            if let Ok(c) = canonicalize(&s) {
                proptest::prop_assert_eq!(canonicalize(&c), Ok(c.clone()));
                proptest::prop_assert!(!c.contains("//"));
                proptest::prop_assert!(!c.split('/').any(|seg| seg == ".." || seg == "."));
            }
        }
    }
}
