//! `explain`: the whole evaluation of one request, every rule and criterion, matched
//! or not, and why. Built for people, so it allocates freely; the decision it shows
//! is the one [`PolicySet::evaluate`] returns.

use std::fmt;

use crate::eval::{self, Decision, Tri};
use crate::input::{Certificate, Fact, Input};
use crate::model::{Cond, Leaf, PolicyId, PostureFlag, Settings, Target};
use crate::set::PolicySet;

/// One node of a condition tree with its value.
#[derive(Debug, Clone)]
pub struct CondTrace {
    /// `groups: ["staff"]`, `all`, `any`, `not`, `anyone`.
    pub label: String,
    pub result: Tri,
    /// What the request had, e.g. `user groups: [auditors]`.
    pub observed: Option<String>,
    pub children: Vec<CondTrace>,
}

/// One rule with its value.
#[derive(Debug, Clone)]
pub struct RuleTrace {
    /// `lgwan-staff.allow[0]`
    pub path: String,
    pub name: Option<String>,
    pub result: Tri,
    pub cond: CondTrace,
}

/// One policy (floor or route) with its own decision.
#[derive(Debug, Clone)]
pub struct PolicyTrace {
    pub name: String,
    /// `zone floor` or `route policy`.
    pub role: &'static str,
    pub deny: Vec<RuleTrace>,
    pub allow: Vec<RuleTrace>,
    pub decision: Decision,
}

/// The full trace of one evaluation.
#[derive(Debug, Clone)]
pub struct Trace {
    pub policies: Vec<PolicyTrace>,
    pub decision: Decision,
    pub version: String,
}

impl PolicySet {
    /// Evaluate like [`PolicySet::evaluate`] and record every step.
    pub fn explain(&self, target: Target, input: &Input) -> Trace {
        let mut policies = Vec::new();
        if let Some(floor) = target.floor {
            policies.push(self.trace_policy(floor, "zone floor", input));
        }
        policies.push(self.trace_policy(target.policy, "route policy", input));
        Trace {
            policies,
            decision: self.evaluate(target, input),
            version: self.version().to_string(),
        }
    }

    fn trace_policy(&self, id: PolicyId, role: &'static str, input: &Input) -> PolicyTrace {
        let p = &self.policies[id.0 as usize];
        let s = &self.settings;
        let rule = |r: &crate::model::Rule, positive: bool| RuleTrace {
            path: r.path.to_string(),
            name: r.name.clone(),
            result: eval::eval(&r.cond, input, s, positive),
            cond: trace_cond(&r.cond, input, s, positive),
        };
        PolicyTrace {
            name: p.name.to_string(),
            role,
            deny: p.deny.iter().map(|r| rule(r, false)).collect(),
            allow: p.allow.iter().map(|r| rule(r, true)).collect(),
            decision: self.evaluate_policy(id, input),
        }
    }
}

fn trace_cond(c: &Cond, input: &Input, s: &Settings, positive: bool) -> CondTrace {
    let result = eval::eval(c, input, s, positive);
    let (label, children, observed) = match c {
        Cond::Anyone => ("anyone".to_string(), vec![], None),
        Cond::All(parts) => (
            "all of".to_string(),
            parts
                .iter()
                .map(|p| trace_cond(p, input, s, positive))
                .collect(),
            None,
        ),
        Cond::Any(parts) => (
            "any of".to_string(),
            parts
                .iter()
                .map(|p| trace_cond(p, input, s, positive))
                .collect(),
            None,
        ),
        Cond::Not(inner) => (
            "not".to_string(),
            vec![trace_cond(inner, input, s, !positive)],
            None,
        ),
        Cond::Leaf(leaf) => (leaf.describe(), vec![], Some(observed(leaf, input, s))),
    };
    CondTrace {
        label,
        result,
        observed,
        children,
    }
}

/// A time in the policy set's time zone, as IT officers read it.
fn local(s: &Settings, t: jiff::Timestamp) -> String {
    format!(
        "{} {}",
        s.timezone.to_datetime(t).strftime("%Y-%m-%d %H:%M"),
        s.timezone_name
    )
}

