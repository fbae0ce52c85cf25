//! The compiled policy model: what YAML turns into. Every matcher is prepared once
//! (sorted sets, parsed networks, parsed versions, resolved time zones and date lists)
//! so that evaluating it needs no allocation.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::input::Ownership;

/// A handle to one compiled policy in a [`crate::PolicySet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId(pub(crate) u32);

/// What one request is decided against: the zone floor (if the zone has one),
/// AND-ed with the route's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub floor: Option<PolicyId>,
    pub policy: PolicyId,
}

impl Target {
    pub fn policy(policy: PolicyId) -> Target {
        Target {
            floor: None,
            policy,
        }
    }

    pub fn with_floor(floor: PolicyId, policy: PolicyId) -> Target {
        Target {
            floor: Some(floor),
            policy,
        }
    }
}

/// Where something was written, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Allow,
    Deny,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub kind: RuleKind,
    /// `lgwan-staff.allow[0]`
    pub path: Arc<str>,
    pub name: Option<String>,
    pub cond: Cond,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: Arc<str>,
    pub description: Option<String>,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    pub span: Span,
}

/// Settings shared by every policy of a set.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub timezone: TimeZone,
    pub timezone_name: String,
    /// Sorted; which `amr` values count as multi-factor authentication.
    pub mfa_amr: StrSet,
    /// Named date lists (e.g. `jp-holidays`), each sorted.
    pub holidays: Vec<(String, Vec<Date>)>,
}

/// RFC 8176 `amr` values that by themselves show a second factor, plus `fido`
/// (used by several IdPs for WebAuthn). `sms` and `swk` are deliberately not in
/// the default: SMS is a "restricted" authenticator in NIST SP 800-63B, and a
/// software key alone is one possession factor. Configurable per set.
pub const DEFAULT_MFA_AMR: &[&str] = &["fido", "hwk", "mfa", "otp", "sc"];

pub const DEFAULT_TIMEZONE: &str = "Asia/Tokyo";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timezone: TimeZone::get(DEFAULT_TIMEZONE).unwrap_or(TimeZone::UTC),
            timezone_name: DEFAULT_TIMEZONE.to_string(),
            mfa_amr: StrSet::new(DEFAULT_MFA_AMR.iter().map(|s| s.to_string()).collect()),
            holidays: Vec::new(),
        }
    }
}

/// A sorted, de-duplicated set of strings; membership by binary search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StrSet(pub Vec<String>);

impl StrSet {
    pub fn new(mut items: Vec<String>) -> StrSet {
        items.sort();
        items.dedup();
        StrSet(items)
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.binary_search_by(|x| x.as_str().cmp(s)).is_ok()
    }

    /// ASCII case-insensitive membership (items are stored lower-case).
    pub fn contains_ignore_case(&self, s: &str) -> bool {
        self.0.iter().any(|x| x.eq_ignore_ascii_case(s))
    }

    pub fn is_subset_of(&self, other: &StrSet) -> bool {
        self.0.iter().all(|x| other.contains(x))
    }

    pub fn to_json(&self) -> Value {
        Value::from(self.0.clone())
    }
}

/// A set of inventory posture facts — those a policy can test. An access record's device
/// block lists the facts its route's policy tests ("the posture facts used"), not every
/// fact the inventory holds: the record is the evidence for the decision, and each fact
/// it did not need is bytes to hash, write and keep for a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PostureFacts(u16);

impl PostureFacts {
    pub const NONE: PostureFacts = PostureFacts(0);
    pub const MANAGED: PostureFacts = PostureFacts(1);
    pub const OWNERSHIP: PostureFacts = PostureFacts(1 << 1);
    pub const COMPLIANT: PostureFacts = PostureFacts(1 << 2);
    pub const OS: PostureFacts = PostureFacts(1 << 3);
    pub const OS_VERSION: PostureFacts = PostureFacts(1 << 4);
    pub const DISK_ENCRYPTION: PostureFacts = PostureFacts(1 << 5);
    pub const SCREEN_LOCK: PostureFacts = PostureFacts(1 << 6);
    pub const FIREWALL: PostureFacts = PostureFacts(1 << 7);
    pub const ANTIVIRUS: PostureFacts = PostureFacts(1 << 8);
    pub const EDR: PostureFacts = PostureFacts(1 << 9);
    pub const LAST_CHECK_IN: PostureFacts = PostureFacts(1 << 10);
    pub const TAGS: PostureFacts = PostureFacts(1 << 11);
    pub const ALL: PostureFacts = PostureFacts((1 << 12) - 1);

