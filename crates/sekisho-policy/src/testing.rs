//! Policy test cases in YAML: given identity, device, request and time → expected
//! outcome (and optionally a reason code). Used by `sekisho policy test` and, for a
//! single case, by `sekisho policy explain`.
//!
//! ```yaml
//! identities:                     # optional named fixtures
//!   tanaka: { sub: tanaka, groups: [staff], amr: [pwd, otp], auth_time: 2026-04-14T08:55:00+09:00 }
//! devices:
//!   managed-pc: { certificate: { id: pc-0001 }, managed: true, compliant: true }
//! cases:
//!   - name: staff reach the LGWAN portal in office hours
//!     floor: lgwan-floor          # optional
//!     policy: lgwan-staff         # or `route: lgwan-portal`, resolved by the caller
//!     at: 2026-04-14T10:00:00+09:00
//!     identity: tanaka            # a fixture name or an inline mapping; omit = not signed in
//!     device: managed-pc          # a fixture name or an inline mapping; omit = no certificate
//!     request: { method: GET, path: /, zone: lgwan, route: lgwan-portal }
//!     expect: allow               # allow | deny | login_required | device_certificate_required | step_up
//!     reason: device.unmanaged    # optional: a reason code the decision must carry
//! ```

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;
use sekisho_yaml::{Decoder, Diagnostic, Kind, MapView, Node, Path};
use serde_json::{Map, Value};

use crate::input::{Certificate, Device, Fact, Identity, Input, Ownership, Request};
use crate::model::Target;
use crate::reason;
use crate::set::PolicySet;

pub(crate) const TEST_TOP_KEYS: &[&str] = &["identities", "devices", "cases"];
pub(crate) const CASE_KEYS: &[&str] = &[
    "name", "policy", "floor", "route", "at", "identity", "device", "request", "expect", "reason",
];
pub(crate) const IDENTITY_KEYS: &[&str] = &[
    "sub",
    "email",
    "name",
    "groups",
    "amr",
    "acr",
    "auth_time",
    "claims",
];
pub(crate) const DEVICE_FIELDS: &[&str] = &[
    "certificate",
    "managed",
    "ownership",
    "compliant",
    "os",
    "os_version",
    "disk_encryption",
    "screen_lock",
    "firewall",
    "antivirus",
    "edr",
    "last_check_in",
    "tags",
];
pub(crate) const CERT_KEYS: &[&str] = &["id", "fingerprint", "invalid"];
pub(crate) const REQUEST_KEYS: &[&str] = &["method", "host", "path", "zone", "route", "source_ip"];
pub(crate) const OUTCOMES: &[&str] = &[
    "allow",
    "deny",
    "login_required",
    "device_certificate_required",
    "step_up",
];

/// One hypothetical request: everything [`Input`] borrows, owned.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub identity: Option<Identity>,
    pub device: Option<Device>,
    pub request: Request<'static>,
    pub now: Timestamp,
}

impl Scenario {
    pub fn input(&self) -> Input<'_> {
        Input {
            identity: self.identity.as_ref(),
            device: self.device.as_ref(),
            request: &self.request,
            now: self.now,
        }
    }
}

/// Which policies a case is decided against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseTarget {
    Policy {
        policy: String,
        floor: Option<String>,
    },
    Route(String),
}

/// One test case.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: String,
    pub line: u64,
    pub name: String,
    pub target: CaseTarget,
    pub scenario: Scenario,
    pub expect: String,
    pub reason: Option<String>,
}

impl Case {
    /// Resolve the case's target against a set (`route:` through `resolve_route`).
    pub fn resolve(
        &self,
        set: &PolicySet,
        resolve_route: &dyn Fn(&str) -> Option<Target>,
    ) -> Result<Target, String> {
        match &self.target {
            CaseTarget::Route(route) => {
                resolve_route(route).ok_or_else(|| format!("unknown route `{route}`"))
            }
            CaseTarget::Policy { policy, floor } => {
                let policy_id = set
                    .lookup(policy)
                    .ok_or_else(|| format!("unknown policy `{policy}`"))?;
                let floor = match floor {
                    Some(f) => Some(
                        set.lookup(f)
                            .ok_or_else(|| format!("unknown policy `{f}`"))?,
                    ),
                    None => None,
                };
                Ok(Target {
                    floor,
                    policy: policy_id,
                })
            }
        }
    }
}

