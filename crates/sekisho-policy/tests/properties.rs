//! Invariants of the decision, over random policies and random requests:
//! deny overrides allow; removing an allow rule never turns a deny into an allow;
//! a zone floor cannot be weakened by any route policy; default deny.

use std::net::IpAddr;

use jiff::Timestamp;
use proptest::prelude::*;
use sekisho_policy::{
    Certificate, Decision, Device, Fact, Identity, Input, Outcome, Ownership, PolicySet, Request,
    Target,
};

const CRITERIA: &[&str] = &[
    "groups: [staff]",
    "groups: [auditors, staff]",
    "mfa: true",
    "authenticated: true",
    "anyone: true",
    "max_auth_age: 30m",
    "acr: [high]",
    "device: { certificate: true }",
    "device: { managed: true }",
    "device: { compliant: true }",
    "device: { ownership: byod }",
    "device: { min_os_version: \"10.0.19045\" }",
    "device: { last_check_in_within: 7d }",
    "network: [127.0.40.0/24]",
    "time: { weekdays: [mon-fri], hours: \"08:00-18:00\" }",
    "path: { prefix: [/admin] }",
    "method: [GET, HEAD]",
    "not: { groups: [auditors] }",
    "not: { device: { managed: true } }",
    "not: { mfa: true }",
    "any: [ { groups: [auditors] }, { mfa: true } ]",
    "any: [ { network: [127.0.40.0/24] }, { device: { compliant: true } } ]",
];

fn rule() -> impl Strategy<Value = String> {
    prop::collection::vec(0..CRITERIA.len(), 1..4).prop_map(|idx| {
        let parts: Vec<String> = idx
            .iter()
            .map(|&i| format!("{{ {} }}", CRITERIA[i]))
            .collect();
        format!("all: [ {} ]", parts.join(", "))
    })
}

#[derive(Debug, Clone)]
struct RawPolicy {
    allow: Vec<String>,
    deny: Vec<String>,
}