/// `3d 4h 5m`; negative ages (times in the future) are shown as `in the future`.
fn age(secs: i64) -> String {
    if secs < 0 {
        return "0m (in the future)".into();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

fn fact<T: fmt::Debug>(f: &Fact<T>) -> String {
    match f {
        Fact::Known { value, .. } => format!("{value:?}"),
        Fact::Unknown => "unknown".to_string(),
    }
}

/// What the request carried that this criterion looked at.
fn observed(leaf: &Leaf, input: &Input, s: &Settings) -> String {
    let id = input.identity;
    let dev = input.device();
    let no_id = || "not signed in".to_string();
    let cert = || match &dev.certificate {
        Certificate::Absent => Some("no device certificate".to_string()),
        Certificate::Invalid { reason } => Some(format!("invalid device certificate ({reason})")),
        Certificate::Present { .. } => None,
    };
    match leaf {
        Leaf::Authenticated => id.map_or_else(no_id, |i| format!("signed in as {}", i.sub)),
        Leaf::Sub(_) => id.map_or_else(no_id, |i| format!("sub {:?}", i.sub)),
        Leaf::Email(_) | Leaf::EmailDomain(_) => {
            id.map_or_else(no_id, |i| format!("email {:?}", i.email))
        }
        Leaf::Groups(_) => id.map_or_else(no_id, |i| format!("groups {:?}", i.groups)),
        Leaf::Claim { name, .. } => id.map_or_else(no_id, |i| match i.claims.get(name) {
            Some(v) => format!("claim {name} = {v}"),
            None => format!("no claim {name}"),
        }),
        Leaf::Mfa => id.map_or_else(no_id, |i| {
            format!("amr {:?} (MFA values: {})", i.amr, s.mfa_amr.0.join(", "))
        }),
        Leaf::Acr(_) => id.map_or_else(no_id, |i| format!("acr {:?}", i.acr)),
        Leaf::MaxAuthAge(_) => id.map_or_else(no_id, |i| match i.auth_time {
            Some(t) => format!(
                "signed in at {}, {} ago",
                local(s, t),
                age(input.now.duration_since(t).as_secs())
            ),
            None => "no auth_time".to_string(),
        }),
        Leaf::Certificate | Leaf::DeviceId(_) => cert().unwrap_or_else(|| {
            format!("device certificate {}", dev.certificate_id().unwrap_or(""))
        }),
        Leaf::Posture(flag, _) => cert().unwrap_or_else(|| {
            let f = match flag {
                PostureFlag::Managed => &dev.managed,
                PostureFlag::Compliant => &dev.compliant,
                PostureFlag::DiskEncryption => &dev.disk_encryption,
                PostureFlag::ScreenLock => &dev.screen_lock,
                PostureFlag::Firewall => &dev.firewall,
                PostureFlag::Antivirus => &dev.antivirus,
                PostureFlag::Edr => &dev.edr,
            };
            format!("{} {}", flag.key(), fact(f))
        }),
        Leaf::Ownership(_) => cert().unwrap_or_else(|| match &dev.ownership {
            Fact::Known { value, .. } => format!("ownership {}", value.as_str()),
            Fact::Unknown => "ownership unknown".into(),
        }),
        Leaf::Os(_) => cert().unwrap_or_else(|| format!("os {}", fact(&dev.os))),
        Leaf::MinOsVersion(_) | Leaf::MaxOsVersion(_) => {
            cert().unwrap_or_else(|| format!("os_version {}", fact(&dev.os_version)))
        }
        Leaf::LastCheckInWithin(_) => cert().unwrap_or_else(|| match &dev.last_check_in {
            Fact::Known { value, .. } => format!(
                "last check-in {}, {} ago",
                local(s, *value),
                age(input.now.duration_since(*value).as_secs())
            ),
            Fact::Unknown => "last check-in unknown".into(),
        }),
        Leaf::Tags(_) => cert().unwrap_or_else(|| format!("tags {}", fact(&dev.tags))),
        Leaf::Network(_) => format!("source {}", input.request.source_ip),
        Leaf::Time(w) => {
            let dt = w.tz.to_datetime(input.now);
            format!(
                "{} {} ({})",
                dt.strftime("%Y-%m-%d %H:%M"),
                crate::model::WEEKDAYS[dt.weekday().to_monday_zero_offset() as usize],
                w.tz_name
            )
        }
        Leaf::Method(_) => format!("method {}", input.request.method),
        Leaf::Path(_) => format!("path {}", input.request.path),
        Leaf::Zone(_) => format!("zone {:?}", input.request.zone),
        Leaf::Route(_) => format!("route {:?}", input.request.route),
    }
}

fn mark(t: Tri) -> &'static str {
    match t {
        Tri::True => "✓",
        Tri::False => "✗",
        Tri::Pending(_) => "?",
    }
}

fn write_cond(f: &mut fmt::Formatter<'_>, c: &CondTrace, depth: usize) -> fmt::Result {
    let indent = "  ".repeat(depth);
    write!(f, "{indent}{} {}", mark(c.result), c.label)?;
    if let Some(o) = &c.observed {
        write!(f, "  — {o}")?;
    }
    if let Tri::Pending(_) = c.result {
        write!(f, "  [{}]", c.result.describe())?;
    }
    writeln!(f)?;
    for child in &c.children {
        write_cond(f, child, depth + 1)?;
    }
    Ok(())
}

fn write_decision(f: &mut fmt::Formatter<'_>, d: &Decision, indent: &str) -> fmt::Result {
    write!(f, "{indent}→ {} by {}", d.outcome.code(), d.rule.path)?;
    if let crate::Outcome::StepUp(s) = &d.outcome {
        write!(f, " (mfa: {}", s.mfa)?;
        if let Some(a) = s.max_auth_age {
            write!(f, ", max_auth_age: {}", crate::model::duration_text(a))?;
        }
        if let Some(acr) = &s.acr {
            write!(f, ", acr: {}", acr.join(","))?;
        }
        write!(f, ")")?;
    }
    writeln!(f)?;
    for r in d.reasons.iter() {
        writeln!(f, "{indent}  {}: {} / {}", r.code, r.ja, r.en)?;
    }
    Ok(())
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy version {}", self.version)?;
        for p in &self.policies {
            writeln!(f, "\n{} `{}`", p.role, p.name)?;
            for (kind, rules) in [("deny", &p.deny), ("allow", &p.allow)] {
                if rules.is_empty() {
                    writeln!(f, "  ({kind}: no rules)")?;
                }
                for r in rules {
                    let verdict = match (kind, r.result) {
                        ("deny", Tri::True) => "applies",
                        ("deny", Tri::False) => "does not apply",
                        ("allow", Tri::True) => "matches",
                        ("allow", Tri::False) => "does not match",
                        _ => r.result.describe(),
                    };
                    write!(f, "  {} {}", mark(r.result), r.path)?;
                    if let Some(n) = &r.name {
                        write!(f, " ({n})")?;
                    }
                    writeln!(f, ": {verdict}")?;
                    write_cond(f, &r.cond, 2)?;
                }
            }
            write_decision(f, &p.decision, "  ")?;
        }
        writeln!(f, "\ndecision")?;
        write_decision(f, &self.decision, "")
    }
}