    /// Every fact of `other` is in `self`.
    pub const fn contains(self, other: PostureFacts) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: PostureFacts) -> PostureFacts {
        PostureFacts(self.0 | other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A condition: a tree of combinators over leaf criteria.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    /// Always true (`anyone: true`).
    Anyone,
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Leaf(Leaf),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClaimTest {
    Equals(Value),
    Contains(Value),
    OneOf(Vec<Value>),
}

/// Which boolean posture fact a [`Leaf::Posture`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostureFlag {
    Managed,
    Compliant,
    DiskEncryption,
    ScreenLock,
    Firewall,
    Antivirus,
    Edr,
}

impl PostureFlag {
    pub const ALL: [PostureFlag; 7] = [
        PostureFlag::Managed,
        PostureFlag::Compliant,
        PostureFlag::DiskEncryption,
        PostureFlag::ScreenLock,
        PostureFlag::Firewall,
        PostureFlag::Antivirus,
        PostureFlag::Edr,
    ];

    pub fn key(self) -> &'static str {
        match self {
            PostureFlag::Managed => "managed",
            PostureFlag::Compliant => "compliant",
            PostureFlag::DiskEncryption => "disk_encryption",
            PostureFlag::ScreenLock => "screen_lock",
            PostureFlag::Firewall => "firewall",
            PostureFlag::Antivirus => "antivirus",
            PostureFlag::Edr => "edr",
        }
    }
}

/// A dotted numeric version such as `10.0.19045`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub text: String,
    pub parts: Vec<u64>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = Vec::new();
        for part in text.trim().split('.') {
            parts.push(part.parse::<u64>().ok()?);
        }
        if parts.is_empty() {
            return None;
        }
        Some(Version {
            text: text.trim().to_string(),
            parts,
        })
    }
}

/// Compare a device's version string with a policy version, numerically per
/// component; missing components count as 0. Each component of the device
/// string is read up to its first non-digit (`10.0.19045.3803-beta` works).
/// `None` when the device string has no number at all.
pub(crate) fn compare_version(device: &str, policy: &[u64]) -> Option<Ordering> {
    let mut parts = device.trim().split('.');
    let mut exhausted = false;
    let mut i = 0;
    loop {
        let d = if exhausted {
            None
        } else {
            match parts.next() {
                None => {
                    exhausted = true;
                    None
                }
                Some(part) => {
                    let n = part.bytes().take_while(u8::is_ascii_digit).count();
                    if n == 0 {
                        if i == 0 {
                            return None;
                        }
                        exhausted = true;
                        None
                    } else {
                        // A suffix such as `-beta` ends the comparable prefix.
                        exhausted = n < part.len();
                        Some(part[..n].parse::<u64>().unwrap_or(u64::MAX))
                    }
                }
            }
        };
        let p = policy.get(i).copied();
        if d.is_none() && p.is_none() {
            return Some(Ordering::Equal);
        }
        match d.unwrap_or(0).cmp(&p.unwrap_or(0)) {
            Ordering::Equal => {}
            other => return Some(other),
        }
        i += 1;
    }
}

/// Time windows: a time zone, week days, hours and date lists.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeWindow {
    pub tz: TimeZone,
    pub tz_name: String,
    /// Bit i set = weekday i (0 = Monday) is in the window. 0x7f = every day.
    pub weekdays: u8,
    /// Minutes after midnight, start inclusive, end exclusive; start > end wraps
    /// past midnight.
    pub hours: Option<(u16, u16)>,
    /// Only on these dates (sorted), if present.
    pub dates: Option<Vec<Date>>,
    pub dates_names: Vec<String>,
    /// Never on these dates (sorted).
    pub except: Vec<Date>,
    pub except_names: Vec<String>,
}

