//! `schema/config.schema.json` is exactly what `sekisho_gateway::schema` generates, and it
//! agrees with the loader: the example configuration, the configurations the gateway tests
//! start from and a configuration that uses every key validate; broken configurations are
//! refused by both the schema and the loader.
//!
//! To refresh the committed file: `sekisho schema config > schema/config.schema.json`
//! (or `SEKISHO_BLESS=1 cargo test -p sekisho-gateway --test gateway schema::`).

use crate::common;

use std::path::Path;

use common::*;
use sekisho_yaml::{Kind, Node};
use serde_json::{Map, Value};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// YAML as the loader sees it (sekisho-yaml's tree), as JSON.
fn to_json(n: &Node) -> Value {
    match &n.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => Value::from(*i),
        Kind::Float(f) => Value::from(*f),
        Kind::Str(s) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match &k.kind {
                    Kind::Str(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                m.insert(key, to_json(v));
            }
            Value::Object(m)
        }
    }
}

fn yaml(text: &str) -> Value {
    to_json(&sekisho_yaml::parse("test.yaml", text).unwrap_or_else(|e| panic!("{e}")))
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&sekisho_gateway::schema::config_schema())
        .unwrap_or_else(|e| panic!("the schema itself is invalid: {e}"))
}

fn schema_errors(text: &str) -> Vec<String> {
    validator()
        .iter_errors(&yaml(text))
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(what: &str, text: &str) {
    let errors = schema_errors(text);
    assert!(
        errors.is_empty(),
        "{what} does not validate against the schema:\n{}\n---\n{text}",
        errors.join("\n")
    );
}

#[track_caller]
fn loads(what: &str, text: &str, base: &Path) {
    if let Err(e) = sekisho_gateway::config::from_str("test.yaml", text, base) {
        panic!("{what}: the loader refuses it:\n{e}\n---\n{text}");
    }
}

#[test]
fn committed_config_schema_is_current() {
    let generated = sekisho_gateway::schema::to_pretty(&sekisho_gateway::schema::config_schema());
    let path = repo().join("schema/config.schema.json");
    if std::env::var_os("SEKISHO_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/config.schema.json is stale: run `sekisho schema config > schema/config.schema.json` (or SEKISHO_BLESS=1 cargo test -p sekisho-gateway --test gateway schema::)"
    );
    assert!(generated.ends_with("}\n"));
    // The committed file is itself a valid draft 2020-12 schema.
    let v: Value = serde_json::from_str(&committed).unwrap();
    jsonschema::draft202012::new(&v).unwrap();
}

#[test]
fn example_configuration_validates() {
    let text = std::fs::read_to_string(repo().join("config/sekisho.yaml")).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=../schema/config.schema.json"),
        "config/sekisho.yaml names its schema for editors"
    );
    assert_valid("config/sekisho.yaml", &text);
}

fn route(extra: &str) -> String {
    format!(
        "routes:\n  portal:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [http://127.0.10.90:8080]\n{extra}"
    )
}

