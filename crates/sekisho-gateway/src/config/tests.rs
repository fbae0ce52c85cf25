use super::*;

const ZONES: &str = r#"zones:
  lgwan:
    egress: { allow: [127.0.10.0/24], bind: 127.0.10.1 }
  internet:
    egress: { allow: [127.0.20.0/24] }
  mynumber:
    isolated: true
    egress: { allow: [127.0.30.0/24] }
listeners:
  lgwan-http:
    zone: lgwan
    listen: 127.0.0.1:18080
    plaintext: true
  internet-http:
    zone: internet
    listen: 127.0.0.1:18081
    plaintext: true
"#;

fn load(text: &str) -> Result<Config, Vec<Diagnostic>> {
    from_str("sekisho.yaml", text, FsPath::new(".")).map_err(|e| e.diagnostics)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    let diags = load(text).expect_err("the configuration should be refused");
    diags.into_iter().filter(Diagnostic::is_error).collect()
}

fn with_routes(routes: &str) -> String {
    format!("{ZONES}routes:\n{routes}")
}

#[test]
fn a_valid_configuration_loads() {
    let cfg = load(&with_routes(
        r#"  portal:
    zone: lgwan
    hosts: [portal.lgwan.localhost, "*.lgwan.localhost"]
    path_prefix: /app
    upstreams: [http://127.0.10.5:8080, http://127.0.10.6:8080]
    access: public
    timeouts: { connect: 2s, response_header: 30s }
"#,
    ))
    .unwrap();
    assert_eq!(cfg.routes.len(), 1);
    let r = &cfg.routes[0];
    assert_eq!(
        r.listeners,
        vec!["lgwan-http".to_owned()],
        "defaults to the zone's listeners"
    );
    assert_eq!(r.path_prefix, "/app");
    assert_eq!(r.upstreams.len(), 2);
    assert_eq!(r.timeouts.connect, Duration::from_secs(2));
    assert_eq!(cfg.version.len(), 12);
    assert_eq!(cfg.admin.listen.to_string(), "127.0.0.1:9900");
}

#[test]
fn every_error_is_reported_in_one_run_with_position_and_hint() {
    let text = format!(
        "{ZONES}routes:\n{}",
        r#"  portal:
    zone: lgwn
    hosts: [portal.lgwan.localhost]
    upstreams: [http://127.0.10.5:8080]
    acess: public
  groupware:
    zone: internet
    hosts: ["bad host"]
    upstreams: [ftp://127.0.20.5]
    access: public
    timeouts: { connect: 5 }
"#
    );
    let errs = errors(&text);
    let rendered: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let all = rendered.join("\n");
    // Unknown zone with a suggestion.
    let zone = errs
        .iter()
        .find(|d| d.message == "unknown zone `lgwn`")
        .expect(&all);
    assert_eq!((zone.line, zone.column), (20, 11), "{all}");
    assert_eq!(zone.path, "routes.portal.zone");
    assert_eq!(zone.hint.as_deref(), Some("did you mean `lgwan`?"));
    // Misspelt key.
    let key = errs
        .iter()
        .find(|d| d.message == "unknown key `acess`")
        .expect(&all);
    assert_eq!(key.line, 23);
    assert_eq!(key.hint.as_deref(), Some("did you mean `access`?"));
    // The route without access is also named (nothing is open by omission).
    assert!(
        all.contains("route `portal` says nothing about access"),
        "{all}"
    );
    // The second route's three problems are reported too.
    assert!(all.contains("`bad host` is not a host name"), "{all}");
    assert!(all.contains("scheme `ftp` is not supported"), "{all}");
    assert!(all.contains("routes.groupware.timeouts.connect"), "{all}");
    assert!(all.contains("a duration needs a unit"), "{all}");
    assert!(errs.len() >= 6, "{all}");
    // The Display form starts with file:line:column.
    assert!(
        rendered
            .iter()
            .any(|r| r
                .starts_with("error: sekisho.yaml:20:11: routes.portal.zone: unknown zone `lgwn`")),
        "{all}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let text = with_routes(
        r#"  portal:
    zone: lgwan
    hosts: [a.localhost]
    upstreams: [http://127.0.10.5:8080]
    access: public
  portal:
    zone: lgwan
    hosts: [b.localhost]
    upstreams: [http://127.0.10.6:8080]
    access: public
"#,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.contains("duplicate key `portal`"),
        "{}",
        errs[0]
    );
    assert_eq!(errs[0].line, 24);
}

#[test]
fn a_plain_route_may_not_cross_zones_and_the_error_names_everything() {
    let errs = errors(&with_routes(
        r#"  groupware:
    zone: internet
    listeners: [lgwan-http]
    hosts: [groupware.localhost]
    upstreams: [http://127.0.20.5:8080]
    access: public
"#,
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    let m = &errs[0].message;
    for part in [
        "`groupware`",
        "`internet`",
        "`lgwan-http`",
        "`lgwan`",
        "may not cross",
    ] {
        assert!(m.contains(part), "{part} missing in: {m}");
    }
    assert!(errs[0].hint.as_deref().unwrap().contains("screen_transfer"));
}

#[test]
fn screen_transfer_may_cross() {
    let cfg = load(&with_routes(
        r#"  vdi:
    zone: internet
    kind: screen_transfer
    listeners: [lgwan-http]
    hosts: [vdi.localhost]
    upstreams: [http://127.0.20.9:8080]
    access: public
"#,
    ))
    .unwrap();
    assert_eq!(cfg.routes[0].kind, RouteKind::ScreenTransfer);
}

#[test]
fn upstreams_must_lie_in_their_zone_and_never_in_an_isolated_one() {
    let errs = errors(&with_routes(
        r#"  wrong-side:
    zone: lgwan
    hosts: [a.localhost]
    upstreams: [http://127.0.20.5:8080]
    access: public
  mynumber:
    zone: lgwan
    hosts: [b.localhost]
    upstreams: [http://127.0.30.5:8080]
    access: public
  outside:
    zone: lgwan
    hosts: [c.localhost]
    upstreams: ["http://[::1]:8080"]
    access: public
"#,
    ));
    let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let all = all.join("\n");
    assert!(all.contains("route `wrong-side` is in zone `lgwan`, but upstream 127.0.20.5 belongs to zone `internet`"), "{all}");
    assert!(
        all.contains("route `mynumber` points at 127.0.30.5, inside isolated zone `mynumber`"),
        "{all}"
    );
    assert!(
        all.contains("upstream ::1 is outside zone `lgwan`'s `egress.allow` networks"),
        "{all}"
    );
    assert_eq!(errs.len(), 3);
}

#[test]
fn overlapping_zones_are_refused() {
    let text = r#"zones:
  lgwan:
    egress: { allow: [127.0.10.0/24] }
  internet:
    egress: { allow: [127.0.0.0/8] }
listeners:
  l:
    zone: lgwan
    listen: 127.0.0.1:18080
    plaintext: true
routes: {}
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("zones `internet` and `lgwan` overlap: 127.0.0.0/8 (in `internet`) and 127.0.10.0/24 (in `lgwan`)"), "{}", errs[0]);
}

#[test]
fn public_routes_cannot_weaken_a_zone_floor() {
    let text = ZONES.replace(
        "  lgwan:\n    egress: { allow: [127.0.10.0/24], bind: 127.0.10.1 }\n",
        "  lgwan:\n    require: lgwan-floor\n    egress: { allow: [127.0.10.0/24], bind: 127.0.10.1 }\n",
    );
    let errs = errors(&format!(
        "{text}routes:\n  portal:\n    zone: lgwan\n    hosts: [a.localhost]\n    upstreams: [http://127.0.10.5:1]\n    access: public\n"
    ));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("requires policy `lgwan-floor`")),
        "{errs:?}"
    );
}

#[test]
fn listeners_need_tls_unless_explicitly_plaintext() {
    let text = r#"zones:
  lgwan:
    egress: { allow: [127.0.10.0/24] }
listeners:
  l:
    zone: lgwan
    listen: 127.0.0.1:18080
routes: {}
"#;
    let errs = errors(text);
    assert!(
        errs[0].message.contains("has no `tls` section"),
        "{}",
        errs[0]
    );
    assert!(errs[0].hint.as_deref().unwrap().contains("plaintext: true"));
}

#[test]
fn missing_files_and_bad_values_are_named() {
    let text = r#"admin: { listen: "localhost:9900" }
logging: { format: yaml }
zones:
  lgwan:
    egress: { allow: [127.0.10.0/33] }
listeners:
  l:
    zone: lgwan
    listen: 127.0.0.1:18443
    tls:
      certificates:
        - { cert: /nonexistent/server.pem, key: /nonexistent/key.pem }
routes: {}
"#;
    let all: Vec<String> = errors(text).iter().map(ToString::to_string).collect();
    let all = all.join("\n");
    assert!(
        all.contains("admin.listen: `localhost:9900` is not an IP address with a port"),
        "{all}"
    );
    assert!(
        all.contains("logging.format: `yaml` is not allowed here"),
        "{all}"
    );
    assert!(
        all.contains("`127.0.10.0/33` is not an IP network"),
        "{all}"
    );
    assert!(
        all.contains("file `/nonexistent/server.pem` does not exist"),
        "{all}"
    );
    assert!(
        all.contains("file `/nonexistent/key.pem` does not exist"),
        "{all}"
    );
}

#[test]
fn an_empty_file_says_where_to_start() {
    let errs = errors("# nothing yet\n");
    assert!(errs[0].message.contains("empty"), "{}", errs[0]);
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    // config/sekisho.yaml refers to certificates made by `sekisho certs init`; the YAML
    // itself must be free of errors apart from those files.
    let path = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sekisho.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let result = from_str("config/sekisho.yaml", &text, path.parent().unwrap());
    if let Err(e) = result {
        let other: Vec<&Diagnostic> = e
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && !d.message.contains("does not exist"))
            .collect();
        assert!(other.is_empty(), "{other:#?}");
    }
}

#[test]
fn policies_naming_unknown_zones_are_refused_at_the_policy_file_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "policies:\n  staff:\n    allow:\n      - groups: [staff]\n        zone: lgwn\n",
    )
    .unwrap();
    let text = format!(
        "policies: [p.yaml]\n{}routes:\n  portal:\n    zone: lgwan\n    hosts: [a.localhost]\n    upstreams: [http://127.0.10.5:1]\n    policy: staff\n",
        ZONES
    );
    let errs = from_str("sekisho.yaml", &text, dir.path())
        .unwrap_err()
        .diagnostics;
    let e = errs
        .iter()
        .find(|d| d.message.contains("zone `lgwn`"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert!(e.file.ends_with("p.yaml"), "{e}");
    assert!(e.line > 0, "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `lgwan`?"));
}
