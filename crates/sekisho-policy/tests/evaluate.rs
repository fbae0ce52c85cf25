//! Decision semantics, one behaviour per test.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use sekisho_policy::{
    Certificate, Device, Fact, Identity, Input, Outcome, Ownership, PolicySet, Request, Target,
};

fn set(text: &str) -> PolicySet {
    match PolicySet::compile(&[("p.yaml", text)]) {
        Ok((s, _)) => s,
        Err(d) => panic!("{}", sekisho_yaml::render_all(&d)),
    }
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-04-14T10:00:00+09:00";

fn staff() -> Identity {
    Identity {
        sub: "tanaka".into(),
        email: Some("Tanaka@City.Example.LG.JP".into()),
        groups: vec!["staff".into()],
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: Some(t("2026-04-14T09:50:00+09:00")),
        ..Identity::default()
    }
}

fn managed_pc() -> Device {
    let at = t(NOW);
    Device {
        certificate: Certificate::Present {
            id: "pc-1".into(),
            fingerprint: "ab".into(),
        },
        managed: Fact::known(true, at),
        ownership: Fact::known(Ownership::Corporate, at),
        compliant: Fact::known(true, at),
        os: Fact::known("windows".into(), at),
        os_version: Fact::known("10.0.19045".into(), at),
        last_check_in: Fact::known(t("2026-04-14T08:00:00+09:00"), at),
        ..Device::default()
    }
}

fn request(path: &str) -> Request<'_> {
    Request {
        method: "GET".into(),
        host: "portal.example".into(),
        path: path.into(),
        zone: "lgwan".into(),
        route: "portal".into(),
        source_ip: IpAddr::from([127, 0, 0, 1]),
    }
}

fn decide(
    s: &PolicySet,
    policy: &str,
    id: Option<&Identity>,
    dev: Option<&Device>,
    req: &Request,
) -> sekisho_policy::Decision {
    let target = Target::policy(s.lookup(policy).unwrap());
    s.evaluate(
        target,
        &Input {
            identity: id,
            device: dev,
            request: req,
            now: t(NOW),
        },
    )
}

#[test]
fn a_policy_without_allow_rules_denies() {
    let s = set("policies:\n  p:\n    deny:\n      - groups: [x]\n");
    let d = decide(&s, "p", Some(&staff()), Some(&managed_pc()), &request("/"));
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(&*d.rule.path, "p.default");
    assert_eq!(d.reason_code(), "policy.no_allow_rule");
}

#[test]
fn deny_overrides_allow_and_names_the_rule() {
    let s = set(
        "policies:\n  p:\n    allow:\n      - groups: [staff]\n    deny:\n      - path: { prefix: [/admin] }\n",
    );
    let id = staff();
    assert!(decide(&s, "p", Some(&id), None, &request("/admin/x")).outcome == Outcome::Deny);
    let d = decide(&s, "p", Some(&id), None, &request("/admin/x"));
    assert_eq!(&*d.rule.path, "p.deny[0]");
    assert_eq!(d.reason_code(), "path.listed");
    assert_eq!(
        decide(&s, "p", Some(&id), None, &request("/adminx")).outcome,
        Outcome::Allow
    );
}

#[test]
fn unmanaged_devices_get_a_reason_in_both_languages() {
    let s = set("policies:\n  p:\n    allow:\n      - device: { managed: true }\n");
    let mut dev = managed_pc();
    dev.managed = Fact::known(false, t(NOW));
    let d = decide(&s, "p", Some(&staff()), Some(&dev), &request("/"));
    assert_eq!(d.outcome, Outcome::Deny);
    let r = d.reasons.first().unwrap();
    assert_eq!(r.code, "device.unmanaged");
    assert_eq!(r.ja, "この端末は管理対象外です");
    assert_eq!(r.en, "This device is not managed by the municipality");
}

