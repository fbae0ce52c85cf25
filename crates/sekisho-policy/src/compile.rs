//! YAML policy documents → compiled [`PolicySet`]. Every problem in every file is
//! reported in one run, with file, line, column, key path and a hint.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use sekisho_yaml::{Decoder, Diagnostic, Kind, Node, Path, Severity, did_you_mean};
use serde_json::Value;

use crate::check;
use crate::input::Ownership;
use crate::model::{
    ClaimTest, Cond, DEFAULT_MFA_AMR, DEFAULT_TIMEZONE, Leaf, PathMatch, Policy, PostureFlag, Rule,
    RuleKind, Settings, Span, StrSet, TimeWindow, Version, WEEKDAYS,
};
use crate::set::PolicySet;

pub(crate) const TOP_KEYS: &[&str] = &["policies", "settings"];
pub(crate) const SETTINGS_KEYS: &[&str] = &["timezone", "mfa_amr_values", "holidays"];
pub(crate) const POLICY_KEYS: &[&str] = &["description", "allow", "deny"];
pub(crate) const CRITERIA: &[&str] = &[
    "anyone",
    "authenticated",
    "user",
    "groups",
    "claim",
    "mfa",
    "acr",
    "max_auth_age",
    "device",
    "network",
    "time",
    "method",
    "path",
    "zone",
    "route",
    "all",
    "any",
    "not",
];
pub(crate) const USER_KEYS: &[&str] = &["sub", "email", "email_domain"];
pub(crate) const CLAIM_KEYS: &[&str] = &["name", "equals", "contains", "one_of"];
pub(crate) const DEVICE_KEYS: &[&str] = &[
    "certificate",
    "id",
    "managed",
    "ownership",
    "compliant",
    "os",
    "min_os_version",
    "max_os_version",
    "disk_encryption",
    "screen_lock",
    "firewall",
    "antivirus",
    "edr",
    "last_check_in_within",
    "tags",
];
pub(crate) const TIME_KEYS: &[&str] = &["tz", "weekdays", "hours", "dates", "except_dates"];
pub(crate) const PATH_KEYS: &[&str] = &["prefix", "glob"];
pub(crate) const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];
pub(crate) const OS_FAMILIES: &[&str] = &[
    "windows", "macos", "ios", "ipados", "android", "linux", "chromeos",
];
const MAX_GLOB_STARS: usize = 4;

impl PolicySet {
    /// Compile policy files `(path, text)`. Several files merge into one set; a
    /// policy name defined twice is an error naming both places. On success returns
    /// the set and its warnings; on failure every diagnostic (errors and warnings).
    pub fn compile<P: AsRef<str>, T: AsRef<str>>(
        files: &[(P, T)],
    ) -> Result<(PolicySet, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut docs = Vec::new();
        for (path, text) in files {
            let path = path.as_ref();
            match sekisho_yaml::parse(path, text.as_ref()) {
                Ok(node) => docs.push((path, node)),
                Err(d) => diags.push(d),
            }
        }

        // Settings first: policies refer to holiday lists and the default time zone.
        let mut settings = SettingsBuilder::default();
        let mut decoders = Vec::new();
        for (path, node) in &docs {
            let mut d = Decoder::new(path);
            let root = Path::root();
            if let Some(top) = d.map(node, &root, TOP_KEYS) {
                if let Some(s) = top.get("settings") {
                    settings.read(&mut d, s, &root.key("settings"));
                }
                if matches!(node.kind, Kind::Map(ref e) if e.is_empty())
                    || top.get("policies").is_none() && top.get("settings").is_none()
                {
                    d.warning(
                        node,
                        &root,
                        "this file defines no policies and no settings",
                        Some("a policy file starts with `policies:`".into()),
                    );
                }
            }
            decoders.push(d);
        }
        let settings = settings.finish(&mut diags);

        let mut policies: Vec<Policy> = Vec::new();
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut used_lists: Vec<String> = Vec::new();
        for ((path, node), d) in docs.iter().zip(decoders.iter_mut()) {
            let root = Path::root();
            let Some(pnode) = node.get("policies") else {
                continue;
            };
            let ppath = root.key("policies");
            let Some(entries) = d.named_entries(pnode, &ppath) else {
                continue;
            };
            let file: Arc<str> = Arc::from(*path);
            for (name, key, value) in entries {
                let span = Span {
                    file: file.clone(),
                    line: key.line,
                    column: key.column,
                };
                if !valid_name(name) {
                    d.error(
                        key,
                        &ppath.key(name),
                        format!("`{name}` is not a valid policy name"),
                        Some("use lower-case letters, digits and `-`, e.g. `lgwan-staff`".into()),
                    );
                }
                if let Some(first) = seen.get(name) {
                    d.error(
                        key,
                        &ppath.key(name),
                        format!(
                            "policy `{name}` is defined twice: first at {}:{}:{}",
                            first.file, first.line, first.column
                        ),
                        Some("rename one of them or merge their rules".into()),
                    );
                    continue;
                }
                seen.insert(name.to_string(), span.clone());
                let mut c = Ctx {
                    d,
                    settings: &settings,
                    file: file.clone(),
                    used_lists: &mut used_lists,
                };
                if let Some(p) = c.policy(name, value, &ppath.key(name), span) {
                    policies.push(p);
                }
            }
        }
        for d in decoders {
            diags.extend(d.into_diagnostics());
        }
        for (list, _) in &settings.holidays {
            if !used_lists.contains(list)
                && let Some(at) = settings_list_span(&docs, list)
            {
                diags.push(at);
            }
        }
        diags.extend(check::static_checks(&policies, &settings));

        if diags.iter().any(Diagnostic::is_error) {
            sort(&mut diags);
            return Err(diags);
        }
        sort(&mut diags);
        Ok((PolicySet::new(policies, settings), diags))
    }
}

fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column, a.severity).cmp(&(
            b.file.as_str(),
            b.line,
            b.column,
            b.severity,
        ))
    });
}

fn settings_list_span(docs: &[(&str, Node)], list: &str) -> Option<Diagnostic> {
    for (path, node) in docs {
        if let Some(k) = node
            .get("settings")
            .and_then(|s| s.get("holidays"))
            .and_then(|h| match &h.kind {
                Kind::Map(e) => e
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(list))
                    .map(|(k, _)| k),
                _ => None,
            })
        {
            return Some(Diagnostic {
                severity: Severity::Warning,
                file: path.to_string(),
                line: k.line,
                column: k.column,
                path: format!("settings.holidays.{list}"),
                message: format!("date list `{list}` is not used by any policy"),
                hint: Some(
                    "refer to it from a time window: `except_dates: [".to_string() + list + "]`",
                ),
            });
        }
    }
    None
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[derive(Default)]
struct SettingsBuilder {
    timezone: Option<(String, TimeZone, Span)>,
    mfa: Option<(Vec<String>, Span)>,
    holidays: Vec<(String, Vec<Date>, Span)>,
    errors: Vec<Diagnostic>,
}

fn span_of(d: &Decoder, n: &Node) -> Span {
    Span {
        file: Arc::from(d.file()),
        line: n.line,
        column: n.column,
    }
}

fn twice(d: &mut Decoder, n: &Node, path: &Path, what: &str, first: &Span) {
    d.error(
        n,
        path,
        format!(
            "{what} is set twice: first at {}:{}:{}",
            first.file, first.line, first.column
        ),
        Some("keep one `settings:` value for the whole policy set".into()),
    );
}

impl SettingsBuilder {
    fn read(&mut self, d: &mut Decoder, node: &Node, path: &Path) {
        let Some(m) = d.map(node, path, SETTINGS_KEYS) else {
            return;
        };
        if let Some(n) = m.get("timezone") {
            let p = path.key("timezone");
            if let Some(first) = self.timezone.as_ref().map(|t| t.2.clone()) {
                twice(d, n, &p, "`timezone`", &first);
            } else if let Some(name) = d.string(n, &p)
                && let Some(tz) = time_zone(d, n, &p, &name)
            {
                self.timezone = Some((name, tz, span_of(d, n)));
            }
        }
        if let Some(n) = m.get("mfa_amr_values") {
            let p = path.key("mfa_amr_values");
            if let Some(first) = self.mfa.as_ref().map(|t| t.1.clone()) {
                twice(d, n, &p, "`mfa_amr_values`", &first);
            } else if let Some(values) = d.string_list(n, &p) {
                if values.is_empty() {
                    d.error(
                        n,
                        &p,
                        "no `amr` value counts as MFA: `mfa: true` could never match",
                        Some(format!("the default is [{}]", DEFAULT_MFA_AMR.join(", "))),
                    );
                } else {
                    for (i, v) in values.iter().enumerate() {
                        if v == "pwd" {
                            d.error(
                                &seq_item(n, i),
                                &p.index(i),
                                "`pwd` (password) is a single factor",
                                Some("list second factors such as `otp`, `hwk`, `fido`".into()),
                            );
                        }
                    }
                    self.mfa = Some((values, span_of(d, n)));
                }
            }
        }
        if let Some(n) = m.get("holidays") {
            let p = path.key("holidays");
            if let Some(entries) = d.named_entries(n, &p) {
                for (name, key, value) in entries {
                    let lp = p.key(name);
                    if let Some((_, _, first)) = self.holidays.iter().find(|h| h.0 == name) {
                        let first = first.clone();
                        twice(d, key, &lp, &format!("date list `{name}`"), &first);
                        continue;
                    }
                    if !valid_name(name) {
                        d.error(
                            key,
                            &lp,
                            format!("`{name}` is not a valid list name"),
                            Some(
                                "use lower-case letters, digits and `-`, e.g. `jp-holidays`".into(),
                            ),
                        );
                    }
                    let Some(items) = d.seq(value, &lp) else {
                        continue;
                    };
                    let mut dates = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        if let Some(date) = date(d, item, &lp.index(i)) {
                            dates.push(date);
                        }
                    }
                    dates.sort();
                    dates.dedup();
                    self.holidays
                        .push((name.to_string(), dates, span_of(d, key)));
                }
            }
        }
    }

    fn finish(self, diags: &mut Vec<Diagnostic>) -> Settings {
        diags.extend(self.errors);
        let default = Settings::default();
        let (timezone_name, timezone) = match self.timezone {
            Some((name, tz, _)) => (name, tz),
            None => (DEFAULT_TIMEZONE.to_string(), default.timezone),
        };
        Settings {
            timezone,
            timezone_name,
            mfa_amr: match self.mfa {
                Some((v, _)) => StrSet::new(v),
                None => default.mfa_amr,
            },
            holidays: self.holidays.into_iter().map(|(n, d, _)| (n, d)).collect(),
        }
    }
}