/// Test cases from one or more files.
#[derive(Debug, Clone, Default)]
pub struct TestSuite {
    pub cases: Vec<Case>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: String,
    pub line: u64,
    pub name: String,
    /// `None` = passed; otherwise why it failed.
    pub failure: Option<String>,
}

/// The outcome of a run. `Display` prints one line per failed case, then
/// `N passed, N failed`.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub results: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_none()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    pub fn success(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            if let Some(why) = &r.failure {
                writeln!(f, "FAIL {}:{}: {}: {}", r.file, r.line, r.name, why)?;
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

impl TestSuite {
    /// Parse test files `(path, text)`; every problem is reported at once.
    pub fn load<P: AsRef<str>, T: AsRef<str>>(
        files: &[(P, T)],
    ) -> Result<TestSuite, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut cases = Vec::new();
        for (path, text) in files {
            let path = path.as_ref();
            let node = match sekisho_yaml::parse(path, text.as_ref()) {
                Ok(n) => n,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            let mut d = Decoder::new(path);
            read_file(&mut d, &node, &mut cases);
            diags.extend(d.into_diagnostics());
        }
        if diags.iter().any(Diagnostic::is_error) {
            Err(diags)
        } else {
            Ok(TestSuite { cases })
        }
    }

    /// Run every case against `set`.
    pub fn run(
        &self,
        set: &PolicySet,
        resolve_route: &dyn Fn(&str) -> Option<Target>,
    ) -> TestReport {
        let results = self
            .cases
            .iter()
            .map(|case| CaseResult {
                file: case.file.clone(),
                line: case.line,
                name: case.name.clone(),
                failure: check_case(set, case, resolve_route).err(),
            })
            .collect();
        TestReport { results }
    }
}

/// A resolver for suites that name no routes.
pub fn no_routes(_: &str) -> Option<Target> {
    None
}

fn check_case(
    set: &PolicySet,
    case: &Case,
    resolve_route: &dyn Fn(&str) -> Option<Target>,
) -> Result<(), String> {
    let target = case.resolve(set, resolve_route)?;
    let decision = set.evaluate(target, &case.scenario.input());
    let got = decision.outcome.code();
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code).collect();
    if got != case.expect {
        return Err(format!(
            "expected {}, got {} by {} ({})",
            case.expect,
            got,
            decision.rule.path,
            codes.join(", ")
        ));
    }
    if let Some(want) = &case.reason
        && !decision.reasons.contains_code(want)
    {
        return Err(format!(
            "expected reason {want}, got {} by {}",
            codes.join(", "),
            decision.rule.path
        ));
    }
    Ok(())
}

fn read_file(d: &mut Decoder, node: &Node, cases: &mut Vec<Case>) {
    let root = Path::root();
    let Some(top) = d.map(node, &root, TEST_TOP_KEYS) else {
        return;
    };
    let idp = root.key("identities");
    let mut identities: Vec<(String, Option<Identity>)> = Vec::new();
    if let Some(n) = top.get("identities")
        && let Some(entries) = d.named_entries(n, &idp)
    {
        for (name, _, v) in entries {
            let id = identity(d, v, &idp.key(name));
            identities.push((name.to_string(), id));
        }
    }
    let dvp = root.key("devices");
    let mut devices: Vec<(String, Option<(Node, Path)>)> = Vec::new();
    if let Some(n) = top.get("devices")
        && let Some(entries) = d.named_entries(n, &dvp)
    {
        for (name, _, v) in entries {
            devices.push((name.to_string(), Some((v.clone(), dvp.key(name)))));
        }
    }
    let cp = root.key("cases");
    let Some(list) = top.require(d, "cases") else {
        return;
    };
    let Some(items) = d.seq(list, &cp) else {
        return;
    };
    if items.is_empty() {
        d.warning(list, &cp, "no test cases", None);
    }
    for (i, item) in items.iter().enumerate() {
        let p = cp.index(i);
        if let Some(case) = read_case(d, item, &p, &identities, &devices) {
            cases.push(case);
        }
    }
}

