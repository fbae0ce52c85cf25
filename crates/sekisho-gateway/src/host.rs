//! Host names: route patterns (`portal.example.lg.jp`, `*.example.lg.jp`) and the
//! canonical form of a request's host.
//!
//! A wildcard covers exactly one label, as in TLS certificates: `*.example.lg.jp` matches
//! `a.example.lg.jp` but neither `example.lg.jp` nor `a.b.example.lg.jp` (a glob library
//! for file paths would match the last one too).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.suffix`: stores `suffix` (without the leading `*.`).
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("*.") {
            validate_name(rest)?;
            if !rest.contains('.') {
                return Err("a wildcard needs at least two labels after `*.`".into());
            }
            return Ok(HostPattern::Wildcard(rest.to_owned()));
        }
        if lower.contains('*') {
            return Err(
                "`*` is only allowed as the whole first label, as in `*.example.lg.jp`".into(),
            );
        }
        validate_name(&lower)?;
        Ok(HostPattern::Exact(lower))
    }

    /// Whether a canonical host (see [`canonical_host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }

    /// Exact patterns win over wildcards when both match.
    pub fn is_exact(&self) -> bool {
        matches!(self, HostPattern::Exact(_))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

fn validate_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("empty or longer than 253 characters".into());
    }
    // Only digits and dots (IPv4) or a colon (IPv6) can make an IP literal: a name is not
    // handed to the address parsers, which for every request's host was ≈ 300 instructions.
    let maybe_ip = s.contains(':') || s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if maybe_ip && s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label must be 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label `{label}` may contain only letters, digits and `-` (write internationalised names in their xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` may not start or end with `-`"));
        }
    }
    Ok(())
}

/// The canonical host of a request: lower case, without the port and without a single
/// trailing dot (`Portal.Example.` → `portal.example`). `None` for anything that is not a
/// plain DNS name or IP literal — such requests are refused.
pub fn canonical_host(authority: &str) -> Option<String> {
    let authority = authority.trim();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // Split off the port, minding IPv6 literals.
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let (v6, after) = (&rest[..end], &rest[end + 1..]);
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        let ip: std::net::Ipv6Addr = v6.parse().ok()?;
        return Some(format!("[{ip}]"));
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) => {
                if !valid_port(port) {
                    return None;
                }
                h
            }
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    validate_name(&host).ok()?;
    Some(host)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_one_label() {
        let p = HostPattern::parse("*.Example.lg.jp").unwrap();
        assert!(p.matches("a.example.lg.jp"));
        assert!(!p.matches("example.lg.jp"));
        assert!(!p.matches("a.b.example.lg.jp"));
        assert!(!p.matches("aexample.lg.jp"));
        assert!(!p.matches(".example.lg.jp"));
    }

    #[test]
    fn patterns_refuse_junk() {
        assert!(HostPattern::parse("*.jp").is_err());
        assert!(HostPattern::parse("a.*.jp").is_err());
        assert!(HostPattern::parse("a b.jp").is_err());
        assert!(HostPattern::parse("-a.jp").is_err());
        assert!(HostPattern::parse("").is_err());
        assert!(HostPattern::parse("127.0.0.1").is_ok());
    }

    #[test]
    fn canonical_host_forms() {
        assert_eq!(
            canonical_host("Portal.Example:8443").as_deref(),
            Some("portal.example")
        );
        assert_eq!(
            canonical_host("portal.example.").as_deref(),
            Some("portal.example")
        );
        assert_eq!(canonical_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(
            canonical_host("127.0.0.1:8443").as_deref(),
            Some("127.0.0.1")
        );
        for bad in [
            "",
            "a..b",
            "portal.example..",
            "user@portal.example",
            "portal.example:99999",
            "portal.example:",
            "portal.example:80:80",
            "por tal",
            "portal%2eexample",
            "[::1",
            "[zz]:1",
            "portal.example\0",
        ] {
            assert_eq!(canonical_host(bad), None, "{bad:?}");
        }
    }
}