fn policy() -> impl Strategy<Value = RawPolicy> {
    (
        prop::collection::vec(rule(), 0..4),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(|(allow, deny)| RawPolicy { allow, deny })
}

fn yaml(policies: &[(&str, &RawPolicy)]) -> String {
    let mut s = String::from("policies:\n");
    for (name, p) in policies {
        s.push_str(&format!("  {name}:\n"));
        for (key, rules) in [("allow", &p.allow), ("deny", &p.deny)] {
            if rules.is_empty() {
                s.push_str(&format!("    {key}: []\n"));
            } else {
                s.push_str(&format!("    {key}:\n"));
                for r in rules {
                    s.push_str(&format!("      - {r}\n"));
                }
            }
        }
    }
    s
}

fn compile(policies: &[(&str, &RawPolicy)]) -> Option<PolicySet> {
    PolicySet::compile(&[("p.yaml", yaml(policies))])
        .ok()
        .map(|(s, _)| s)
}

#[derive(Debug, Clone)]
struct Scenario {
    identity: Option<Identity>,
    device: Option<Device>,
    request: Request<'static>,
    now: Timestamp,
}

fn fact<T: std::fmt::Debug + Clone + 'static>(
    v: impl Strategy<Value = T>,
) -> impl Strategy<Value = Fact<T>> {
    let at: Timestamp = "2026-04-14T00:00:00Z".parse().unwrap();
    prop_oneof![
        Just(Fact::Unknown),
        v.prop_map(move |value| Fact::known(value, at))
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let identity = prop::option::of(
        (
            prop::sample::subsequence(vec!["staff", "auditors", "guests"], 0..3),
            any::<bool>(),
            0i64..7200,
            prop::option::of(prop_oneof![Just("high"), Just("low")]),
        )
            .prop_map(|(groups, mfa, age, acr)| Identity {
                sub: "u".into(),
                groups: groups.into_iter().map(String::from).collect(),
                amr: if mfa {
                    vec!["pwd".into(), "otp".into()]
                } else {
                    vec!["pwd".into()]
                },
                acr: acr.map(String::from),
                auth_time: Some(
                    "2026-04-14T01:00:00Z".parse::<Timestamp>().unwrap()
                        - jiff::SignedDuration::from_secs(age),
                ),
                ..Identity::default()
            }),
    );
    let certificate = prop_oneof![
        Just(Certificate::Absent),
        Just(Certificate::Invalid {
            reason: "expired".into()
        }),
        Just(Certificate::Present {
            id: "pc".into(),
            fingerprint: "f".into()
        }),
    ];
    let device = prop::option::of(
        (
            certificate,
            fact(any::<bool>()),
            fact(any::<bool>()),
            fact(prop_oneof![
                Just(Ownership::Corporate),
                Just(Ownership::Byod)
            ]),
            fact(prop_oneof![
                Just("10.0.19044".to_string()),
                Just("10.0.22631".to_string())
            ]),
            fact(prop_oneof![
                Just("2026-04-13T00:00:00Z".parse::<Timestamp>().unwrap()),
                Just("2026-03-01T00:00:00Z".parse::<Timestamp>().unwrap())
            ]),
        )
            .prop_map(
                |(certificate, managed, compliant, ownership, os_version, last_check_in)| Device {
                    certificate,
                    managed,
                    compliant,
                    ownership,
                    os_version,
                    last_check_in,
                    ..Device::default()
                },
            ),
    );
    let request = (
        prop_oneof![Just("GET"), Just("POST")],
        prop_oneof![Just("/"), Just("/admin/users")],
        prop_oneof![Just([127, 0, 40, 5]), Just([127, 0, 41, 5])],
    )
        .prop_map(|(method, path, ip)| Request {
            method: method.into(),
            host: "h".into(),
            path: path.into(),
            zone: "lgwan".into(),
            route: "r".into(),
            source_ip: IpAddr::from(ip),
        });
    let now = prop_oneof![
        Just("2026-04-14T01:00:00Z"), // Tue 10:00 JST
        Just("2026-04-14T14:00:00Z"), // Tue 23:00 JST
        Just("2026-04-18T01:00:00Z"), // Sat 10:00 JST
    ]
    .prop_map(|s| s.parse::<Timestamp>().unwrap());
    (identity, device, request, now).prop_map(|(identity, device, request, now)| Scenario {
        identity,
        device,
        request,
        now,
    })
}

fn decide(set: &PolicySet, target: Target, s: &Scenario) -> Decision {
    set.evaluate(
        target,
        &Input {
            identity: s.identity.as_ref(),
            device: s.device.as_ref(),
            request: &s.request,
            now: s.now,
        },
    )
}

fn only(set: &PolicySet, name: &str) -> Target {
    Target::policy(set.lookup(name).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// If a deny rule applies on its own, adding it to any policy makes that policy deny.
    #[test]
    fn deny_overrides_allow(p in policy(), d in rule(), s in scenario()) {
        let alone = RawPolicy { allow: vec!["anyone: true".into()], deny: vec![d.clone()] };
        let mut with = p.clone();
        with.deny.push(d);
        let set = compile(&[("alone", &alone), ("with", &with)]);
        prop_assume!(set.is_some());
        let set = set.unwrap();
        if decide(&set, only(&set, "alone"), &s).outcome == Outcome::Deny {
            prop_assert_eq!(decide(&set, only(&set, "with"), &s).outcome, Outcome::Deny);
        }
    }

    /// Removing an allow rule never turns a non-allow into an allow.
    #[test]
    fn removing_an_allow_rule_never_allows_more(p in policy(), s in scenario(), pick in any::<prop::sample::Index>()) {
        prop_assume!(!p.allow.is_empty());
        let mut fewer = p.clone();
        fewer.allow.remove(pick.index(p.allow.len()));
        let set = compile(&[("full", &p), ("fewer", &fewer)]);
        prop_assume!(set.is_some());
        let set = set.unwrap();
        if decide(&set, only(&set, "full"), &s).outcome != Outcome::Allow {
            prop_assert_ne!(decide(&set, only(&set, "fewer"), &s).outcome, Outcome::Allow);
        }
    }

    /// Floor ∧ route allows only if the floor alone and the route alone allow; a floor
    /// deny is final whatever the route says.
    #[test]
    fn a_zone_floor_cannot_be_weakened(floor in policy(), route in policy(), s in scenario()) {
        let set = compile(&[("floor", &floor), ("route", &route)]);
        prop_assume!(set.is_some());
        let set = set.unwrap();
        let both = Target::with_floor(set.lookup("floor").unwrap(), set.lookup("route").unwrap());
        let combined = decide(&set, both, &s);
        let f = decide(&set, only(&set, "floor"), &s);
        let r = decide(&set, only(&set, "route"), &s);
        if combined.outcome == Outcome::Allow {
            prop_assert_eq!(&f.outcome, &Outcome::Allow);
            prop_assert_eq!(&r.outcome, &Outcome::Allow);
        }
        if f.outcome == Outcome::Deny {
            prop_assert_eq!(combined.outcome, Outcome::Deny);
        }
    }

    /// A policy without allow rules denies everything.
    #[test]
    fn default_deny(deny in prop::collection::vec(rule(), 0..3), s in scenario()) {
        let p = RawPolicy { allow: vec![], deny };
        let set = compile(&[("p", &p)]);
        prop_assume!(set.is_some());
        let set = set.unwrap();
        prop_assert_eq!(decide(&set, only(&set, "p"), &s).outcome, Outcome::Deny);
    }

    /// Explain reports the decision evaluate makes.
    #[test]
    fn explain_agrees_with_evaluate(p in policy(), s in scenario()) {
        let set = compile(&[("p", &p)]);
        prop_assume!(set.is_some());
        let set = set.unwrap();
        let input = Input { identity: s.identity.as_ref(), device: s.device.as_ref(), request: &s.request, now: s.now };
        prop_assert_eq!(set.explain(only(&set, "p"), &input).decision, set.evaluate(only(&set, "p"), &input));
    }
}

#[test]
fn an_empty_policy_file_set_has_no_policies_and_an_empty_policy_denies() {
    let set = compile(&[(
        "p",
        &RawPolicy {
            allow: vec![],
            deny: vec![],
        },
    )])
    .unwrap();
    let s = Scenario {
        identity: None,
        device: None,
        request: Request {
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            zone: "".into(),
            route: "".into(),
            source_ip: IpAddr::from([127, 0, 0, 1]),
        },
        now: "2026-04-14T01:00:00Z".parse().unwrap(),
    };
    assert_eq!(decide(&set, only(&set, "p"), &s).outcome, Outcome::Deny);
}

const EXAMPLE: &str = include_str!("../../../policies/lgwan.yaml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Damaged policy text never panics the compiler: it compiles or it reports.
    #[test]
    fn damaged_policy_text_never_panics(edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, any::<char>()), 1..6)) {
        let mut text: Vec<char> = EXAMPLE.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(text.len().max(1));
            match op {
                0 => { text.remove(i.min(text.len() - 1)); }
                1 => text.insert(i, c),
                2 => text.insert(i, [':', '-', '[', '{', ' ', '\n', '"'][(c as usize) % 7]),
                _ => text.truncate(i),
            }
            if text.is_empty() { text.push(' '); }
        }
        let text: String = text.into_iter().collect();
        match PolicySet::compile(&[("p.yaml", text.as_str())]) {
            Ok(_) => {}
            Err(diags) => prop_assert!(diags.iter().any(|d| d.is_error())),
        }
    }
}