fn timestamp(d: &mut Decoder, n: &Node, p: &Path) -> Option<Timestamp> {
    let s = d.string(n, p)?;
    match s.parse::<Timestamp>() {
        Ok(t) => Some(t),
        Err(_) => {
            d.error(
                n,
                p,
                format!("`{s}` is not a time"),
                Some("write RFC 3339 with an offset, e.g. `2026-04-14T10:00:00+09:00`".into()),
            );
            None
        }
    }
}

fn yaml_json(n: &Node) -> Value {
    match &n.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => Value::from(*i),
        Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Kind::Str(s) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(yaml_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), yaml_json(v))))
                .collect(),
        ),
    }
}

fn opt_string(d: &mut Decoder, m: &MapView, p: &Path, key: &str) -> Option<Option<String>> {
    match m.get(key) {
        Some(n) => d.string(n, &p.key(key)).map(Some),
        None => Some(None),
    }
}

fn identity(d: &mut Decoder, n: &Node, p: &Path) -> Option<Identity> {
    let m = d.map(n, p, IDENTITY_KEYS)?;
    let sub_node = m.require(d, "sub")?;
    let sub = d.nonempty_string(sub_node, &p.key("sub"))?;
    let list = |d: &mut Decoder, key: &str| -> Option<Vec<String>> {
        match m.get(key) {
            Some(v) => d.string_list(v, &p.key(key)),
            None => Some(Vec::new()),
        }
    };
    let groups = list(d, "groups")?;
    let amr = list(d, "amr")?;
    let email = opt_string(d, &m, p, "email")?;
    let name = opt_string(d, &m, p, "name")?;
    let acr = opt_string(d, &m, p, "acr")?;
    let auth_time = match m.get("auth_time") {
        Some(v) => Some(timestamp(d, v, &p.key("auth_time"))?),
        None => None,
    };
    let claims = match m.get("claims") {
        Some(v) => match yaml_json(v) {
            Value::Object(map) => map,
            _ => {
                d.error(v, &p.key("claims"), "`claims` must be a mapping", None);
                return None;
            }
        },
        None => Map::new(),
    };
    Some(Identity {
        sub,
        email,
        name,
        groups,
        amr,
        acr,
        auth_time,
        claims,
    })
}

/// Read a device; posture facts are observed at `at`. A fact that is left out is
/// unknown; `unknown` can also be written explicitly.
fn device(d: &mut Decoder, n: &Node, p: &Path, at: Timestamp) -> Option<Device> {
    let m = d.map(n, p, DEVICE_FIELDS)?;
    let mut dev = Device::default();
    let mut ok = true;
    if let Some(c) = m.get("certificate") {
        let cp = p.key("certificate");
        match &c.kind {
            Kind::Str(s) if s == "absent" => {}
            _ => match d.map(c, &cp, CERT_KEYS) {
                Some(cm) => {
                    if let Some(reason) = cm.get("invalid") {
                        match d.string(reason, &cp.key("invalid")) {
                            Some(r) => dev.certificate = Certificate::Invalid { reason: r },
                            None => ok = false,
                        }
                    } else {
                        let id = cm
                            .require(d, "id")
                            .and_then(|v| d.nonempty_string(v, &cp.key("id")));
                        let fp = match cm.get("fingerprint") {
                            Some(v) => d.string(v, &cp.key("fingerprint")),
                            None => Some(String::new()),
                        };
                        match (id, fp) {
                            (Some(id), Some(fingerprint)) => {
                                dev.certificate = Certificate::Present { id, fingerprint }
                            }
                            _ => ok = false,
                        }
                    }
                }
                None => ok = false,
            },
        }
    }
    let unknown = |n: &Node| n.as_str() == Some("unknown");
    let mut flag = |d: &mut Decoder, key: &str, slot: &mut Fact<bool>| {
        if let Some(v) = m.get(key)
            && !unknown(v)
        {
            match d.boolean(v, &p.key(key)) {
                Some(b) => *slot = Fact::known(b, at),
                None => ok = false,
            }
        }
    };
    flag(d, "managed", &mut dev.managed);
    flag(d, "compliant", &mut dev.compliant);
    flag(d, "disk_encryption", &mut dev.disk_encryption);
    flag(d, "screen_lock", &mut dev.screen_lock);
    flag(d, "firewall", &mut dev.firewall);
    flag(d, "antivirus", &mut dev.antivirus);
    flag(d, "edr", &mut dev.edr);
    if let Some(v) = m.get("ownership")
        && !unknown(v)
    {
        match d.one_of(v, &p.key("ownership"), &["corporate", "byod"]) {
            Some(o) => {
                let o = if o == "byod" {
                    Ownership::Byod
                } else {
                    Ownership::Corporate
                };
                dev.ownership = Fact::known(o, at);
            }
            None => ok = false,
        }
    }
    for (key, slot) in [("os", &mut dev.os), ("os_version", &mut dev.os_version)] {
        if let Some(v) = m.get(key)
            && !unknown(v)
        {
            match d.string(v, &p.key(key)) {
                Some(s) => *slot = Fact::known(s, at),
                None => ok = false,
            }
        }
    }
    if let Some(v) = m.get("last_check_in")
        && !unknown(v)
    {
        // An absolute time, or a duration meaning "that long before `at`".
        let kp = p.key("last_check_in");
        let t = match v.as_str() {
            Some(s) if !s.contains('T') => d
                .duration(v, &kp)
                .and_then(|dur| jiff::SignedDuration::try_from(dur).ok())
                .and_then(|dur| at.checked_sub(dur).ok()),
            _ => timestamp(d, v, &kp),
        };
        match t {
            Some(t) => dev.last_check_in = Fact::known(t, at),
            None => ok = false,
        }
    }
    if let Some(v) = m.get("tags")
        && !unknown(v)
    {
        match d.string_list(v, &p.key("tags")) {
            Some(t) => dev.tags = Fact::known(t, at),
            None => ok = false,
        }
    }
    ok.then_some(dev)
}

