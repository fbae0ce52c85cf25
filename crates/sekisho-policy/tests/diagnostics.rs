//! What an IT officer sees when a policy is wrong: every problem at once, each with
//! file:line:column, key path and a hint.

use sekisho_policy::{Diagnostic, PolicySet, Severity};

fn errors(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    match PolicySet::compile(files) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d,
    }
}

fn warnings(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    match PolicySet::compile(files) {
        Ok((_, w)) => w,
        Err(d) => panic!("{}", sekisho_yaml::render_all(&d)),
    }
}

fn find<'a>(diags: &'a [Diagnostic], needle: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no diagnostic containing {needle:?} in\n{}",
                sekisho_yaml::render_all(diags)
            )
        })
}

#[test]
fn all_errors_are_reported_at_once_with_positions_paths_and_hints() {
    let text = "\
policies:
  lgwan-staff:
    allow:
      - grups: [staff]
        mfa: yes
      - device: { managed: true, ownership: personal }
        time: { weekdays: [mon, tues], hours: \"09:00-09:00\" }
    deny:
      - network: [10.0.0.0/33]
";
    let diags = errors(&[("policies/base.yaml", text)]);
    let d = find(&diags, "unknown key `grups`");
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("policies/base.yaml", 4, 9)
    );
    assert_eq!(d.path, "policies.lgwan-staff.allow[0].grups");
    assert_eq!(d.hint.as_deref(), Some("did you mean `groups`?"));
    assert_eq!(
        d.to_string(),
        "error: policies/base.yaml:4:9: policies.lgwan-staff.allow[0].grups: unknown key `grups`\n  hint: did you mean `groups`?"
    );
    assert_eq!(find(&diags, "`yes` is not a boolean").line, 5);
    let own = find(&diags, "`personal` is not allowed");
    assert_eq!(own.path, "policies.lgwan-staff.allow[1].device.ownership");
    assert_eq!(own.hint.as_deref(), Some("one of: corporate, byod"));
    assert_eq!(
        find(&diags, "`tues` is not a day").hint.as_deref(),
        Some("did you mean `tue`?")
    );
    assert!(
        find(&diags, "same time")
            .message
            .contains("can never match")
    );
    assert_eq!(
        find(&diags, "`10.0.0.0/33` is not a network").path,
        "policies.lgwan-staff.deny[0].network[0]"
    );
    assert!(diags.len() >= 6, "{}", sekisho_yaml::render_all(&diags));
}

#[test]
fn duplicate_policy_names_across_files_name_both_places() {
    let a = "policies:\n  portal:\n    allow:\n      - groups: [staff]\n";
    let b = "# second file\npolicies:\n  other:\n    allow: [ { groups: [x] } ]\n  portal:\n    allow:\n      - groups: [it]\n";
    let diags = errors(&[("policies/a.yaml", a), ("policies/b.yaml", b)]);
    let d = find(&diags, "defined twice");
    assert_eq!((d.file.as_str(), d.line), ("policies/b.yaml", 5));
    assert!(d.message.contains("policies/a.yaml:2:3"), "{}", d.message);
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let text = "policies:\n  p:\n    allow:\n      - groups: [a]\n        groups: [b]\n";
    let diags = errors(&[("p.yaml", text)]);
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].message.to_lowercase().contains("duplicate"),
        "{}",
        diags[0]
    );
}

#[test]
fn unknown_date_lists_and_time_zones_are_errors() {
    let text = "\
settings:
  holidays:
    jp-holidays: [2026-01-01]
policies:
  p:
    allow:
      - time: { tz: Asia/Tokio, except_dates: [jp-holiday] }
";
    let diags = errors(&[("p.yaml", text)]);
    assert_eq!(
        find(&diags, "unknown time zone").path,
        "policies.p.allow[0].time.tz"
    );
    let d = find(&diags, "unknown date list `jp-holiday`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `jp-holidays`?"));
}

#[test]
fn rules_that_can_never_match_are_errors() {
    for (rule, needle) in [
        ("groups: []", "empty group list"),
        (
            "device: { min_os_version: \"11\", max_os_version: \"10.0.19045\" }",
            "above `max_os_version`",
        ),
        ("time: { weekdays: [] }", "no week days"),
        (
            "all: [ { device: { managed: true } }, { device: { managed: false } } ]",
            "can never match",
        ),
        (
            "device: { managed: true }\n        not: { device: { managed: true } }",
            "can never match",
        ),
        ("{}", "at least one criterion"),
        ("network: []", "empty network list"),
    ] {
        let text = format!("policies:\n  p:\n    allow:\n      - {rule}\n");
        let diags = errors(&[("p.yaml", &text)]);
        find(&diags, needle);
    }
}

#[test]
fn an_allow_shadowed_by_a_deny_is_a_warning() {
    let text = "\
policies:
  p:
    allow:
      - groups: [contractors]
        device: { ownership: byod }
      - groups: [staff]
    deny:
      - device: { ownership: byod }
";
    let w = warnings(&[("p.yaml", text)]);
    let d = find(&w, "fully shadowed");
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!((d.line, d.path.as_str()), (4, "policies.p.allow[0]"));
    assert_eq!(
        w.iter().filter(|d| d.message.contains("shadowed")).count(),
        1
    );
}

#[test]
fn group_subsets_and_narrower_networks_are_shadowed_too() {
    let text = "\
policies:
  p:
    allow:
      - { groups: [a], network: [127.0.1.0/24] }
    deny:
      - { groups: [a, b], network: [127.0.0.0/16] }
";
    find(&warnings(&[("p.yaml", text)]), "fully shadowed");
}

#[test]
fn policies_without_allow_rules_and_unused_lists_are_warnings() {
    let text = "\
settings:
  holidays:
    unused-list: [2026-01-01]
policies:
  closed:
    deny:
      - groups: [x]
";
    let w = warnings(&[("p.yaml", text)]);
    find(&w, "no allow rule");
    assert_eq!(find(&w, "not used by any policy").line, 3);
}

#[test]
fn settings_may_be_set_in_one_file_only() {
    let a = "settings:\n  timezone: Asia/Tokyo\n";
    let b = "settings:\n  timezone: UTC\npolicies:\n  p:\n    allow: [ { anyone: true } ]\n";
    let diags = errors(&[("a.yaml", a), ("b.yaml", b)]);
    let d = find(&diags, "set twice");
    assert_eq!(d.file, "b.yaml");
    assert!(d.message.contains("a.yaml:2:13"), "{}", d.message);
}

#[test]
fn false_where_only_true_makes_sense_gets_a_hint() {
    let text = "policies:\n  p:\n    allow:\n      - mfa: false\n";
    let d = errors(&[("p.yaml", text)]);
    assert_eq!(
        find(&d, "`mfa: false`").hint.as_deref(),
        Some("write `not: { mfa: true }`")
    );
}

#[test]
fn a_misspelt_key_is_one_error_not_two() {
    let text = "policies:\n  p:\n    allow:\n      - device: { manged: true }\n";
    let diags = errors(&[("p.yaml", text)]);
    assert_eq!(diags.len(), 1, "{}", sekisho_yaml::render_all(&diags));
    assert_eq!(diags[0].hint.as_deref(), Some("did you mean `managed`?"));
}
