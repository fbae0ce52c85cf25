//! Evaluation: three-valued logic over the compiled conditions, then the decision.
//!
//! A criterion evaluates to `True`, `False` or `Pending(needs)`. Pending means the
//! answer depends on something the request does not (yet) carry:
//!
//! * `LOGIN`   — no identity: the user can sign in;
//! * `CERT`    — no valid device certificate: the user can connect from a municipal device;
//! * `MFA`, `FRESH`, `ACR` — the identity lacks MFA / a recent enough sign-in / a strong
//!   enough `acr`: the user can step up;
//! * `UNKNOWN` — a posture fact is unknown: nobody can fix that from the browser.
//!
//! `all` is false if any part is false, else pending if any part is pending; `any` is true if
//! any part is true, else pending if any part is pending; `not` swaps true and false and keeps
//! pending. An allow rule admits only when it is `True`; a deny rule refuses when it is `True`
//! and, failing closed, when it is pending on unknown posture.
//!
//! Step-up criteria (`mfa`, `max_auth_age`, `acr`) and `authenticated` / `device.certificate`
//! only produce pending in *positive polarity* (where satisfying them moves towards access);
//! under an odd number of negations — deny rules count as one — they are plain booleans. So
//! `deny: [not: {mfa: true}]` asks for step-up, while `deny: [mfa: true]` is simply a deny
//! for MFA users.

use std::sync::Arc;
use std::time::Duration;

use crate::input::{Certificate, Fact, Input, Ownership};
use crate::model::{
    ClaimTest, Cond, Leaf, Policy, PostureFlag, Rule, RuleKind, Settings, TimeWindow,
    compare_version, signed,
};
use crate::reason::{self, Reason};

pub(crate) const LOGIN: u8 = 1;
pub(crate) const CERT: u8 = 2;
pub(crate) const MFA: u8 = 4;
pub(crate) const FRESH: u8 = 8;
pub(crate) const ACR: u8 = 16;
pub(crate) const UNKNOWN: u8 = 32;
pub(crate) const STEP_UP: u8 = MFA | FRESH | ACR;

/// The value of a criterion or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    True,
    False,
    /// Undecided until the user signs in / presents a certificate / steps up, or
    /// because a posture fact is unknown. The bits are crate-internal.
    Pending(u8),
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b { Tri::True } else { Tri::False }
    }

    /// What a pending value waits for, in words (for traces).
    pub fn describe(self) -> &'static str {
        match self {
            Tri::True => "true",
            Tri::False => "false",
            Tri::Pending(n) if n & UNKNOWN != 0 => "unknown (posture fact unknown)",
            Tri::Pending(n) if n & LOGIN != 0 => "pending (needs sign-in)",
            Tri::Pending(n) if n & CERT != 0 => "pending (needs a valid device certificate)",
            Tri::Pending(_) => "pending (needs step-up authentication)",
        }
    }
}

/// What the decision asks of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    /// No identity, and signing in could lead to access.
    LoginRequired,
    /// No (valid) device certificate, and presenting one could lead to access.
    DeviceCertificateRequired,
    /// Identity present, but MFA / a fresher sign-in / a stronger `acr` is needed.
    StepUp(StepUp),
}

impl Outcome {
    /// Stable name for metrics and audit: `allow`, `deny`, `login_required`,
    /// `device_certificate_required`, `step_up`.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::LoginRequired => "login_required",
            Outcome::DeviceCertificateRequired => "device_certificate_required",
            Outcome::StepUp(_) => "step_up",
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Outcome::Allow => 0,
            Outcome::StepUp(_) => 1,
            Outcome::DeviceCertificateRequired => 2,
            Outcome::LoginRequired => 3,
            Outcome::Deny => 4,
        }
    }
}

/// What a step-up must achieve.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepUp {
    /// Sign in again with a second factor.
    pub mfa: bool,
    /// The new sign-in must be at most this old (OIDC `max_age`).
    pub max_auth_age: Option<Duration>,
    /// One of these `acr` values is needed (OIDC `acr_values`).
    pub acr: Option<Arc<[String]>>,
}