#[test]
fn unknown_posture_never_matches_an_allow_and_makes_a_deny_apply() {
    let allow = set("policies:\n  p:\n    allow:\n      - device: { compliant: true }\n");
    let mut dev = managed_pc();
    dev.compliant = Fact::Unknown;
    let d = decide(&allow, "p", Some(&staff()), Some(&dev), &request("/"));
    assert_eq!(
        (d.outcome.clone(), d.reason_code()),
        (Outcome::Deny, "posture.unknown")
    );

    let deny = set(
        "policies:\n  p:\n    allow:\n      - groups: [staff]\n    deny:\n      - device: { compliant: false }\n",
    );
    let d = decide(&deny, "p", Some(&staff()), Some(&dev), &request("/"));
    assert_eq!(
        (d.outcome.clone(), d.reason_code()),
        (Outcome::Deny, "posture.unknown")
    );
    assert_eq!(&*d.rule.path, "p.deny[0]");
    // Known and fine: allowed.
    let d = decide(
        &deny,
        "p",
        Some(&staff()),
        Some(&managed_pc()),
        &request("/"),
    );
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn login_is_asked_for_only_when_signing_in_could_help() {
    let s = set(
        "policies:\n  p:\n    allow:\n      - groups: [staff]\n        network: [127.0.40.0/24]\n",
    );
    let mut req = request("/");
    req.source_ip = IpAddr::from([127, 0, 40, 9]);
    assert_eq!(
        decide(&s, "p", None, None, &req).outcome,
        Outcome::LoginRequired
    );
    req.source_ip = IpAddr::from([127, 0, 41, 9]);
    let d = decide(&s, "p", None, None, &req);
    assert_eq!(
        (d.outcome.clone(), d.reason_code()),
        (Outcome::Deny, "network.outside")
    );
}

#[test]
fn a_certificate_is_asked_for_when_the_device_is_unknown() {
    let s = set(
        "policies:\n  p:\n    allow:\n      - groups: [staff]\n        device: { managed: true }\n",
    );
    let d = decide(&s, "p", Some(&staff()), None, &request("/"));
    assert_eq!(d.outcome, Outcome::DeviceCertificateRequired);
    assert_eq!(d.reason_code(), "certificate.required");
    // Even when the rule also waits for something else, the certificate is named first.
    let s2 =
        set("policies:\n  p:\n    allow:\n      - mfa: true\n        device: { managed: true }\n");
    let mut id = staff();
    id.amr = vec!["pwd".into()];
    let d = decide(&s2, "p", Some(&id), None, &request("/"));
    assert_eq!(
        (d.outcome.clone(), d.reason_code()),
        (Outcome::DeviceCertificateRequired, "certificate.required")
    );
    let bad = Device {
        certificate: Certificate::Invalid {
            reason: "revoked".into(),
        },
        ..Device::default()
    };
    let d = decide(&s, "p", Some(&staff()), Some(&bad), &request("/"));
    assert_eq!(
        (d.outcome.clone(), d.reason_code()),
        (Outcome::DeviceCertificateRequired, "certificate.invalid")
    );
}

#[test]
fn step_up_says_what_is_needed() {
    let s = set(
        "policies:\n  p:\n    allow:\n      - groups: [staff]\n        mfa: true\n        max_auth_age: 5m\n        acr: [urn:city:loa:high]\n",
    );
    let mut id = staff();
    id.amr = vec!["pwd".into()];
    let d = decide(&s, "p", Some(&id), None, &request("/"));
    let Outcome::StepUp(step) = &d.outcome else {
        panic!("{d:?}")
    };
    assert!(step.mfa);
    assert_eq!(step.max_auth_age, Some(Duration::from_secs(300)));
    assert_eq!(
        step.acr.as_deref(),
        Some(&["urn:city:loa:high".to_string()][..])
    );
    assert_eq!(d.outcome.code(), "step_up");
    // Not staff: no step-up can help.
    id.groups = vec!["guests".into()];
    assert_eq!(
        decide(&s, "p", Some(&id), None, &request("/")).outcome,
        Outcome::Deny
    );
}

#[test]
fn deny_not_mfa_asks_for_step_up_but_deny_mfa_just_denies() {
    let s = set(
        "policies:\n  a:\n    allow: [ { groups: [staff] } ]\n    deny: [ { not: { mfa: true } } ]\n  b:\n    allow: [ { groups: [staff] } ]\n    deny: [ { mfa: true } ]\n",
    );
    let mut id = staff();
    id.amr = vec!["pwd".into()];
    assert!(
        matches!(decide(&s, "a", Some(&id), None, &request("/")).outcome, Outcome::StepUp(ref x) if x.mfa)
    );
    assert_eq!(
        decide(&s, "b", Some(&id), None, &request("/")).outcome,
        Outcome::Allow
    );
    assert_eq!(
        decide(&s, "b", Some(&staff()), None, &request("/")).outcome,
        Outcome::Deny
    );
}

#[test]
fn the_zone_floor_is_anded_with_the_route_policy() {
    let s = set(
        "policies:\n  floor:\n    allow: [ { groups: [staff], device: { managed: true } } ]\n  open:\n    allow: [ { anyone: true } ]\n",
    );
    let target = Target::with_floor(s.lookup("floor").unwrap(), s.lookup("open").unwrap());
    let req = request("/");
    let id = staff();
    let mut dev = managed_pc();
    fn input<'a>(id: &'a Identity, dev: &'a Device, req: &'a Request) -> Input<'a> {
        Input {
            identity: Some(id),
            device: Some(dev),
            request: req,
            now: t(NOW),
        }
    }
    let d = s.evaluate(target, &input(&id, &dev, &req));
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(&*d.rule.path, "open.allow[0]");
    assert_eq!(
        d.floor_rule.as_ref().map(|r| &*r.path),
        Some("floor.allow[0]")
    );
    dev.managed = Fact::known(false, t(NOW));
    let d = s.evaluate(target, &input(&id, &dev, &req));
    assert_eq!(
        (d.outcome.clone(), &*d.rule.path),
        (Outcome::Deny, "floor.default")
    );
    assert!(s.admits_everyone(s.lookup("open").unwrap()));
    assert!(!s.target_admits_anonymous(target));
}

