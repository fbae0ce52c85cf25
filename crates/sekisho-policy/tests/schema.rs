//! The committed JSON Schemas are exactly what the code generates. To refresh them:
//! `sekisho policy schema > schema/policy.schema.json` and
//! `sekisho policy schema --tests > schema/policy-tests.schema.json`.

use std::path::Path;

use sekisho_policy::schema;

fn committed(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schema")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_policy_schema_is_current() {
    let generated = schema::to_pretty(&schema::policy_schema());
    if std::env::var_os("SEKISHO_BLESS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/policy.schema.json"),
            &generated,
        )
        .unwrap();
    }
    assert!(
        committed("policy.schema.json") == generated,
        "schema/policy.schema.json is stale: run `sekisho policy schema > schema/policy.schema.json` (or SEKISHO_BLESS=1 cargo test -p sekisho-policy --test schema)"
    );
}

#[test]
fn committed_tests_schema_is_current() {
    let generated = schema::to_pretty(&schema::tests_schema());
    if std::env::var_os("SEKISHO_BLESS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/policy-tests.schema.json"),
            &generated,
        )
        .unwrap();
    }
    assert!(
        committed("policy-tests.schema.json") == generated,
        "schema/policy-tests.schema.json is stale: run `sekisho policy schema --tests > schema/policy-tests.schema.json`"
    );
}

#[test]
fn schema_names_every_criterion() {
    let s = schema::policy_schema();
    let props = s["$defs"]["condition"]["properties"].as_object().unwrap();
    for key in [
        "groups", "mfa", "device", "time", "network", "path", "all", "any", "not",
    ] {
        assert!(props.contains_key(key), "{key}");
    }
    assert!(
        s["$defs"]["rule"]["properties"]
            .as_object()
            .unwrap()
            .contains_key("name")
    );
}