impl StepUp {
    fn merge(&mut self, other: &StepUp) {
        self.mfa |= other.mfa;
        self.max_auth_age = match (self.max_auth_age, other.max_auth_age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.acr.is_none() {
            self.acr.clone_from(&other.acr);
        }
    }
}

/// The rule that decided: policy name and rule path (`lgwan-staff.allow[0]`, or
/// `lgwan-staff.default` when no rule matched and the default deny applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub policy: Arc<str>,
    pub path: Arc<str>,
    /// `None` for the default deny.
    pub kind: Option<RuleKind>,
}

const MAX_REASONS: usize = 4;

/// Up to four reasons, most important first. Stored inline: no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons {
    items: [Option<&'static Reason>; MAX_REASONS],
}

impl Reasons {
    pub(crate) fn one(r: &'static Reason) -> Reasons {
        let mut rs = Reasons::default();
        rs.push(r);
        rs
    }

    pub(crate) fn push(&mut self, r: &'static Reason) {
        for slot in &mut self.items {
            match slot {
                Some(existing) if std::ptr::eq(*existing, r) => return,
                Some(_) => {}
                None => {
                    *slot = Some(r);
                    return;
                }
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'static Reason> + '_ {
        self.items.iter().map_while(|r| *r)
    }

    pub fn first(&self) -> Option<&'static Reason> {
        self.items[0]
    }

    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }

    pub fn contains_code(&self, code: &str) -> bool {
        self.iter().any(|r| r.code == code)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The rule that decided (for a combined floor + route decision: the rule of
    /// the policy that decided; for an allow: the route policy's allow rule).
    pub rule: RuleRef,
    /// For an allow under a zone floor: the floor's allow rule.
    pub floor_rule: Option<RuleRef>,
    pub reasons: Reasons,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// The first reason's code, e.g. `device.unmanaged`.
    pub fn reason_code(&self) -> &'static str {
        self.reasons
            .first()
            .map_or("policy.no_rule_matched", |r| r.code)
    }
}

pub(crate) fn rule_ref(policy: &Policy, rule: &Rule) -> RuleRef {
    RuleRef {
        policy: policy.name.clone(),
        path: rule.path.clone(),
        kind: Some(rule.kind),
    }
}

// ---------------------------------------------------------------------------
// Criteria

fn identity_leaf(input: &Input, f: impl FnOnce(&crate::input::Identity) -> bool) -> Tri {
    match input.identity {
        None => Tri::Pending(LOGIN),
        Some(id) => Tri::from_bool(f(id)),
    }
}

fn step_up_leaf(
    input: &Input,
    positive: bool,
    need: u8,
    f: impl FnOnce(&crate::input::Identity) -> bool,
) -> Tri {
    match input.identity {
        None => Tri::Pending(LOGIN),
        Some(id) if f(id) => Tri::True,
        Some(_) if positive => Tri::Pending(need),
        Some(_) => Tri::False,
    }
}

/// Posture facts need a verified device certificate; an unknown fact is pending.
fn posture_leaf<T>(
    input: &Input,
    fact: impl FnOnce(&crate::input::Device) -> &Fact<T>,
    f: impl FnOnce(&T) -> Option<bool>,
) -> Tri {
    let device = input.device();
    if !matches!(device.certificate, Certificate::Present { .. }) {
        return Tri::Pending(CERT);
    }
    match fact(device) {
        Fact::Known { value, .. } => match f(value) {
            Some(b) => Tri::from_bool(b),
            None => Tri::Pending(UNKNOWN),
        },
        Fact::Unknown => Tri::Pending(UNKNOWN),
    }
}

fn claim_matches(value: &serde_json::Value, test: &ClaimTest) -> bool {
    use serde_json::Value;
    match test {
        ClaimTest::Equals(v) => value == v,
        ClaimTest::OneOf(vs) => vs.iter().any(|v| v == value),
        ClaimTest::Contains(v) => match value {
            Value::Array(items) => items.iter().any(|i| i == v),
            Value::String(s) => match v {
                Value::String(needle) => s.contains(needle.as_str()),
                _ => false,
            },
            _ => false,
        },
    }
}

fn email_domain(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, d)| d)
}