#[test]
fn identity_criteria() {
    let s = set("\
policies:
  domain:
    allow: [ { user: { email_domain: [city.example.lg.jp] } } ]
  claim:
    allow: [ { claim: { name: roles, contains: approver } } ]
  sub:
    allow: [ { user: { sub: [tanaka] } } ]
");
    let mut id = staff();
    id.claims
        .insert("roles".into(), serde_json::json!(["viewer", "approver"]));
    for p in ["domain", "claim", "sub"] {
        assert_eq!(
            decide(&s, p, Some(&id), None, &request("/")).outcome,
            Outcome::Allow,
            "{p}"
        );
    }
    id.email = Some("tanaka@evil.example".into());
    id.claims.clear();
    id.sub = "suzuki".into();
    for p in ["domain", "claim", "sub"] {
        assert_eq!(
            decide(&s, p, Some(&id), None, &request("/")).outcome,
            Outcome::Deny,
            "{p}"
        );
    }
}

#[test]
fn os_versions_compare_numerically() {
    let s = set(
        "policies:\n  p:\n    allow: [ { device: { os: windows, min_os_version: \"10.0.19044\" } } ]\n",
    );
    let mut dev = managed_pc();
    assert_eq!(
        decide(&s, "p", None, Some(&dev), &request("/")).outcome,
        Outcome::Allow
    );
    dev.os_version = Fact::known("10.0.9999".into(), t(NOW));
    let d = decide(&s, "p", None, Some(&dev), &request("/"));
    assert_eq!(
        (d.outcome.clone(), d.reason_code()),
        (Outcome::Deny, "device.os_outdated")
    );
}

#[test]
fn globs_and_methods() {
    let s = set(
        "policies:\n  p:\n    allow: [ { path: { glob: [\"/api/*/items/**\"] }, method: [get, head] } ]\n",
    );
    let mut req = request("/api/v1/items/42/x");
    assert_eq!(decide(&s, "p", None, None, &req).outcome, Outcome::Allow);
    req.path = "/api/v1/x/items/42".into();
    assert_eq!(decide(&s, "p", None, None, &req).outcome, Outcome::Deny);
    req.path = "/api/v1/items/42".into();
    req.method = "DELETE".into();
    assert_eq!(
        decide(&s, "p", None, None, &req).reason_code(),
        "method.not_allowed"
    );
}

#[test]
fn version_ignores_layout_and_tracks_meaning() {
    let a = set(
        "# comment\npolicies:\n  p:\n    description: one\n    allow:\n      - groups: [b, a]\n        mfa: true\n",
    );
    let b = set(
        "policies:\n  p:\n    allow: [ { mfa: true, groups: [a, b] } ]\n    description: two\n",
    );
    let c = set("policies:\n  p:\n    allow: [ { mfa: true, groups: [a, c] } ]\n");
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
    assert_eq!(a.version().len(), 16);
    assert!(a.version_full().starts_with(a.version()));
}

#[test]
fn explain_shows_every_rule_and_the_same_decision() {
    let s = set(
        "policies:\n  p:\n    allow:\n      - name: office\n        groups: [staff]\n        time: { weekdays: [sat-sun] }\n    deny:\n      - device: { ownership: byod }\n",
    );
    let req = request("/");
    let id = staff();
    let input = Input {
        identity: Some(&id),
        device: None,
        request: &req,
        now: t(NOW),
    };
    let target = Target::policy(s.lookup("p").unwrap());
    let trace = s.explain(target, &input);
    assert_eq!(trace.decision, s.evaluate(target, &input));
    let text = trace.to_string();
    for needle in [
        "p.deny[0]",
        "p.allow[0] (office)",
        "groups: [\"staff\"]",
        "2026-04-14 10:00 tue",
        "time.weekday",
        "needs a valid device certificate",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn zone_and_route_references_are_listed_for_the_config_loader() {
    let s = set(
        "policies:\n  p:\n    allow:\n      - zone: [lgwan]\n        any: [ { route: [portal] }, { not: { route: [admin] } } ]\n",
    );
    let refs: Vec<(&str, String, u64, String)> = s
        .references()
        .into_iter()
        .map(|r| (r.kind, r.name, r.line, r.path))
        .collect();
    assert_eq!(
        refs,
        [
            (
                "zone",
                "lgwan".to_string(),
                4,
                "policies.p.allow[0]".to_string()
            ),
            (
                "route",
                "portal".to_string(),
                4,
                "policies.p.allow[0]".to_string()
            ),
            (
                "route",
                "admin".to_string(),
                4,
                "policies.p.allow[0]".to_string()
            ),
        ]
    );
}

/// The facts a target's decision may test, for the access record's device block: those of
/// every rule, allow and deny, nested under `any` and `not`, of the route policy and the
/// zone floor — and nothing a rule does not name.
#[test]
fn a_target_names_the_posture_facts_its_rules_test() {
    use sekisho_policy::PostureFacts as F;
    let s = set("\
policies:
  floor:
    allow: [ { device: { managed: true } } ]
  route:
    allow:
      - groups: [staff]
        any:
          - device: { min_os_version: \"10.0\" }
          - not: { device: { tags: [kiosk] } }
    deny:
      - device: { ownership: byod, last_check_in_within: 7d }
  identity-only:
    allow: [ { groups: [staff], device: { certificate: true } } ]
");
    let floor = s.lookup("floor").unwrap();
    let route = s.lookup("route").unwrap();
    let route_facts = F::OS_VERSION
        .union(F::TAGS)
        .union(F::OWNERSHIP)
        .union(F::LAST_CHECK_IN);
    assert_eq!(s.posture_facts(Target::policy(route)), route_facts);
    assert_eq!(
        s.posture_facts(Target::with_floor(floor, route)),
        route_facts.union(F::MANAGED)
    );
    assert!(!s.posture_facts(Target::policy(route)).contains(F::MANAGED));
    // The certificate is not an inventory fact: the record always carries its state.
    assert_eq!(
        s.posture_facts(Target::policy(s.lookup("identity-only").unwrap())),
        F::NONE
    );
}