fn request(d: &mut Decoder, n: Option<&Node>, p: &Path) -> Option<Request<'static>> {
    let mut req = Request {
        method: "GET".into(),
        host: "sekisho.example".into(),
        path: "/".into(),
        zone: "".into(),
        route: "".into(),
        source_ip: IpAddr::from([127, 0, 0, 1]),
    };
    let Some(n) = n else {
        return Some(req);
    };
    let m = d.map(n, p, REQUEST_KEYS)?;
    let mut ok = true;
    for (key, _, v) in m.entries() {
        let kp = p.key(key);
        let Some(s) = d.string(v, &kp) else {
            ok = false;
            continue;
        };
        match key {
            "method" => req.method = s.to_ascii_uppercase().into(),
            "host" => req.host = s.into(),
            "path" => req.path = s.into(),
            "zone" => req.zone = s.into(),
            "route" => req.route = s.into(),
            "source_ip" => match s.parse() {
                Ok(ip) => req.source_ip = ip,
                Err(_) => {
                    d.error(v, &kp, format!("`{s}` is not an IP address"), None);
                    ok = false;
                }
            },
            _ => {}
        }
    }
    ok.then_some(req)
}

fn read_case(
    d: &mut Decoder,
    n: &Node,
    p: &Path,
    identities: &[(String, Option<Identity>)],
    devices: &[(String, Option<(Node, Path)>)],
) -> Option<Case> {
    let m = d.map(n, p, CASE_KEYS)?;
    let name = m
        .require(d, "name")
        .and_then(|v| d.nonempty_string(v, &p.key("name")));
    let at = m
        .require(d, "at")
        .and_then(|v| timestamp(d, v, &p.key("at")));
    let expect = m
        .require(d, "expect")
        .and_then(|v| d.one_of(v, &p.key("expect"), OUTCOMES));
    let reason = match m.get("reason") {
        Some(v) => match d.string(v, &p.key("reason")) {
            Some(code) => {
                if reason::by_code(&code).is_none() {
                    let codes: Vec<&str> = reason::ALL.iter().map(|r| r.code).collect();
                    let hint = sekisho_yaml::did_you_mean(&code, &codes)
                        .map(|s| format!("did you mean `{s}`?"));
                    d.error(
                        v,
                        &p.key("reason"),
                        format!("unknown reason code `{code}`"),
                        hint,
                    );
                    None
                } else {
                    Some(Some(code))
                }
            }
            None => None,
        },
        None => Some(None),
    };
    let target = match (m.get("policy"), m.get("route")) {
        (Some(_), Some(r)) => {
            d.error(
                r,
                &p.key("route"),
                "give either `policy` (with optional `floor`) or `route`, not both",
                None,
            );
            None
        }
        (None, Some(r)) => d.string(r, &p.key("route")).map(CaseTarget::Route),
        (Some(pol), None) => {
            let policy = d.string(pol, &p.key("policy"));
            let floor = match m.get("floor") {
                Some(f) => d.string(f, &p.key("floor")).map(Some),
                None => Some(None),
            };
            match (policy, floor) {
                (Some(policy), Some(floor)) => Some(CaseTarget::Policy { policy, floor }),
                _ => None,
            }
        }
        (None, None) => {
            d.error(
                n,
                p,
                "a case needs `policy` (with optional `floor`) or `route`",
                None,
            );
            None
        }
    };
    if m.get("route").is_some()
        && let Some(f) = m.get("floor")
    {
        d.error(
            f,
            &p.key("floor"),
            "`floor` comes from the route's zone; remove it or use `policy`",
            None,
        );
    }
    let identity = match m.get("identity") {
        None => Some(None),
        Some(v) => match v.as_str() {
            Some(fixture) => match identities.iter().find(|(n, _)| n == fixture) {
                Some((_, Some(id))) => Some(Some(id.clone())),
                Some((_, None)) => None,
                None => {
                    let names: Vec<&str> = identities.iter().map(|(n, _)| n.as_str()).collect();
                    let hint = sekisho_yaml::did_you_mean(fixture, &names)
                        .map(|s| format!("did you mean `{s}`?"));
                    d.error(
                        v,
                        &p.key("identity"),
                        format!("unknown identity `{fixture}`"),
                        hint,
                    );
                    None
                }
            },
            None => identity(d, v, &p.key("identity")).map(Some),
        },
    };
    let at_or_epoch = at.unwrap_or(Timestamp::UNIX_EPOCH);
    let device = match m.get("device") {
        None => Some(None),
        Some(v) => match v.as_str() {
            Some(fixture) => match devices.iter().find(|(n, _)| n == fixture) {
                Some((_, Some((node, path)))) => device(d, node, path, at_or_epoch).map(Some),
                Some((_, None)) => None,
                None => {
                    let names: Vec<&str> = devices.iter().map(|(n, _)| n.as_str()).collect();
                    let hint = sekisho_yaml::did_you_mean(fixture, &names)
                        .map(|s| format!("did you mean `{s}`?"));
                    d.error(
                        v,
                        &p.key("device"),
                        format!("unknown device `{fixture}`"),
                        hint,
                    );
                    None
                }
            },
            None => device(d, v, &p.key("device"), at_or_epoch).map(Some),
        },
    };
    let request = request(d, m.get("request"), &p.key("request"));
    Some(Case {
        file: d.file().to_string(),
        line: n.line,
        name: name?,
        target: target?,
        scenario: Scenario {
            identity: identity?,
            device: device?,
            request: request?,
            now: at?,
        },
        expect: expect?,
        reason: reason?,
    })
}

