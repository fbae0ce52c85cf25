//! The test-case runner: output format, route resolution, load errors.

use sekisho_policy::testing::{CaseTarget, TestSuite, load_scenario, no_routes};
use sekisho_policy::{PolicySet, Target};

const POLICIES: &str = "\
policies:
  floor:
    allow: [ { authenticated: true } ]
  staff:
    allow: [ { groups: [staff] } ]
";

const CASES: &str = "\
identities:
  tanaka: { sub: tanaka, groups: [staff] }
cases:
  - name: staff pass
    policy: staff
    at: 2026-04-14T10:00:00+09:00
    identity: tanaka
    expect: allow
  - name: wrong expectation
    policy: staff
    at: 2026-04-14T10:00:00+09:00
    expect: deny
  - name: through a route
    route: portal
    at: 2026-04-14T10:00:00+09:00
    identity: { sub: guest, groups: [guests] }
    expect: deny
    reason: group.not_member
  - name: unknown route
    route: nowhere
    at: 2026-04-14T10:00:00+09:00
    expect: deny
";

#[test]
fn failures_are_one_line_each_then_the_summary() {
    let (set, _) = PolicySet::compile(&[("p.yaml", POLICIES)]).unwrap();
    let suite = TestSuite::load(&[("t.yaml", CASES)]).unwrap();
    let floor = set.lookup("floor").unwrap();
    let staff = set.lookup("staff").unwrap();
    let resolve =
        move |route: &str| (route == "portal").then_some(Target::with_floor(floor, staff));
    let report = suite.run(&set, &resolve);
    assert_eq!((report.passed(), report.failed()), (2, 2));
    assert_eq!(
        report.to_string(),
        "FAIL t.yaml:9: wrong expectation: expected deny, got login_required by staff.allow[0] (identity.login_required)\n\
         FAIL t.yaml:19: unknown route: unknown route `nowhere`\n\
         2 passed, 2 failed\n"
    );
    // Without a resolver, route cases fail and say why.
    let report = suite.run(&set, &no_routes);
    assert_eq!(report.failed(), 3);
}

#[test]
fn case_files_report_every_problem() {
    let text = "\
cases:
  - name: x
    polcy: staff
    at: yesterday
    identity: tanak
    expect: allowed
    reason: time.holidays
";
    let diags = TestSuite::load(&[("t.yaml", text)]).unwrap_err();
    let all = sekisho_yaml::render_all(&diags);
    for needle in [
        "unknown key `polcy`",
        "`yesterday` is not a time",
        "unknown identity `tanak`",
        "`allowed` is not allowed here",
        "unknown reason code `time.holidays`",
        "did you mean `time.holiday`?",
    ] {
        assert!(all.contains(needle), "{needle:?} not in\n{all}");
    }
}

#[test]
fn a_scenario_file_for_explain() {
    let text = "policy: staff\nfloor: floor\nat: 2026-04-14T10:00:00+09:00\nidentity: { sub: a, groups: [staff] }\nrequest: { method: post, path: /x }\n";
    let (target, scenario) = load_scenario("s.yaml", text).unwrap();
    assert_eq!(
        target,
        CaseTarget::Policy {
            policy: "staff".into(),
            floor: Some("floor".into())
        }
    );
    assert_eq!(scenario.request.method, "POST");
    assert_eq!(scenario.identity.unwrap().groups, ["staff"]);
    assert!(scenario.device.is_none());
}
