//! The example policies in `policies/` compile without errors and pass their own
//! test cases.

use std::fs;
use std::path::{Path, PathBuf};

use sekisho_policy::PolicySet;
use sekisho_policy::testing::{TestSuite, no_routes};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(repo()).unwrap_or(&p).display().to_string();
            (name, fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn example_set() -> PolicySet {
    let files = yaml_files(&repo().join("policies"));
    match PolicySet::compile(&files) {
        Ok((set, warnings)) => {
            assert!(
                warnings.is_empty(),
                "{}",
                sekisho_yaml::render_all(&warnings)
            );
            set
        }
        Err(diags) => panic!("{}", sekisho_yaml::render_all(&diags)),
    }
}

#[test]
fn example_policies_compile_and_keep_their_names() {
    let set = example_set();
    for name in [
        "lgwan-floor",
        "lgwan-staff",
        "internet-groupware",
        "audit-viewer",
        "contractor-app",
        "internet-floor",
    ] {
        assert!(set.lookup(name).is_some(), "missing policy {name}");
    }
    assert_eq!(set.version().len(), 16);
}

#[test]
fn example_test_cases_pass() {
    let set = example_set();
    let suite = TestSuite::load(&yaml_files(&repo().join("policies/tests")))
        .unwrap_or_else(|d| panic!("{}", sekisho_yaml::render_all(&d)));
    assert!(suite.cases.len() >= 20, "only {} cases", suite.cases.len());
    let report = suite.run(&set, &no_routes);
    assert!(report.success(), "{report}");
}

#[test]
fn only_the_public_policy_admits_anonymous_requests() {
    let set = example_set();
    let anonymous: Vec<&str> = set
        .policy_names()
        .filter(|n| set.admits_anonymous(set.lookup(n).unwrap()))
        .collect();
    assert_eq!(anonymous, ["public-info"]);
}