pub(crate) fn has_mfa(id: &crate::input::Identity, settings: &Settings) -> bool {
    id.amr.iter().any(|a| settings.mfa_amr.contains(a))
}

pub(crate) fn eval_leaf(leaf: &Leaf, input: &Input, settings: &Settings, positive: bool) -> Tri {
    match leaf {
        Leaf::Authenticated => match input.identity {
            Some(_) => Tri::True,
            None if positive => Tri::Pending(LOGIN),
            None => Tri::False,
        },
        Leaf::Sub(set) => identity_leaf(input, |id| set.contains(&id.sub)),
        Leaf::Email(set) => identity_leaf(input, |id| {
            id.email
                .as_deref()
                .is_some_and(|e| set.contains_ignore_case(e))
        }),
        Leaf::EmailDomain(set) => identity_leaf(input, |id| {
            id.email
                .as_deref()
                .and_then(email_domain)
                .is_some_and(|d| set.contains_ignore_case(d))
        }),
        Leaf::Groups(set) => identity_leaf(input, |id| id.groups.iter().any(|g| set.contains(g))),
        Leaf::Claim { name, test } => identity_leaf(input, |id| {
            id.claims.get(name).is_some_and(|v| claim_matches(v, test))
        }),
        Leaf::Mfa => step_up_leaf(input, positive, MFA, |id| has_mfa(id, settings)),
        Leaf::Acr(values) => step_up_leaf(input, positive, ACR, |id| {
            id.acr
                .as_deref()
                .is_some_and(|a| values.iter().any(|v| v == a))
        }),
        Leaf::MaxAuthAge(max) => step_up_leaf(input, positive, FRESH, |id| {
            id.auth_time
                .is_some_and(|t| input.now.duration_since(t) <= signed(*max))
        }),
        Leaf::Certificate => match input.device().certificate {
            Certificate::Present { .. } => Tri::True,
            _ if positive => Tri::Pending(CERT),
            _ => Tri::False,
        },
        Leaf::DeviceId(set) => match &input.device().certificate {
            Certificate::Present { id, .. } => Tri::from_bool(set.contains(id)),
            _ => Tri::Pending(CERT),
        },
        Leaf::Posture(flag, want) => {
            let want = *want;
            posture_leaf(
                input,
                |d| match flag {
                    PostureFlag::Managed => &d.managed,
                    PostureFlag::Compliant => &d.compliant,
                    PostureFlag::DiskEncryption => &d.disk_encryption,
                    PostureFlag::ScreenLock => &d.screen_lock,
                    PostureFlag::Firewall => &d.firewall,
                    PostureFlag::Antivirus => &d.antivirus,
                    PostureFlag::Edr => &d.edr,
                },
                |v| Some(*v == want),
            )
        }
        Leaf::Ownership(o) => posture_leaf(input, |d| &d.ownership, |v| Some(v == o)),
        Leaf::Os(set) => posture_leaf(input, |d| &d.os, |v| Some(set.contains_ignore_case(v))),
        Leaf::MinOsVersion(min) => posture_leaf(
            input,
            |d| &d.os_version,
            |v| compare_version(v, &min.parts).map(|o| o.is_ge()),
        ),
        Leaf::MaxOsVersion(max) => posture_leaf(
            input,
            |d| &d.os_version,
            |v| compare_version(v, &max.parts).map(|o| o.is_le()),
        ),
        Leaf::LastCheckInWithin(max) => posture_leaf(
            input,
            |d| &d.last_check_in,
            |t| Some(input.now.duration_since(*t) <= signed(*max)),
        ),
        Leaf::Tags(set) => posture_leaf(
            input,
            |d| &d.tags,
            |tags| Some(tags.iter().any(|t| set.contains(t))),
        ),
        Leaf::Network(nets) => {
            let ip = input.request.source_ip;
            Tri::from_bool(nets.iter().any(|n| n.contains(&ip)))
        }
        Leaf::Time(w) => Tri::from_bool(w.matches(input.now)),
        Leaf::Method(set) => Tri::from_bool(set.contains(&input.request.method)),
        Leaf::Path(p) => Tri::from_bool(p.matches(&input.request.path)),
        Leaf::Zone(set) => Tri::from_bool(set.contains(&input.request.zone)),
        Leaf::Route(set) => Tri::from_bool(set.contains(&input.request.route)),
    }
}