pub(crate) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    pub fn matches(&self, now: Timestamp) -> bool {
        let dt = self.tz.to_datetime(now);
        let wd = dt.weekday().to_monday_zero_offset();
        if self.weekdays & (1u8 << wd) == 0 {
            return false;
        }
        if let Some((start, end)) = self.hours {
            let minute = dt.hour() as u16 * 60 + dt.minute() as u16;
            let inside = if start < end {
                minute >= start && minute < end
            } else {
                minute >= start || minute < end
            };
            if !inside {
                return false;
            }
        }
        let date = dt.date();
        if let Some(dates) = &self.dates
            && dates.binary_search(&date).is_err()
        {
            return false;
        }
        self.except.binary_search(&date).is_err()
    }

    pub fn hours_text(&self) -> Option<String> {
        self.hours
            .map(|(s, e)| format!("{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60))
    }

    pub fn weekdays_list(&self) -> Vec<&'static str> {
        (0..7)
            .filter(|i| self.weekdays & (1 << i) != 0)
            .map(|i| WEEKDAYS[i as usize])
            .collect()
    }
}

/// Path matchers on the canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathMatch {
    /// Segment-aware prefixes: `/audit` matches `/audit` and `/audit/…`, not `/auditx`.
    pub prefixes: Vec<String>,
    /// Globs: `*` any run within a segment, `**` any run across segments, `?` one
    /// character other than `/`.
    pub globs: Vec<String>,
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        self.prefixes.iter().any(|p| prefix_matches(p, path))
            || self
                .globs
                .iter()
                .any(|g| glob_matches(g.as_bytes(), path.as_bytes()))
    }
}

pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