/// Parse one scenario (the case format without `name`/`expect`) from YAML or JSON
/// text, for `sekisho policy explain --input FILE`.
pub fn load_scenario(file: &str, text: &str) -> Result<(CaseTarget, Scenario), Vec<Diagnostic>> {
    let node = sekisho_yaml::parse(file, text).map_err(|d| vec![d])?;
    let mut d = Decoder::new(file);
    // Reuse the case reader with placeholders for the test-only keys.
    let mut with_defaults = node.clone();
    if let Kind::Map(entries) = &mut with_defaults.kind {
        let placeholder = |k: &str, v: &str| {
            (
                Node {
                    kind: Kind::Str(k.into()),
                    line: node.line,
                    column: node.column,
                },
                Node {
                    kind: Kind::Str(v.into()),
                    line: node.line,
                    column: node.column,
                },
            )
        };
        if !entries.iter().any(|(k, _)| k.as_str() == Some("name")) {
            entries.push(placeholder("name", "explain"));
        }
        if !entries.iter().any(|(k, _)| k.as_str() == Some("expect")) {
            entries.push(placeholder("expect", "allow"));
        }
    }
    let case = read_case(&mut d, &with_defaults, &Path::root(), &[], &[]);
    let diags = d.into_diagnostics();
    match case {
        Some(c) if !diags.iter().any(Diagnostic::is_error) => Ok((c.target, c.scenario)),
        _ => Err(diags),
    }
}