pub(crate) fn eval(cond: &Cond, input: &Input, settings: &Settings, positive: bool) -> Tri {
    match cond {
        Cond::Anyone => Tri::True,
        Cond::Leaf(leaf) => eval_leaf(leaf, input, settings, positive),
        Cond::Not(inner) => match eval(inner, input, settings, !positive) {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            p => p,
        },
        Cond::All(parts) => {
            let mut need = 0;
            for part in parts {
                match eval(part, input, settings, positive) {
                    Tri::False => return Tri::False,
                    Tri::Pending(n) => need |= n,
                    Tri::True => {}
                }
            }
            if need == 0 {
                Tri::True
            } else {
                Tri::Pending(need)
            }
        }
        Cond::Any(parts) => {
            let mut need = 0;
            for part in parts {
                match eval(part, input, settings, positive) {
                    Tri::True => return Tri::True,
                    Tri::Pending(n) => need |= n,
                    Tri::False => {}
                }
            }
            if need == 0 {
                Tri::False
            } else {
                Tri::Pending(need)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reasons

fn time_failure(w: &TimeWindow, now: jiff::Timestamp) -> &'static Reason {
    let dt = w.tz.to_datetime(now);
    let date = dt.date();
    if w.except.binary_search(&date).is_ok() {
        return reason::TIME_HOLIDAY;
    }
    if let Some(dates) = &w.dates
        && dates.binary_search(&date).is_err()
    {
        return reason::TIME_NOT_LISTED_DATE;
    }
    if w.weekdays & (1u8 << dt.weekday().to_monday_zero_offset()) == 0 {
        return reason::TIME_WEEKDAY;
    }
    reason::TIME_OUTSIDE_HOURS
}

/// The reason that describes a leaf's value `r` (its value in positive polarity terms).
pub(crate) fn leaf_reason(leaf: &Leaf, input: &Input, r: Tri) -> &'static Reason {
    use crate::reason as R;
    if let Tri::Pending(n) = r {
        return if n & LOGIN != 0 {
            R::LOGIN_REQUIRED
        } else if n & CERT != 0 {
            match input.device().certificate {
                Certificate::Invalid { .. } => R::CERT_INVALID,
                _ => R::CERT_REQUIRED,
            }
        } else if n & UNKNOWN != 0 {
            R::POSTURE_UNKNOWN
        } else if n & MFA != 0 {
            R::MFA_REQUIRED
        } else if n & FRESH != 0 {
            R::AUTH_TOO_OLD
        } else {
            R::ACR_INSUFFICIENT
        };
    }
    let sat = r == Tri::True;
    let pick = |yes: &'static Reason, no: &'static Reason| if sat { yes } else { no };
    match leaf {
        Leaf::Authenticated => pick(R::AUTHENTICATED, R::LOGIN_REQUIRED),
        Leaf::Sub(_) | Leaf::Email(_) => pick(R::USER_LISTED, R::USER_NOT_LISTED),
        Leaf::EmailDomain(_) => pick(R::EMAIL_DOMAIN_LISTED, R::EMAIL_DOMAIN_NOT_LISTED),
        Leaf::Groups(_) => pick(R::GROUP_MEMBER, R::GROUP_NOT_MEMBER),
        Leaf::Claim { .. } => pick(R::CLAIM_MATCH, R::CLAIM_MISMATCH),
        Leaf::Mfa => pick(R::MFA_PRESENT, R::MFA_REQUIRED),
        Leaf::Acr(_) => pick(R::ACR_MATCH, R::ACR_INSUFFICIENT),
        Leaf::MaxAuthAge(_) => pick(R::AUTH_FRESH, R::AUTH_TOO_OLD),
        Leaf::Certificate => match input.device().certificate {
            Certificate::Present { .. } => R::CERT_PRESENT,
            Certificate::Invalid { .. } => R::CERT_INVALID,
            Certificate::Absent => R::CERT_REQUIRED,
        },
        Leaf::DeviceId(_) => pick(R::DEVICE_LISTED, R::DEVICE_NOT_LISTED),
        Leaf::Posture(flag, want) => {
            // The observed value, not the expected one, names the reason.
            let observed = sat == *want;
            let (on, off) = match flag {
                PostureFlag::Managed => (R::MANAGED, R::UNMANAGED),
                PostureFlag::Compliant => (R::COMPLIANT, R::NONCOMPLIANT),
                PostureFlag::DiskEncryption => (R::DISK_ENCRYPTED, R::DISK_NOT_ENCRYPTED),
                PostureFlag::ScreenLock => (R::SCREEN_LOCK_ON, R::SCREEN_LOCK_OFF),
                PostureFlag::Firewall => (R::FIREWALL_ON, R::FIREWALL_OFF),
                PostureFlag::Antivirus => (R::ANTIVIRUS_ON, R::ANTIVIRUS_OFF),
                PostureFlag::Edr => (R::EDR_ON, R::EDR_OFF),
            };
            if observed { on } else { off }
        }
        Leaf::Ownership(o) => {
            let observed_corporate = sat == (*o == Ownership::Corporate);
            if observed_corporate {
                R::CORPORATE
            } else {
                R::BYOD
            }
        }
        Leaf::Os(_) => pick(R::OS_LISTED, R::OS_NOT_ALLOWED),
        Leaf::MinOsVersion(_) => pick(R::OS_VERSION_OK, R::OS_OUTDATED),
        Leaf::MaxOsVersion(_) => pick(R::OS_VERSION_OK, R::OS_TOO_NEW),
        Leaf::LastCheckInWithin(_) => pick(R::CHECK_IN_RECENT, R::CHECK_IN_STALE),
        Leaf::Tags(_) => pick(R::TAG_LISTED, R::TAG_MISSING),
        Leaf::Network(_) => pick(R::NETWORK_LISTED, R::NETWORK_OUTSIDE),
        Leaf::Time(w) => {
            if sat {
                R::TIME_IN_WINDOW
            } else {
                time_failure(w, input.now)
            }
        }
        Leaf::Method(_) => pick(R::METHOD_LISTED, R::METHOD_NOT_ALLOWED),
        Leaf::Path(_) => pick(R::PATH_LISTED, R::PATH_NOT_ALLOWED),
        Leaf::Zone(_) => pick(R::ZONE_LISTED, R::ZONE_NOT_ALLOWED),
        Leaf::Route(_) => pick(R::ROUTE_LISTED, R::ROUTE_NOT_ALLOWED),
    }
}

/// Collect the reasons that made `cond` evaluate as it did under `positive`.
fn why(cond: &Cond, input: &Input, settings: &Settings, positive: bool, out: &mut Reasons) {
    let result = eval(cond, input, settings, positive);
    match cond {
        Cond::Anyone => out.push(reason::ANYONE),
        Cond::Leaf(leaf) => {
            // Express the leaf's value in positive terms for the reason table.
            let r = eval_leaf(leaf, input, settings, positive);
            out.push(leaf_reason(leaf, input, r));
        }
        Cond::Not(inner) => why(inner, input, settings, !positive, out),
        Cond::All(parts) | Cond::Any(parts) => {
            let is_all = matches!(cond, Cond::All(_));
            // In a rule that holds, negated parts (`not: …`) usually carry the cause
            // (`path /admin` AND NOT `groups it-admin`): name them first.
            let negated_first = parts
                .iter()
                .filter(|p| matches!(p, Cond::Not(_)))
                .chain(parts.iter().filter(|p| !matches!(p, Cond::Not(_))));
            for part in negated_first {
                let r = eval(part, input, settings, positive);
                let relevant = match result {
                    Tri::True => r == Tri::True,
                    Tri::False => r == Tri::False,
                    Tri::Pending(_) => matches!(r, Tri::Pending(_)),
                };
                if relevant {
                    why(part, input, settings, positive, out);
                    // One witness is enough for a false `all` or a true `any`.
                    if (is_all && result == Tri::False) || (!is_all && result == Tri::True) {
                        return;
                    }
                }
            }
        }
    }
}

/// How close `cond` came: (leaves not satisfied, leaves satisfied). The allow rule
/// with the fewest misses — and among those the most hits, i.e. the most specific
/// near-match — explains a default deny.
fn closeness(cond: &Cond, input: &Input, settings: &Settings, positive: bool) -> (u32, u32) {
    match cond {
        Cond::Anyone => (0, 0),
        Cond::Leaf(leaf) => {
            let hit = eval_leaf(leaf, input, settings, positive) == Tri::True;
            (u32::from(!hit), u32::from(hit))
        }
        Cond::Not(inner) => {
            let hit = eval(inner, input, settings, !positive) == Tri::False;
            (u32::from(!hit), u32::from(hit))
        }
        Cond::All(parts) => parts.iter().fold((0, 0), |(m, h), p| {
            let (pm, ph) = closeness(p, input, settings, positive);
            (m + pm, h + ph)
        }),
        Cond::Any(parts) => parts
            .iter()
            .map(|p| closeness(p, input, settings, positive))
            .min_by_key(|&(m, h)| (m, std::cmp::Reverse(h)))
            .unwrap_or((0, 0)),
    }
}

/// Gather what a step-up must achieve for `cond` (evaluated under `positive`).
fn collect_step_up(
    cond: &Cond,
    input: &Input,
    settings: &Settings,
    positive: bool,
    out: &mut StepUp,
) {
    match cond {
        Cond::Anyone => {}
        Cond::Not(inner) => collect_step_up(inner, input, settings, !positive, out),
        Cond::All(parts) | Cond::Any(parts) => {
            for p in parts {
                collect_step_up(p, input, settings, positive, out);
            }
        }
        Cond::Leaf(leaf) => {
            if let Tri::Pending(n) = eval_leaf(leaf, input, settings, positive)
                && n & STEP_UP != 0
            {
                match leaf {
                    Leaf::Mfa => out.mfa = true,
                    Leaf::MaxAuthAge(d) => {
                        out.max_auth_age = Some(out.max_auth_age.map_or(*d, |x| x.min(*d)));
                    }
                    Leaf::Acr(values) if out.acr.is_none() => out.acr = Some(values.clone()),
                    _ => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Decisions

/// Which pending need the user should resolve first, if it can be resolved at all.
fn resolvable(need: u8, input: &Input) -> Option<u8> {
    if need & LOGIN != 0 && input.identity.is_none() {
        Some(LOGIN)
    } else if need & UNKNOWN != 0 {
        None
    } else if need & CERT != 0 {
        Some(CERT)
    } else if need & STEP_UP != 0 && input.identity.is_some() {
        Some(STEP_UP)
    } else {
        None
    }
}

fn priority(resolution: u8) -> u8 {
    match resolution {
        LOGIN => 3,
        CERT => 2,
        _ => 1,
    }
}

fn pending_decision(
    policy: &Policy,
    rule: &Rule,
    resolution: u8,
    input: &Input,
    settings: &Settings,
) -> Decision {
    let positive = rule.kind == RuleKind::Allow;
    let mut reasons = Reasons::default();
    why(&rule.cond, input, settings, positive, &mut reasons);
    let outcome = match resolution {
        LOGIN => {
            reasons = Reasons::one(reason::LOGIN_REQUIRED);
            Outcome::LoginRequired
        }
        CERT => {
            // The certificate comes first: it is what the user must fix now.
            let cert = match input.device().certificate {
                Certificate::Invalid { .. } => reason::CERT_INVALID,
                _ => reason::CERT_REQUIRED,
            };
            let mut first = Reasons::one(cert);
            for r in reasons.iter() {
                first.push(r);
            }
            reasons = first;
            Outcome::DeviceCertificateRequired
        }
        _ => {
            let mut step = StepUp::default();
            collect_step_up(&rule.cond, input, settings, positive, &mut step);
            Outcome::StepUp(step)
        }
    };
    Decision {
        outcome,
        rule: rule_ref(policy, rule),
        floor_rule: None,
        reasons,
    }
}

pub(crate) fn decide_policy(
    policy: &Policy,
    default_path: &Arc<str>,
    input: &Input,
    settings: &Settings,
) -> Decision {
    // Deny rules first: a matching deny ends it.
    let mut deny_pending: Option<(&Rule, u8)> = None;
    for rule in &policy.deny {
        match eval(&rule.cond, input, settings, false) {
            Tri::True => {
                let mut reasons = Reasons::default();
                why(&rule.cond, input, settings, false, &mut reasons);
                if reasons.is_empty() {
                    reasons.push(reason::DENY_RULE);
                }
                return Decision {
                    outcome: Outcome::Deny,
                    rule: rule_ref(policy, rule),
                    floor_rule: None,
                    reasons,
                };
            }
            Tri::Pending(n) => match resolvable(n, input) {
                // Fail closed: a deny that may apply on unknown posture applies.
                None => {
                    return Decision {
                        outcome: Outcome::Deny,
                        rule: rule_ref(policy, rule),
                        floor_rule: None,
                        reasons: Reasons::one(reason::POSTURE_UNKNOWN),
                    };
                }
                Some(res) => {
                    if deny_pending.is_none_or(|(_, r)| priority(res) > priority(r)) {
                        deny_pending = Some((rule, res));
                    }
                }
            },
            Tri::False => {}
        }
    }

    let mut allow_pending: Option<(&Rule, u8)> = None;
    for rule in &policy.allow {
        match eval(&rule.cond, input, settings, true) {
            Tri::True => {
                return match deny_pending {
                    None => Decision {
                        outcome: Outcome::Allow,
                        rule: rule_ref(policy, rule),
                        floor_rule: None,
                        reasons: Reasons::one(reason::ALLOWED),
                    },
                    Some((deny, res)) => pending_decision(policy, deny, res, input, settings),
                };
            }
            Tri::Pending(n) => {
                if let Some(res) = resolvable(n, input)
                    && allow_pending.is_none_or(|(_, r)| priority(res) > priority(r))
                {
                    allow_pending = Some((rule, res));
                }
            }
            Tri::False => {}
        }
    }

    if let Some((rule, res)) = allow_pending {
        // Resolve the most basic need first: sign-in, then certificate, then step-up.
        let res = match deny_pending {
            Some((_, d)) if priority(d) > priority(res) => d,
            _ => res,
        };
        return pending_decision(policy, rule, res, input, settings);
    }

    // Default deny: explain with the allow rule that came closest.
    let mut reasons = Reasons::default();
    match policy.allow.iter().min_by_key(|r| {
        let (m, h) = closeness(&r.cond, input, settings, true);
        (m, std::cmp::Reverse(h))
    }) {
        None => reasons.push(reason::NO_ALLOW_RULE),
        Some(rule) => why(&rule.cond, input, settings, true, &mut reasons),
    }
    if reasons.is_empty() {
        reasons.push(reason::NO_RULE_MATCHED);
    }
    Decision {
        outcome: Outcome::Deny,
        rule: RuleRef {
            policy: policy.name.clone(),
            path: default_path.clone(),
            kind: None,
        },
        floor_rule: None,
        reasons,
    }
}

/// AND a zone floor's decision with a route policy's decision: the floor can only
/// make things stricter.
pub(crate) fn combine(floor: Decision, route: Decision) -> Decision {
    if floor.outcome == Outcome::Deny {
        return floor;
    }
    if route.outcome == Outcome::Deny {
        return route;
    }
    match (&floor.outcome, &route.outcome) {
        (Outcome::Allow, Outcome::Allow) => Decision {
            floor_rule: Some(floor.rule),
            ..route
        },
        (Outcome::StepUp(a), Outcome::StepUp(b)) => {
            let mut merged = a.clone();
            merged.merge(b);
            let mut reasons = floor.reasons;
            for r in route.reasons.iter() {
                reasons.push(r);
            }
            Decision {
                outcome: Outcome::StepUp(merged),
                rule: floor.rule,
                floor_rule: None,
                reasons,
            }
        }
        _ => {
            if floor.outcome.rank() >= route.outcome.rank() {
                floor
            } else {
                route
            }
        }
    }
}