pub(crate) fn glob_matches(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            (0..=s.len()).any(|i| glob_matches(rest, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob_matches(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    return false;
                }
            }
            false
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && glob_matches(&p[1..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob_matches(&p[1..], &s[1..]),
    }
}

/// One criterion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    Authenticated,
    Sub(StrSet),
    /// Lower-case; compared case-insensitively.
    Email(StrSet),
    /// Lower-case; compared case-insensitively.
    EmailDomain(StrSet),
    Groups(StrSet),
    Claim {
        name: String,
        test: ClaimTest,
    },
    Mfa,
    Acr(Arc<[String]>),
    MaxAuthAge(Duration),
    Certificate,
    DeviceId(StrSet),
    Posture(PostureFlag, bool),
    Ownership(Ownership),
    /// Lower-case OS families.
    Os(StrSet),
    MinOsVersion(Version),
    MaxOsVersion(Version),
    LastCheckInWithin(Duration),
    Tags(StrSet),
    Network(Vec<IpNet>),
    Time(Box<TimeWindow>),
    /// Upper-case.
    Method(StrSet),
    Path(PathMatch),
    Zone(StrSet),
    Route(StrSet),
}

pub(crate) fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

pub(crate) fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

impl Leaf {
    /// The YAML key (with its group) and a canonical JSON value: used for the
    /// policy version hash, the trace and diagnostics.
    pub fn canonical(&self) -> (&'static str, Value) {
        match self {
            Leaf::Authenticated => ("authenticated", json!(true)),
            Leaf::Sub(s) => ("user.sub", s.to_json()),
            Leaf::Email(s) => ("user.email", s.to_json()),
            Leaf::EmailDomain(s) => ("user.email_domain", s.to_json()),
            Leaf::Groups(s) => ("groups", s.to_json()),
            Leaf::Claim { name, test } => (
                "claim",
                match test {
                    ClaimTest::Equals(v) => json!({"name": name, "equals": v}),
                    ClaimTest::Contains(v) => json!({"name": name, "contains": v}),
                    ClaimTest::OneOf(v) => json!({"name": name, "one_of": v}),
                },
            ),
            Leaf::Mfa => ("mfa", json!(true)),
            Leaf::Acr(s) => ("acr", json!(s.to_vec())),
            Leaf::MaxAuthAge(d) => ("max_auth_age", json!(duration_text(*d))),
            Leaf::Certificate => ("device.certificate", json!(true)),
            Leaf::DeviceId(s) => ("device.id", s.to_json()),
            Leaf::Posture(flag, v) => (
                match flag {
                    PostureFlag::Managed => "device.managed",
                    PostureFlag::Compliant => "device.compliant",
                    PostureFlag::DiskEncryption => "device.disk_encryption",
                    PostureFlag::ScreenLock => "device.screen_lock",
                    PostureFlag::Firewall => "device.firewall",
                    PostureFlag::Antivirus => "device.antivirus",
                    PostureFlag::Edr => "device.edr",
                },
                json!(v),
            ),
            Leaf::Ownership(o) => ("device.ownership", json!(o.as_str())),
            Leaf::Os(s) => ("device.os", s.to_json()),
            Leaf::MinOsVersion(v) => ("device.min_os_version", json!(v.text)),
            Leaf::MaxOsVersion(v) => ("device.max_os_version", json!(v.text)),
            Leaf::LastCheckInWithin(d) => ("device.last_check_in_within", json!(duration_text(*d))),
            Leaf::Tags(s) => ("device.tags", s.to_json()),
            Leaf::Network(nets) => (
                "network",
                json!(nets.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
            ),
            Leaf::Time(w) => {
                let mut m = serde_json::Map::new();
                m.insert("tz".into(), json!(w.tz_name));
                m.insert("weekdays".into(), json!(w.weekdays_list()));
                if let Some(h) = w.hours_text() {
                    m.insert("hours".into(), json!(h));
                }
                if let Some(d) = &w.dates {
                    m.insert(
                        "dates".into(),
                        json!(d.iter().map(|d| d.to_string()).collect::<Vec<_>>()),
                    );
                }
                if !w.except.is_empty() {
                    m.insert(
                        "except_dates".into(),
                        json!(w.except.iter().map(|d| d.to_string()).collect::<Vec<_>>()),
                    );
                }
                ("time", Value::Object(m))
            }
            Leaf::Method(s) => ("method", s.to_json()),
            Leaf::Path(p) => ("path", json!({"prefix": p.prefixes, "glob": p.globs})),
            Leaf::Zone(s) => ("zone", s.to_json()),
            Leaf::Route(s) => ("route", s.to_json()),
        }
    }

    /// A short human description, e.g. `groups: ["staff"]`. Time windows show the
    /// names of their date lists rather than every date.
    pub fn describe(&self) -> String {
        if let Leaf::Time(w) = self {
            let mut parts = vec![format!("tz {}", w.tz_name)];
            if w.weekdays != 0x7f {
                parts.push(format!("weekdays {}", w.weekdays_list().join(",")));
            }
            if let Some(h) = w.hours_text() {
                parts.push(format!("hours {h}"));
            }
            if !w.dates_names.is_empty() {
                parts.push(format!("only on {}", w.dates_names.join(",")));
            }
            if !w.except_names.is_empty() {
                parts.push(format!("except {}", w.except_names.join(",")));
            }
            return format!("time: {}", parts.join("; "));
        }
        if let Leaf::Path(p) = self {
            let mut parts = Vec::new();
            if !p.prefixes.is_empty() {
                parts.push(format!("prefix {}", p.prefixes.join(", ")));
            }
            if !p.globs.is_empty() {
                parts.push(format!("glob {}", p.globs.join(", ")));
            }
            return format!("path: {}", parts.join("; "));
        }
        let (key, value) = self.canonical();
        format!("{key}: {value}")
    }

    /// The inventory posture facts this criterion reads (the certificate and the device
    /// ID are not inventory facts: the access record always carries them).
    pub fn posture_facts(&self) -> PostureFacts {
        match self {
            Leaf::Posture(flag, _) => match flag {
                PostureFlag::Managed => PostureFacts::MANAGED,
                PostureFlag::Compliant => PostureFacts::COMPLIANT,
                PostureFlag::DiskEncryption => PostureFacts::DISK_ENCRYPTION,
                PostureFlag::ScreenLock => PostureFacts::SCREEN_LOCK,
                PostureFlag::Firewall => PostureFacts::FIREWALL,
                PostureFlag::Antivirus => PostureFacts::ANTIVIRUS,
                PostureFlag::Edr => PostureFacts::EDR,
            },
            Leaf::Ownership(_) => PostureFacts::OWNERSHIP,
            Leaf::Os(_) => PostureFacts::OS,
            Leaf::MinOsVersion(_) | Leaf::MaxOsVersion(_) => PostureFacts::OS_VERSION,
            Leaf::LastCheckInWithin(_) => PostureFacts::LAST_CHECK_IN,
            Leaf::Tags(_) => PostureFacts::TAGS,
            _ => PostureFacts::NONE,
        }
    }

    /// Does this criterion look at the user's identity?
    pub fn needs_identity(&self) -> bool {
        matches!(
            self,
            Leaf::Authenticated
                | Leaf::Sub(_)
                | Leaf::Email(_)
                | Leaf::EmailDomain(_)
                | Leaf::Groups(_)
                | Leaf::Claim { .. }
                | Leaf::Mfa
                | Leaf::Acr(_)
                | Leaf::MaxAuthAge(_)
        )
    }
}

fn sorted_parts(parts: &[Cond]) -> Vec<Value> {
    let mut v: Vec<(String, Value)> = parts
        .iter()
        .map(|c| {
            let j = c.canonical();
            (crate::set::canonical_string(&j), j)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, j)| j).collect()
}

impl Cond {
    /// Calls `f` with every leaf criterion, in writing order.
    pub fn for_each_leaf<'a>(&'a self, f: &mut impl FnMut(&'a Leaf)) {
        match self {
            Cond::Anyone => {}
            Cond::All(parts) | Cond::Any(parts) => parts.iter().for_each(|p| p.for_each_leaf(f)),
            Cond::Not(inner) => inner.for_each_leaf(f),
            Cond::Leaf(l) => f(l),
        }
    }

    pub fn canonical(&self) -> Value {
        match self {
            Cond::Anyone => json!({"anyone": true}),
            // `all` and `any` are commutative: sort their parts so that key order in
            // YAML does not change the version.
            Cond::All(c) => json!({"all": sorted_parts(c)}),
            Cond::Any(c) => json!({"any": sorted_parts(c)}),
            Cond::Not(c) => json!({"not": c.canonical()}),
            Cond::Leaf(l) => {
                let (k, v) = l.canonical();
                json!({ k: v })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compare_is_numeric() {
        let v = |s: &str| Version::parse(s).unwrap().parts;
        assert_eq!(
            compare_version("10.0.19045", &v("10.0.19044")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_version("10.0.9999", &v("10.0.19044")),
            Some(Ordering::Less)
        );
        assert_eq!(compare_version("14", &v("14.0.0")), Some(Ordering::Equal));
        assert_eq!(compare_version("14.1", &v("14")), Some(Ordering::Greater));
        assert_eq!(compare_version("13.9", &v("14")), Some(Ordering::Less));
        assert_eq!(compare_version("14", &v("14.0.1")), Some(Ordering::Less));
        assert_eq!(
            compare_version("10.0.19045.3803-beta", &v("10.0.19045.3803")),
            Some(Ordering::Equal)
        );
        assert_eq!(compare_version("unknown", &v("1")), None);
        assert_eq!(compare_version("", &v("1")), None);
    }

    #[test]
    fn prefix_is_segment_aware() {
        assert!(prefix_matches("/audit", "/audit"));
        assert!(prefix_matches("/audit", "/audit/log"));
        assert!(!prefix_matches("/audit", "/auditx"));
        assert!(prefix_matches("/audit/", "/audit/x"));
        assert!(!prefix_matches("/audit/", "/audit"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn glob_stars() {
        let g = |p: &str, s: &str| glob_matches(p.as_bytes(), s.as_bytes());
        assert!(g("/api/*/items", "/api/v1/items"));
        assert!(!g("/api/*/items", "/api/v1/x/items"));
        assert!(g("/api/**/items", "/api/v1/x/items"));
        assert!(g("/files/**", "/files/a/b.pdf"));
        assert!(!g("/files/**", "/file"));
        assert!(g("/a?c", "/abc"));
        assert!(!g("/a?c", "/a/c"));
        assert!(g("*.pdf", "x.pdf"));
        assert!(!g("*.pdf", "/dir/x.pdf"));
    }

    #[test]
    fn time_window_wraps_midnight_and_skips_holidays() {
        let tz = TimeZone::get("Asia/Tokyo").unwrap();
        let w = TimeWindow {
            tz,
            tz_name: "Asia/Tokyo".into(),
            weekdays: 0b0011111,
            hours: Some((22 * 60, 6 * 60)),
            dates: None,
            dates_names: vec![],
            except: vec![jiff::civil::date(2026, 5, 4)],
            except_names: vec![],
        };
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        // Tuesday 2026-04-14 23:00 JST
        assert!(w.matches(at("2026-04-14T14:00:00Z")));
        // Tuesday 12:00 JST
        assert!(!w.matches(at("2026-04-14T03:00:00Z")));
        // Saturday 23:00 JST
        assert!(!w.matches(at("2026-04-18T14:00:00Z")));
        // Monday 2026-05-04 (みどりの日) 23:00 JST
        assert!(!w.matches(at("2026-05-04T14:00:00Z")));
    }
}