fn seq_item(n: &Node, i: usize) -> Node {
    match &n.kind {
        Kind::Seq(items) => items[i].clone(),
        _ => n.clone(),
    }
}

fn time_zone(d: &mut Decoder, n: &Node, p: &Path, name: &str) -> Option<TimeZone> {
    match TimeZone::get(name) {
        Ok(tz) => Some(tz),
        Err(_) => {
            d.error(
                n,
                p,
                format!("unknown time zone `{name}`"),
                Some("use an IANA name such as `Asia/Tokyo`".into()),
            );
            None
        }
    }
}

fn date(d: &mut Decoder, n: &Node, p: &Path) -> Option<Date> {
    let s = d.string(n, p)?;
    match s.parse::<Date>() {
        Ok(date) => Some(date),
        Err(_) => {
            d.error(
                n,
                p,
                format!("`{s}` is not a date"),
                Some("write dates as `2026-05-04`".into()),
            );
            None
        }
    }
}

/// Per-file compilation context.
struct Ctx<'a> {
    d: &'a mut Decoder,
    settings: &'a Settings,
    file: Arc<str>,
    used_lists: &'a mut Vec<String>,
}

fn yaml_to_json(n: &Node) -> Value {
    match &n.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => Value::from(*i),
        Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Kind::Str(s) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map_or_else(|| format!("{:?}", k.kind), str::to_string),
                        yaml_to_json(v),
                    )
                })
                .collect(),
        ),
    }
}