/// The shapes the gateway tests start gateways from (tests/common and the test files).
#[test]
fn gateway_test_configurations_validate_and_load() {
    let pki = Pki::new(&[SITE]);
    let base = pki.dir.path().to_owned();
    let ca = pki.path("ca.pem");
    let mut cases: Vec<(&str, String)> = vec![
        (
            "public route",
            full_yaml(&pki, &route("    access: public\n")),
        ),
        (
            "upstream_http2",
            full_yaml(
                &pki,
                &route("    upstream_http2: true\n    access: public\n"),
            ),
        ),
        (
            "policy route",
            full_yaml(&pki, &route("    policy: lgwan-staff\n")),
        ),
        (
            "two path prefixes",
            full_yaml(
                &pki,
                &format!(
                    "routes:\n  down:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /down\n    upstreams: [http://127.0.10.91:1]\n    access: public\n  slow:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /slow\n    upstreams: [http://127.0.10.92:1]\n    access: public\n    timeouts: {{ connect: 1s, response_header: 500ms, idle: 2s }}\n"
                ),
            ),
        ),
        (
            "host-name upstream",
            full_yaml(
                &pki,
                &format!(
                    "routes:\n  portal:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [http://localhost:8080]\n    access: public\n"
                ),
            ),
        ),
        (
            "https upstream",
            full_yaml(
                &pki,
                &format!(
                    "routes:\n  portal:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [https://127.0.10.93:8443]\n    upstream_tls: {{ ca: {}, server_name: portal.internal }}\n    access: public\n",
                    ca.display()
                ),
            ),
        ),
        (
            "audit (tests/audit.rs)",
            full_yaml_with(
                &pki,
                "audit:\n  dir: audit\n  durability: strict\n",
                &route("    policy: lgwan-staff\n"),
            ),
        ),
        (
            "devices (tests/devices.rs)",
            full_yaml_with(
                &pki,
                &format!(
                    "devices:\n  trust:\n    ca_files: [{}]\n    crl_files: [{}]\n  inventory_files: [inventory.yaml]\n",
                    ca.display(),
                    pki.path("device-ca.crl.pem").display()
                ),
                &route("    policy: managed-device\n"),
            ),
        ),
    ];
    // tests/identity.rs: OIDC, sessions and bearer tokens.
    write(&pki.path("client-secret"), "sekisho-test-secret\n");
    write(
        &pki.path("cookie-keys"),
        "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
    );
    for f in ["client-secret", "cookie-keys"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.path(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    cases.push((
        "identity (tests/identity.rs)",
        full_yaml_with(
            &pki,
            "identity:\n  oidc:\n    issuer: http://127.0.0.1:5556/dex\n    client_id: sekisho\n    client_secret_file: client-secret\n    scopes: [openid, email, profile, groups]\n  session:\n    cookie_keys_file: cookie-keys\n  bearer:\n    issuer: http://127.0.0.1:5556/dex\n    audiences: [\"https://api.test\"]\n",
            &route("    policy: lgwan-staff\n"),
        ),
    ));
    for (what, text) in &cases {
        assert_valid(what, text);
        loads(what, text, &base);
    }
}

/// Every key the loader knows, at once: the schema accepts it and so does the loader.
#[test]
fn a_configuration_with_every_key_validates_and_loads() {
    let pki = Pki::new(&[SITE]);
    let base = pki.dir.path().to_owned();
    write(&pki.path("policies.yaml"), TEST_POLICIES);
    for (f, body) in [
        ("client-secret", "s3cret\n"),
        (
            "cookie-keys",
            "# newest first\nk2:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nk1:CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=\n",
        ),
        (
            "assertion-key.pem",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        write(&pki.path(f), body);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.path(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = r#"instance: 12345
logging: { format: json, level: "sekisho_gateway=debug,info" }
admin: { listen: "[::1]:9901" }
limits:
  max_header_bytes: 65536
  max_headers: 200
  header_read_timeout: 5s
  max_concurrent_streams: 50
  drain_timeout: 1m 30s
policies: policies.yaml
trusted_proxies: [10.0.0.5, 192.168.0.0/16, "fd00::/8"]
devices:
  trust:
    ca_files: [ca.pem]
    crl_files: []
    device_id: { from: san_dns, suffix: .devices.example.lg.jp }
    allow_unknown_revocation_status: false
    enforce_crl_expiry: true
  inventory_files: [devices.yaml, devices.csv]
  assertions:
    header: X-Device-Posture
    keys:
      - { kid: mdm-1, public_key_file: mdm.pub.pem, algorithm: ES256, issuer: https://mdm.example }
      - public_key_file: agent.pub.pem
    audience: sekisho
    max_age: 10m
    leeway: 30s
  posture: { inventory_max_age: 48h, assertion_max_age: PT15M, clock_skew: 2 minutes }
identity:
  oidc:
    issuer: https://login.example.lg.jp/realms/town
    client_id: 123456
    client_secret_file: client-secret
    scopes: [openid, email, profile, groups]
    extra_auth_params: { prompt: login, max_age: 3600 }
  session:
    cookie_keys_file: cookie-keys
    absolute_lifetime: 9h
    idle_timeout: 30m
    refresh_claims_after: 5m
  bearer:
    issuer: https://login.example.lg.jp/realms/town
    audiences: sekisho-api
    jwks_uri: https://login.example.lg.jp/realms/town/protocol/openid-connect/certs
    leeway: 30s
    require_typ: true
  claims:
    subject: oid
    email: upn
    name: name
    groups: roles
    group_names: { 0b6c0d7e-1111-2222-3333-444455556666: staff }
    relevant_groups: [staff, admins]
    keep_claims: [department]
  upstream_headers: { user: X-Remote-User, email: null, groups: X-Remote-Groups }
  assertion:
    header: X-Sekisho-Assertion
    key_file: assertion-key.pem
    lifetime: 2m
    reuse: 45s
    issuer: https://gateway.example.lg.jp
audit:
  dir: audit
  durability: batched
  max_delay: 20ms
  max_file_bytes: 16777216
  retention_days: 0
  checkpoint_key_file: keys/checkpoint.key
  syslog: { address: "syslog.example.lg.jp:6514", ca_file: ca.pem, server_name: syslog.example.lg.jp }
zones:
  lgwan:
    description: LGWAN接続系
    require: lgwan-staff
    egress: { allow: [127.0.10.0/24], deny: 127.0.10.250, bind: 127.0.10.1 }
    response: { cache_control: "no-store, private" }
  internet:
    egress: { allow: 127.0.20.0/24 }
  mynumber:
    isolated: true
    egress: { allow: [127.0.30.0/24] }
listeners:
  lgwan-https:
    zone: lgwan
    listen: 127.0.0.1:0
    tls:
      certificates:
        - { cert: server.pem, key: server-key.pem }
  internet-plain:
    zone: internet
    listen: 127.0.0.1:0
    plaintext: true
routes:
  portal:
    zone: lgwan
    kind: proxy
    listeners: lgwan-https
    hosts: [portal.example.lg.jp, "*.lgwan.example.lg.jp"]
    path_prefix: /kintai/
    strip_prefix: true
    upstreams: [https://127.0.10.11:8443, "https://[::ffff:127.0.10.12]"]
    upstream_tls: { ca: ca.pem, server_name: portal.internal }
    upstream_http2: true
    access: policy
    policy: lgwan-staff
    client_certificate: request
    timeouts: { connect: 2s, response_header: 30s, idle: 5m }
  vb:
    zone: internet
    kind: screen_transfer
    listeners: [lgwan-https]
    hosts: vb.example.lg.jp
    upstreams: [http://127.0.20.20:8080]
    policy: managed-device
  status:
    zone: internet
    hosts: [status.example.lg.jp]
    upstreams: [http://127.0.20.13]
    access: public
    client_certificate: "off"
"#;
    assert_valid("every key", text);
    loads("every key", text, &base);
}

/// Each broken configuration is refused by the schema (in an editor, as the IT officer
/// types) and by the loader (`sekisho check`).
#[test]
fn broken_configurations_are_refused() {
    let pki = Pki::new(&[SITE]);
    let base = pki.dir.path().to_owned();
    let good = full_yaml(&pki, &route("    access: public\n"));
    assert_valid("the baseline", &good);
    loads("the baseline", &good, &base);
    let cases: Vec<(&str, String)> = vec![
        ("unknown root key", good.replacen("instance: test", "instance: test\nlisteners_extra: {}", 1)),
        ("misspelt key", good.replacen("admin:\n  listen:", "admin:\n  listne:", 1)),
        ("bad log format", good.replacen("instance: test", "instance: test\nlogging: { format: xml }", 1)),
        ("admin host name", good.replacen("listen: 127.0.0.1:0\npolicies", "listen: localhost:9900\npolicies", 1)),
        ("duration without unit", good.replacen("instance: test", "instance: test\nlimits: { drain_timeout: 30 }", 1)),
        ("zero duration", good.replacen("instance: test", "instance: test\nlimits: { header_read_timeout: 0s }", 1)),
        ("header limit too small", good.replacen("instance: test", "instance: test\nlimits: { max_header_bytes: 100 }", 1)),
        ("not a CIDR", good.replacen("allow: [127.0.20.0/24]", "allow: [127.0.20.0/33]", 1)),
        ("zone without egress", good.replacen("  internet:\n    description: インターネット接続系\n    egress:\n      allow: [127.0.20.0/24]\n", "  internet:\n    description: インターネット接続系\n", 1)),
        ("no routes", good.split("routes:").next().unwrap().to_owned()),
        ("route open by omission", good.replacen("    access: public\n", "", 1)),
        ("public and a policy", good.replacen("    access: public\n", "    access: public\n    policy: lgwan-staff\n", 1)),
        ("unknown route kind", good.replacen("    access: public\n", "    access: public\n    kind: tunnel\n", 1)),
        ("upstream with a path", good.replacen("http://127.0.10.90:8080", "http://127.0.10.90:8080/app", 1)),
        ("upstreams not a list", good.replacen("upstreams: [http://127.0.10.90:8080]", "upstreams: http://127.0.10.90:8080", 1)),
        ("plaintext and tls", good.replacen("    listen: 127.0.0.1:0\n    tls:", "    listen: 127.0.0.1:0\n    plaintext: true\n    tls:", 1)),
        ("listener without tls", good.replacen("internet-https:\n    zone: internet\n    listen: 127.0.0.1:0\n    tls:\n", "internet-https:\n    zone: internet\n    listen: 127.0.0.1:1\n    unused:\n", 1)),
        ("audit without dir", good.replacen("instance: test", "instance: test\naudit: { durability: strict }", 1)),
        ("bad durability", good.replacen("instance: test", "instance: test\naudit: { dir: audit, durability: fast }", 1)),
        ("identity without oidc or bearer", good.replacen("instance: test", "instance: test\nidentity: { claims: { subject: sub } }", 1)),
        ("unknown devices key", good.replacen("instance: test", "instance: test\ndevices: { trust: { ca_files: [ca.pem], crls: [] } }", 1)),
        ("unknown device_id source", good.replacen("instance: test", "instance: test\ndevices: { trust: { ca_files: [ca.pem], device_id: { from: mac_address } } }", 1)),
    ];
    let v = validator();
    for (what, text) in &cases {
        assert_ne!(text, &good, "{what}: the replacement did not apply");
        assert!(
            !v.is_valid(&yaml(text)),
            "{what}: the schema accepts it\n---\n{text}"
        );
        assert!(
            sekisho_gateway::config::from_str("test.yaml", text, &base).is_err(),
            "{what}: the loader accepts it\n---\n{text}"
        );
    }
}

/// Durations: the forms the loader reads are the forms the schema allows.
#[test]
fn duration_forms_agree_with_the_loader() {
    let pki = Pki::new(&[SITE]);
    let base = pki.dir.path().to_owned();
    for (value, ok) in [
        ("30s", true),
        ("15m", true),
        ("1h 30m", true),
        ("1h30m", true),
        ("7d", true),
        ("250ms", true),
        ("2 hours", true),
        ("0s", false),
        ("30", false),
        ("thirty seconds", false),
        ("-5s", false),
    ] {
        let text = full_yaml(&pki, &route("    access: public\n")).replacen(
            "instance: test",
            &format!("instance: test\nlimits: {{ drain_timeout: \"{value}\" }}"),
            1,
        );
        let schema_ok = schema_errors(&text).is_empty();
        let loader_ok = sekisho_gateway::config::from_str("test.yaml", &text, &base).is_ok();
        assert_eq!((schema_ok, loader_ok), (ok, ok), "drain_timeout: {value:?}");
    }
    for (value, ok) in [
        ("72h", true),
        ("15m", true),
        ("90 seconds", true),
        ("1h 30m", true),
        ("PT72H", true),
        ("7d", false),
        ("soon", false),
    ] {
        let text = full_yaml_with(
            &pki,
            &format!(
                "devices:\n  trust: {{ ca_files: [ca.pem] }}\n  posture: {{ inventory_max_age: \"{value}\" }}\n"
            ),
            &route("    access: public\n"),
        );
        let schema_ok = schema_errors(&text).is_empty();
        let loader_ok = sekisho_gateway::config::from_str("test.yaml", &text, &base).is_ok();
        assert_eq!(
            (schema_ok, loader_ok),
            (ok, ok),
            "devices.posture.inventory_max_age: {value:?}"
        );
    }
}

/// `identity.assertion.reuse` must leave a reused assertion time to live: at most half the
/// lifetime, or zero (one per request). Refused with where and how to fix.
#[test]
fn assertion_reuse_shorter_than_its_lifetime() {
    let pki = Pki::new(&[SITE]);
    let base = pki.dir.path().to_owned();
    for (assertion, ok) in [
        ("{ reuse: 0s }", true),
        ("{ reuse: 30s }", true),
        ("{ lifetime: 5m, reuse: 150s }", true),
        ("{ reuse: 31s }", false),
        ("{ lifetime: 5m, reuse: 4m }", false),
        ("{ lifetime: 10s, reuse: 30s }", false),
    ] {
        let text = full_yaml_with(
            &pki,
            &format!(
                "identity:\n  bearer: {{ issuer: https://idp.example, audiences: [sekisho], jwks_uri: https://idp.example/jwks }}\n  assertion: {assertion}\n"
            ),
            &route("    access: public\n"),
        );
        match sekisho_gateway::config::from_str("test.yaml", &text, &base) {
            Ok(c) if ok => {
                let a = &c.identity.as_ref().unwrap().assertion;
                assert!(a.reuse <= a.lifetime / 2, "{assertion}");
            }
            Ok(_) => panic!("{assertion}: accepted"),
            Err(e) if !ok => {
                let e = e.to_string();
                let line = text
                    .lines()
                    .position(|l| l.contains("assertion: {"))
                    .unwrap()
                    + 1;
                assert!(
                    e.contains(&format!("test.yaml:{line}:"))
                        && e.contains("identity.assertion.reuse")
                        && e.contains("at most half the assertion's `lifetime`")
                        && e.contains("hint"),
                    "{assertion}: {e}"
                );
            }
            Err(e) => panic!("{assertion}: {e}"),
        }
    }
    // Left out: half the lifetime.
    let text = full_yaml_with(
        &pki,
        "identity:\n  bearer: { issuer: https://idp.example, audiences: [sekisho], jwks_uri: https://idp.example/jwks }\n  assertion: { lifetime: 2m }\n",
        &route("    access: public\n"),
    );
    let c = sekisho_gateway::config::from_str("test.yaml", &text, &base).unwrap();
    assert_eq!(
        c.identity.unwrap().assertion.reuse,
        std::time::Duration::from_secs(60)
    );
}