impl Ctx<'_> {
    fn span(&self, n: &Node) -> Span {
        Span {
            file: self.file.clone(),
            line: n.line,
            column: n.column,
        }
    }

    fn policy(&mut self, name: &str, node: &Node, path: &Path, span: Span) -> Option<Policy> {
        let m = self.d.map(node, path, POLICY_KEYS)?;
        let description = match m.get("description") {
            Some(n) => self.d.string(n, &path.key("description")),
            None => None,
        };
        let mut ok = true;
        let mut rules = |c: &mut Ctx, key: &str, kind: RuleKind| -> Vec<Rule> {
            let mut out = Vec::new();
            let Some(list) = m.get(key) else {
                return out;
            };
            let lp = path.key(key);
            let Some(items) = c.d.seq(list, &lp) else {
                ok = false;
                return out;
            };
            for (i, item) in items.iter().enumerate() {
                let rp = lp.index(i);
                match c.rule(item, &rp, kind) {
                    Some((rname, cond)) => out.push(Rule {
                        kind,
                        path: Arc::from(format!("{name}.{key}[{i}]")),
                        name: rname,
                        cond,
                        span: c.span(item),
                    }),
                    None => ok = false,
                }
            }
            out
        };
        let allow = rules(self, "allow", RuleKind::Allow);
        let deny = rules(self, "deny", RuleKind::Deny);
        if m.get("allow").is_none() && m.get("deny").is_none() {
            self.d.warning(
                node,
                path,
                format!("policy `{name}` has no rules: it denies every request"),
                Some("add an `allow:` list".into()),
            );
        }
        ok.then(|| Policy {
            name: Arc::from(name),
            description,
            allow,
            deny,
            span,
        })
    }

    /// A rule is a condition mapping that may also carry a `name`.
    fn rule(
        &mut self,
        node: &Node,
        path: &Path,
        _kind: RuleKind,
    ) -> Option<(Option<String>, Cond)> {
        let Kind::Map(entries) = &node.kind else {
            self.d.error(
                node,
                path,
                format!(
                    "expected a rule (a mapping of criteria), found {}",
                    node.type_name()
                ),
                Some("for example `- groups: [staff]`".into()),
            );
            return None;
        };
        let name = match entries.iter().find(|(k, _)| k.as_str() == Some("name")) {
            Some((_, v)) => Some(self.d.string(v, &path.key("name"))?),
            None => None,
        };
        let cond = self.cond_map(node, path, true)?;
        Some((name, cond))
    }

    fn cond(&mut self, node: &Node, path: &Path) -> Option<Cond> {
        match &node.kind {
            Kind::Map(_) => self.cond_map(node, path, false),
            _ => {
                self.d.error(
                    node,
                    path,
                    format!(
                        "expected a condition (a mapping of criteria), found {}",
                        node.type_name()
                    ),
                    Some("for example `{ groups: [staff] }`".into()),
                );
                None
            }
        }
    }

    fn cond_list(&mut self, node: &Node, path: &Path, what: &str) -> Option<Vec<Cond>> {
        let items = self.d.seq(node, path)?;
        if items.is_empty() {
            self.d.error(
                node,
                path,
                format!("`{what}` needs at least one condition"),
                None,
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.cond(item, &path.index(i)) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Every key of the mapping is one criterion; several keys are AND-ed.
    fn cond_map(&mut self, node: &Node, path: &Path, rule_level: bool) -> Option<Cond> {
        let mut allowed: Vec<&str> = CRITERIA.to_vec();
        if rule_level {
            allowed.push("name");
        }
        let m = self.d.map(node, path, &allowed)?;
        let mut parts = Vec::new();
        let mut ok = true;
        for (key, knode, value) in m.entries() {
            if !allowed.contains(&key) {
                ok = false;
                continue;
            }
            if key == "name" {
                continue;
            }
            let p = path.key(key);
            match self.criterion(key, knode, value, &p) {
                Some(c) => match c {
                    // `device: {a, b}` and `all: [..]` are already conjunctions; flatten.
                    Cond::All(inner) if key == "device" || key == "all" => parts.extend(inner),
                    other => parts.push(other),
                },
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        match parts.len() {
            0 => {
                self.d.error(
                    node,
                    path,
                    "a condition needs at least one criterion",
                    Some("to admit every request write `anyone: true`".into()),
                );
                None
            }
            1 => parts.pop(),
            _ => Some(Cond::All(parts)),
        }
    }

    fn true_only(&mut self, n: &Node, p: &Path, key: &str) -> Option<()> {
        let b = self.d.boolean(n, p)?;
        if !b {
            self.d.error(
                n,
                p,
                format!("`{key}: false` is not supported"),
                Some(format!("write `not: {{ {key}: true }}`")),
            );
            return None;
        }
        Some(())
    }

    fn set(&mut self, n: &Node, p: &Path, what: &str) -> Option<StrSet> {
        let items = self.d.string_list(n, p)?;
        if items.is_empty() {
            self.d.error(
                n,
                p,
                format!("empty {what} list: this criterion can never match"),
                Some(format!("name at least one {what}")),
            );
            return None;
        }
        for (i, s) in items.iter().enumerate() {
            if s.trim().is_empty() {
                let at = seq_item(n, i);
                self.d
                    .error(&at, &p.index(i), format!("empty {what}"), None);
                return None;
            }
        }
        Some(StrSet::new(items))
    }

    fn criterion(&mut self, key: &str, _knode: &Node, n: &Node, p: &Path) -> Option<Cond> {
        let leaf = match key {
            "anyone" => {
                self.true_only(n, p, key)?;
                return Some(Cond::Anyone);
            }
            "all" => return Some(Cond::All(self.cond_list(n, p, "all")?)),
            "any" => return Some(Cond::Any(self.cond_list(n, p, "any")?)),
            "not" => return Some(Cond::Not(Box::new(self.cond(n, p)?))),
            "authenticated" => {
                self.true_only(n, p, key)?;
                Leaf::Authenticated
            }
            "user" => return self.user(n, p),
            "groups" => Leaf::Groups(self.set(n, p, "group")?),
            "claim" => self.claim(n, p)?,
            "mfa" => {
                self.true_only(n, p, key)?;
                Leaf::Mfa
            }
            "acr" => Leaf::Acr(Arc::from(self.set(n, p, "acr value")?.0)),
            "max_auth_age" => Leaf::MaxAuthAge(self.positive_duration(n, p)?),
            "device" => return self.device(n, p),
            "network" => Leaf::Network(self.networks(n, p)?),
            "time" => Leaf::Time(Box::new(self.time(n, p)?)),
            "method" => Leaf::Method(self.methods(n, p)?),
            "path" => Leaf::Path(self.path(n, p)?),
            "zone" => Leaf::Zone(self.set(n, p, "zone")?),
            "route" => Leaf::Route(self.set(n, p, "route")?),
            _ => return None,
        };
        Some(Cond::Leaf(leaf))
    }

    fn positive_duration(&mut self, n: &Node, p: &Path) -> Option<std::time::Duration> {
        let d = self.d.duration(n, p)?;
        if d.is_zero() {
            self.d.error(
                n,
                p,
                "a zero duration can never be met",
                Some("for example `15m` or `7d`".into()),
            );
            return None;
        }
        Some(d)
    }

    fn user(&mut self, n: &Node, p: &Path) -> Option<Cond> {
        let m = self.d.map(n, p, USER_KEYS)?;
        let mut parts = Vec::new();
        let mut ok = true;
        for (key, _, v) in m.entries() {
            let kp = p.key(key);
            let leaf = match key {
                "sub" => self.set(v, &kp, "subject").map(Leaf::Sub),
                "email" => self.set(v, &kp, "e-mail address").map(|s| {
                    Leaf::Email(StrSet::new(
                        s.0.iter().map(|e| e.to_ascii_lowercase()).collect(),
                    ))
                }),
                "email_domain" => self.set(v, &kp, "domain").map(|s| {
                    Leaf::EmailDomain(StrSet::new(
                        s.0.iter()
                            .map(|e| e.trim_start_matches('@').to_ascii_lowercase())
                            .collect(),
                    ))
                }),
                _ => continue,
            };
            match leaf {
                Some(l) => parts.push(Cond::Leaf(l)),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if parts.is_empty() {
            if m.entries().next().is_some() {
                return None;
            }
            self.d
                .error(n, p, "`user` needs `sub`, `email` or `email_domain`", None);
            return None;
        }
        // Any of the listed user criteria identifies the user.
        Some(if parts.len() == 1 {
            parts.pop()?
        } else {
            Cond::Any(parts)
        })
    }

    fn claim(&mut self, n: &Node, p: &Path) -> Option<Leaf> {
        let m = self.d.map(n, p, CLAIM_KEYS)?;
        let name_node = m.require(self.d, "name")?;
        let name = self.d.nonempty_string(name_node, &p.key("name"))?;
        let tests: Vec<_> = ["equals", "contains", "one_of"]
            .iter()
            .filter_map(|k| m.get(k).map(|v| (*k, v)))
            .collect();
        if tests.len() != 1 {
            self.d.error(
                n,
                p,
                "a claim criterion needs exactly one of `equals`, `contains`, `one_of`",
                Some("e.g. `claim: { name: department, one_of: [総務課, 情報政策課] }`".into()),
            );
            return None;
        }
        let (k, v) = tests[0];
        let test = match k {
            "equals" => ClaimTest::Equals(yaml_to_json(v)),
            "contains" => ClaimTest::Contains(yaml_to_json(v)),
            _ => {
                let items = self.d.seq(v, &p.key(k))?;
                if items.is_empty() {
                    self.d.error(
                        v,
                        &p.key(k),
                        "empty `one_of`: this criterion can never match",
                        None,
                    );
                    return None;
                }
                ClaimTest::OneOf(items.iter().map(yaml_to_json).collect())
            }
        };
        Some(Leaf::Claim { name, test })
    }

    fn device(&mut self, n: &Node, p: &Path) -> Option<Cond> {
        let m = self.d.map(n, p, DEVICE_KEYS)?;
        let mut parts = Vec::new();
        let mut ok = true;
        let mut min: Option<Version> = None;
        let mut max: Option<Version> = None;
        for (key, _, v) in m.entries() {
            let kp = p.key(key);
            let leaf = match key {
                "certificate" => self
                    .true_only(v, &kp, "device: { certificate")
                    .map(|_| Leaf::Certificate),
                "id" => self.set(v, &kp, "device ID").map(Leaf::DeviceId),
                "ownership" => self.d.one_of(v, &kp, &["corporate", "byod"]).map(|o| {
                    Leaf::Ownership(if o == "byod" {
                        Ownership::Byod
                    } else {
                        Ownership::Corporate
                    })
                }),
                "os" => self.set(v, &kp, "operating system").map(|s| {
                    for os in &s.0 {
                        if !OS_FAMILIES.contains(&os.to_ascii_lowercase().as_str()) {
                            let hint = did_you_mean(os, OS_FAMILIES).map_or_else(
                                || format!("known families: {}", OS_FAMILIES.join(", ")),
                                |m| format!("did you mean `{m}`?"),
                            );
                            self.d.warning(
                                v,
                                &kp,
                                format!("`{os}` is not an OS family the device sources report"),
                                Some(hint),
                            );
                        }
                    }
                    Leaf::Os(StrSet::new(
                        s.0.iter().map(|o| o.to_ascii_lowercase()).collect(),
                    ))
                }),
                "min_os_version" | "max_os_version" => {
                    let version = self
                        .d
                        .string(v, &kp)
                        .and_then(|s| match Version::parse(&s) {
                            Some(ver) => Some(ver),
                            None => {
                                self.d.error(
                                    v,
                                    &kp,
                                    format!("`{s}` is not a version"),
                                    Some("write dotted numbers such as `10.0.19045`".into()),
                                );
                                None
                            }
                        });
                    version.map(|ver| {
                        if key == "min_os_version" {
                            min = Some(ver.clone());
                            Leaf::MinOsVersion(ver)
                        } else {
                            max = Some(ver.clone());
                            Leaf::MaxOsVersion(ver)
                        }
                    })
                }
                "last_check_in_within" => {
                    self.positive_duration(v, &kp).map(Leaf::LastCheckInWithin)
                }
                "tags" => self.set(v, &kp, "tag").map(Leaf::Tags),
                flag => {
                    let Some(f) = PostureFlag::ALL.iter().copied().find(|f| f.key() == flag) else {
                        continue;
                    };
                    self.d.boolean(v, &kp).map(|b| Leaf::Posture(f, b))
                }
            };
            match leaf {
                Some(l) => parts.push(Cond::Leaf(l)),
                None => ok = false,
            }
        }
        if let (Some(lo), Some(hi)) = (&min, &max)
            && crate::model::compare_version(&lo.text, &hi.parts)
                == Some(std::cmp::Ordering::Greater)
        {
            self.d.error(
                n,
                p,
                format!(
                    "`min_os_version` {} is above `max_os_version` {}: this can never match",
                    lo.text, hi.text
                ),
                Some("swap them or widen the range".into()),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        if parts.is_empty() {
            if m.entries().next().is_some() {
                // Only unknown keys: already reported.
                return None;
            }
            self.d.error(
                n,
                p,
                "`device` needs at least one criterion",
                Some(format!(
                    "for example `device: {{ managed: true }}`; keys: {}",
                    DEVICE_KEYS.join(", ")
                )),
            );
            return None;
        }
        Some(if parts.len() == 1 {
            parts.pop()?
        } else {
            Cond::All(parts)
        })
    }

    fn networks(&mut self, n: &Node, p: &Path) -> Option<Vec<IpNet>> {
        let items = self.d.string_list(n, p)?;
        if items.is_empty() {
            self.d.error(
                n,
                p,
                "empty network list: this criterion can never match",
                None,
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, s) in items.iter().enumerate() {
            let parsed = s
                .parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
            match parsed {
                Some(net) => {
                    if net.trunc() != net {
                        self.d.warning(
                            &seq_item(n, i),
                            &p.index(i),
                            format!("`{s}` has host bits set; it means `{}`", net.trunc()),
                            None,
                        );
                    }
                    out.push(net.trunc());
                }
                None => {
                    self.d.error(
                        &seq_item(n, i),
                        &p.index(i),
                        format!("`{s}` is not a network"),
                        Some("write CIDR such as `192.0.2.0/24`, or a single address".into()),
                    );
                    ok = false;
                }
            }
        }
        out.sort();
        out.dedup();
        ok.then_some(out)
    }

    fn methods(&mut self, n: &Node, p: &Path) -> Option<StrSet> {
        let set = self.set(n, p, "method")?;
        let mut out = Vec::new();
        for m in set.0 {
            let up = m.to_ascii_uppercase();
            if !METHODS.contains(&up.as_str()) {
                let hint = did_you_mean(&up, METHODS).map(|s| format!("did you mean `{s}`?"));
                self.d
                    .error(n, p, format!("`{m}` is not an HTTP method"), hint);
                return None;
            }
            out.push(up);
        }
        Some(StrSet::new(out))
    }

    fn path(&mut self, n: &Node, p: &Path) -> Option<PathMatch> {
        let m = self.d.map(n, p, PATH_KEYS)?;
        let mut prefixes = Vec::new();
        let mut globs = Vec::new();
        let mut ok = true;
        for (key, _, v) in m.entries() {
            let kp = p.key(key);
            let Some(items) = self.d.string_list(v, &kp) else {
                ok = false;
                continue;
            };
            for (i, s) in items.into_iter().enumerate() {
                if !s.starts_with('/') {
                    self.d.error(
                        &seq_item(v, i),
                        &kp.index(i),
                        format!("`{s}` does not start with `/`"),
                        Some(
                            "paths are matched on the canonical request path, e.g. `/audit`".into(),
                        ),
                    );
                    ok = false;
                    continue;
                }
                if key == "glob" {
                    if s.matches('*').count() > MAX_GLOB_STARS {
                        self.d.error(
                            &seq_item(v, i),
                            &kp.index(i),
                            format!("glob `{s}` has more than {MAX_GLOB_STARS} `*`"),
                            Some("split it into several globs".into()),
                        );
                        ok = false;
                        continue;
                    }
                    globs.push(s);
                } else {
                    prefixes.push(s);
                }
            }
        }
        if !ok {
            return None;
        }
        if prefixes.is_empty() && globs.is_empty() {
            if m.entries().next().is_some() {
                return None;
            }
            self.d
                .error(n, p, "`path` needs a `prefix` or a `glob`", None);
            return None;
        }
        prefixes.sort();
        prefixes.dedup();
        globs.sort();
        globs.dedup();
        Some(PathMatch { prefixes, globs })
    }

    fn date_refs(&mut self, n: &Node, p: &Path, names: &mut Vec<String>) -> Option<Vec<Date>> {
        let items = self.d.string_list(n, p)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, s) in items.iter().enumerate() {
            if let Ok(date) = s.parse::<Date>() {
                out.push(date);
                names.push(s.clone());
            } else if let Some((_, dates)) =
                self.settings.holidays.iter().find(|(name, _)| name == s)
            {
                out.extend(dates.iter().copied());
                names.push(s.clone());
                if !self.used_lists.contains(s) {
                    self.used_lists.push(s.clone());
                }
            } else {
                let known: Vec<&str> = self
                    .settings
                    .holidays
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect();
                let hint = match did_you_mean(s, &known) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None if known.is_empty() => "define it under `settings: holidays:`, or write a date such as `2026-12-29`".into(),
                    None => format!("known date lists: {}", known.join(", ")),
                };
                self.d.error(
                    &seq_item(n, i),
                    &p.index(i),
                    format!("unknown date list `{s}`"),
                    Some(hint),
                );
                ok = false;
            }
        }
        out.sort();
        out.dedup();
        ok.then_some(out)
    }

    fn time(&mut self, n: &Node, p: &Path) -> Option<TimeWindow> {
        let m = self.d.map(n, p, TIME_KEYS)?;
        let mut ok = true;
        let (tz, tz_name) = match m.get("tz") {
            Some(v) => {
                let kp = p.key("tz");
                // On an error carry on with the default, to report the other keys too.
                let fallback = (
                    self.settings.timezone.clone(),
                    self.settings.timezone_name.clone(),
                );
                match self.d.string(v, &kp) {
                    Some(name) => match time_zone(self.d, v, &kp, &name) {
                        Some(tz) => (tz, name),
                        None => {
                            ok = false;
                            fallback
                        }
                    },
                    None => {
                        ok = false;
                        fallback
                    }
                }
            }
            None => (
                self.settings.timezone.clone(),
                self.settings.timezone_name.clone(),
            ),
        };
        let mut weekdays = 0x7f;
        if let Some(v) = m.get("weekdays") {
            let kp = p.key("weekdays");
            match self.d.string_list(v, &kp) {
                Some(days) => {
                    weekdays = 0;
                    for day in &days {
                        match parse_days(day) {
                            Some(bits) => weekdays |= bits,
                            None => {
                                let hint = did_you_mean(day, &WEEKDAYS).map_or_else(|| "use mon, tue, wed, thu, fri, sat, sun or a range such as `mon-fri`".to_string(), |s| format!("did you mean `{s}`?"));
                                self.d.error(
                                    v,
                                    &kp,
                                    format!("`{day}` is not a day of the week"),
                                    Some(hint),
                                );
                                ok = false;
                            }
                        }
                    }
                    if ok && weekdays == 0 {
                        self.d.error(
                            v,
                            &kp,
                            "no week days: this time window can never match",
                            None,
                        );
                        ok = false;
                    }
                }
                None => ok = false,
            }
        }
        let mut hours = None;
        if let Some(v) = m.get("hours") {
            let kp = p.key("hours");
            match self.d.string(v, &kp) {
                Some(s) => match parse_hours(&s) {
                    Some((a, b)) if a == b => {
                        self.d.error(
                            v,
                            &kp,
                            format!("`{s}` starts and ends at the same time: it can never match"),
                            Some(
                                "for the whole day write `00:00-24:00`, or leave `hours` out"
                                    .into(),
                            ),
                        );
                        ok = false;
                    }
                    Some(h) => hours = (h != (0, 1440)).then_some(h),
                    None => {
                        self.d.error(v, &kp, format!("`{s}` is not a range of hours"), Some("write `HH:MM-HH:MM`, e.g. `08:30-17:15`; `22:00-06:00` spans midnight".into()));
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        let mut dates_names = Vec::new();
        let dates = match m.get("dates") {
            Some(v) => match self.date_refs(v, &p.key("dates"), &mut dates_names) {
                Some(d) if d.is_empty() => {
                    self.d.error(
                        v,
                        &p.key("dates"),
                        "no dates: this time window can never match",
                        None,
                    );
                    ok = false;
                    None
                }
                Some(d) => Some(d),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let mut except_names = Vec::new();
        let except = match m.get("except_dates") {
            Some(v) => self
                .date_refs(v, &p.key("except_dates"), &mut except_names)
                .unwrap_or_else(|| {
                    ok = false;
                    Vec::new()
                }),
            None => Vec::new(),
        };
        if let Some(d) = &dates
            && d.iter().all(|x| except.binary_search(x).is_ok())
        {
            self.d.error(
                n,
                p,
                "every date in `dates` is also in `except_dates`: this can never match",
                None,
            );
            ok = false;
        }
        if m.get("weekdays").is_none()
            && m.get("hours").is_none()
            && m.get("dates").is_none()
            && m.get("except_dates").is_none()
        {
            self.d.error(
                n,
                p,
                "`time` needs `weekdays`, `hours`, `dates` or `except_dates`",
                None,
            );
            ok = false;
        }
        if hours.is_none()
            && m.get("hours").is_some()
            && ok
            && m.get("weekdays").is_none()
            && m.get("dates").is_none()
            && m.get("except_dates").is_none()
        {
            self.d.warning(
                n,
                p,
                "this time window covers every moment",
                Some("remove it, or narrow `hours`".into()),
            );
        }
        ok.then_some(TimeWindow {
            tz,
            tz_name,
            weekdays,
            hours,
            dates,
            dates_names,
            except,
            except_names,
        })
    }
}

fn day_index(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    let short = s.get(..3)?;
    WEEKDAYS
        .iter()
        .position(|d| *d == short)
        .filter(|_| {
            // Accept `mon` and `monday`, nothing else.
            let full = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ];
            s.len() == 3 || full.contains(&s.as_str())
        })
        .map(|i| i as u8)
}

/// `mon`, `monday`, `mon-fri`, `sat-sun`, `fri-mon` (wraps).
fn parse_days(s: &str) -> Option<u8> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (day_index(a)?, day_index(b)?);
            let mut bits = 0u8;
            let mut i = a;
            loop {
                bits |= 1 << i;
                if i == b {
                    break;
                }
                i = (i + 1) % 7;
            }
            Some(bits)
        }
        None => day_index(s).map(|i| 1 << i),
    }
}

fn parse_hm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) || s.trim().len() != 5 {
        return None;
    }
    Some(h * 60 + m)
}

/// `08:30-17:15` → (510, 1035). `24:00` is allowed as an end.
fn parse_hours(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (parse_hm(a)?, parse_hm(b)?);
    if a == 1440 {
        return None;
    }
    Some((a, if b == 1440 && a != 0 { 0 } else { b })).map(|(a, b)| {
        if a == 0 && b == 1440 {
            (0, 1440)
        } else {
            (a, b % 1440)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_hours() {
        assert_eq!(parse_days("mon-fri"), Some(0b0011111));
        assert_eq!(parse_days("sat-sun"), Some(0b1100000));
        assert_eq!(parse_days("fri-mon"), Some(0b1110001));
        assert_eq!(parse_days("Tuesday"), Some(0b10));
        assert_eq!(parse_days("tues"), None);
        assert_eq!(parse_hours("08:30-17:15"), Some((510, 1035)));
        assert_eq!(parse_hours("22:00-06:00"), Some((1320, 360)));
        assert_eq!(parse_hours("18:00-24:00"), Some((1080, 0)));
        assert_eq!(parse_hours("00:00-24:00"), Some((0, 1440)));
        assert_eq!(parse_hours("8:30-17:15"), None);
        assert_eq!(parse_hours("08:60-17:15"), None);
    }
}
