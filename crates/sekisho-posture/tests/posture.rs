//! Posture sources: inventory (YAML/CSV, reload), signed assertions (binding, algorithms,
//! age) and their merge, through the same per-request call the gateway makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use rustls_pki_types::CertificateDer;
use sekisho_posture::assertion::{AssertionConfig, AssertionVerifier};
use sekisho_posture::inventory::{Inventory, InventoryStore, Ownership};
use sekisho_posture::posture::UnknownWhy;
use sekisho_posture::testkit::{AssertionSigner, TestDevice, TestPki};
use sekisho_posture::{
    DeviceOutcome, DevicePosture, DeviceTrust, DeviceView, Fact, FactSource, PostureConfig,
};
use serde_json::json;

fn now() -> Timestamp {
    "2026-11-23T09:00:00+09:00".parse().unwrap()
}

fn inventory_yaml(compliant: bool, last_check_in: Timestamp) -> String {
    format!(
        r#"source: Intune export
devices:
  - device_id: PC-0042
    managed: true
    ownership: corporate
    owner: tanaka@city.example.lg.jp
    os: windows
    os_version: "11.24H2"
    disk_encryption: true
    screen_lock: true
    firewall: true
    antivirus: true
    edr: true
    compliant: {compliant}
    last_check_in: {last_check_in}
    tags: [lgwan, finance]
  - device_id: PHONE-7
    managed: false
    ownership: byod
    owner: suzuki@city.example.lg.jp
    os: ios
    last_check_in: {last_check_in}
"#
    )
}

fn assertion_config() -> AssertionConfig {
    serde_saphyr::from_str("keys: []").unwrap()
}

struct Fixture {
    pki: TestPki,
    signer: AssertionSigner,
    inventory_path: PathBuf,
    posture: DevicePosture,
}

fn fixture(inventory: &str) -> Fixture {
    let pki = TestPki::at(now());
    let inventory_path = pki.dir().join("devices.yaml");
    std::fs::write(&inventory_path, inventory).unwrap();
    let trust = Arc::new(DeviceTrust::load(pki.trust_config()).unwrap());
    let store = Arc::new(InventoryStore::load(vec![inventory_path.clone()]).unwrap());
    let signer = AssertionSigner::new(Some("mdm-1"));
    let verifier =
        AssertionVerifier::new(&assertion_config(), vec![signer.verifier_key()]).unwrap();
    let posture = DevicePosture::new(trust, store, Some(verifier), PostureConfig::default());
    Fixture {
        pki,
        signer,
        inventory_path,
        posture,
    }
}

fn view(outcome: DeviceOutcome) -> DeviceView {
    match outcome {
        DeviceOutcome::Verified(v) => *v,
        other => panic!("expected a verified device, got {other:?}"),
    }
}

fn chain(d: &TestDevice) -> Vec<CertificateDer<'static>> {
    d.chain()
}

#[test]
fn fresh_inventory_facts_are_known_with_source_and_age() {
    let f = fixture(&inventory_yaml(true, now() - SignedDuration::from_hours(2)));
    let dev = f.pki.device("PC-0042");
    let v = view(f.posture.evaluate(Some(&chain(&dev)), None, now()));
    assert_eq!(v.device.id(), "PC-0042");
    assert!(v.posture.compliant.is_true());
    assert_eq!(v.posture.ownership.known(), Some(&Ownership::Corporate));
    assert_eq!(
        v.posture.tags.known().unwrap(),
        &vec!["lgwan".to_owned(), "finance".to_owned()]
    );
    match &v.posture.disk_encryption {
        Fact::Known {
            value: true,
            source: FactSource::Inventory,
            observed_at,
        } => {
            assert_eq!(*observed_at, now() - SignedDuration::from_hours(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stale_inventory_gives_unknown_not_allow() {
    let checked_in = now() - SignedDuration::from_hours(24 * 10);
    let f = fixture(&inventory_yaml(true, checked_in));
    let dev = f.pki.device("PC-0042");
    let v = view(f.posture.evaluate(Some(&chain(&dev)), None, now()));
    assert!(!v.posture.compliant.is_true());
    assert!(
        matches!(&v.posture.compliant, Fact::Unknown { why: UnknownWhy::Stale { observed_at, .. } } if *observed_at == checked_in)
    );
    assert!(!v.posture.managed.is_known());
    // The check-in time itself stays known so policy can say "seen within 7 days".
    assert_eq!(v.posture.last_check_in.known(), Some(&checked_in));
}

#[test]
fn device_missing_from_inventory_is_unknown() {
    let f = fixture(&inventory_yaml(true, now()));
    let dev = f.pki.device("PC-9999");
    let v = view(f.posture.evaluate(Some(&chain(&dev)), None, now()));
    assert!(!v.posture.in_inventory);
    assert!(matches!(
        v.posture.managed,
        Fact::Unknown {
            why: UnknownWhy::NotReported
        }
    ));
}

#[test]
fn inventory_reload_is_seen_on_the_next_check_and_broken_file_keeps_old() {
    let f = fixture(&inventory_yaml(true, now() - SignedDuration::from_hours(1)));
    let dev = f.pki.device("PC-0042");
    assert!(
        view(f.posture.evaluate(Some(&chain(&dev)), None, now()))
            .posture
            .compliant
            .is_true()
    );

    let mut changes = f.posture.inventory().subscribe();
    std::fs::write(
        &f.inventory_path,
        inventory_yaml(false, now() - SignedDuration::from_mins(5)),
    )
    .unwrap();
    assert_eq!(f.posture.inventory().reload().unwrap(), 2);
    assert!(
        changes.has_changed().unwrap(),
        "long-lived connections are told to re-evaluate"
    );
    changes.borrow_and_update();
    let v = view(f.posture.evaluate(Some(&chain(&dev)), None, now()));
    assert_eq!(v.posture.compliant.known(), Some(&false));

    // A broken export (bad ownership) is refused with file:line, and the last good one stays.
    std::fs::write(
        &f.inventory_path,
        inventory_yaml(true, now()).replace("ownership: byod", "ownership: borrowed"),
    )
    .unwrap();
    let err = f.posture.inventory().reload().unwrap_err();
    assert!(
        !changes.has_changed().unwrap(),
        "a failed reload changes nothing"
    );
    let text = err.to_string();
    assert!(text.contains("devices.yaml:17"), "{text}");
    assert!(text.contains("borrowed"), "{text}");
    let v = view(f.posture.evaluate(Some(&chain(&dev)), None, now()));
    assert_eq!(v.posture.compliant.known(), Some(&false));
}

#[test]
fn signed_assertion_adds_fresh_health_facts_but_not_registration_facts() {
    let f = fixture(&inventory_yaml(
        false,
        now() - SignedDuration::from_hours(30),
    ));
    let dev = f.pki.device("PC-0042");
    let token = f.signer.assertion(
        &dev,
        now() - SignedDuration::from_mins(1),
        json!({"compliant": true, "os_version": "11.24H2.1", "managed": true}),
    );
    let v = view(f.posture.evaluate(Some(&chain(&dev)), Some(&token), now()));
    assert_eq!(v.assertion_error, None);
    assert!(matches!(
        v.posture.compliant,
        Fact::Known {
            value: true,
            source: FactSource::Assertion,
            ..
        }
    ));
    assert_eq!(
        v.posture.os_version.known().map(String::as_str),
        Some("11.24H2.1")
    );
    // Facts the assertion does not carry still come from the inventory.
    assert!(matches!(
        v.posture.firewall,
        Fact::Known {
            source: FactSource::Inventory,
            ..
        }
    ));
    assert_eq!(v.posture.managed.known(), Some(&true));
    assert!(matches!(
        v.posture.managed,
        Fact::Known {
            source: FactSource::Inventory,
            ..
        }
    ));
}

#[test]
fn assertion_replayed_with_another_devices_certificate_is_refused() {
    let f = fixture(&inventory_yaml(false, now()));
    let a = f.pki.device("PC-0042");
    let b = f.pki.device("PC-0043");
    let token = f.signer.assertion(&a, now(), json!({"compliant": true}));
    // Stolen token presented on B's connection, with and without B's ID as subject.
    let v = view(f.posture.evaluate(Some(&chain(&b)), Some(&token), now()));
    assert_eq!(
        v.assertion_error.as_ref().map(|e| e.code()),
        Some("posture_assertion_wrong_device")
    );
    assert!(!matches!(
        v.posture.compliant,
        Fact::Known {
            source: FactSource::Assertion,
            ..
        }
    ));
    let relabelled = f.signer.sign(&json!({
        "sub": "PC-0043", "iat": now().as_second(), "cnf": {"x5t#S256": a.x5t_s256()}, "posture": {"compliant": true}
    }));
    let v = view(
        f.posture
            .evaluate(Some(&chain(&b)), Some(&relabelled), now()),
    );
    assert_eq!(
        v.assertion_error.as_ref().map(|e| e.code()),
        Some("posture_assertion_wrong_device")
    );
}

#[test]
fn hostile_and_stale_assertions_are_refused() {
    let f = fixture(&inventory_yaml(false, now()));
    let dev = f.pki.device("PC-0042");
    let claims = json!({"iat": now().as_second(), "cnf": {"x5t#S256": dev.x5t_s256()}, "posture": {"compliant": true}});
    let cases = [
        (
            AssertionSigner::unsigned(&claims),
            "posture_assertion_malformed",
        ),
        (
            f.signer.hmac_with_public_key(&claims),
            "posture_assertion_bad_algorithm",
        ),
        (
            AssertionSigner::new(Some("mdm-1")).sign(&claims),
            "posture_assertion_bad_signature",
        ),
        (
            AssertionSigner::new(Some("other")).sign(&claims),
            "posture_assertion_unknown_key",
        ),
        (
            f.signer
                .sign(&json!({"iat": now().as_second(), "posture": {"compliant": true}})),
            "posture_assertion_not_bound",
        ),
        (
            f.signer.assertion(
                &dev,
                now() - SignedDuration::from_mins(16),
                json!({"compliant": true}),
            ),
            "posture_assertion_stale",
        ),
        (
            f.signer.assertion(
                &dev,
                now() + SignedDuration::from_mins(10),
                json!({"compliant": true}),
            ),
            "posture_assertion_outside_validity",
        ),
        ("not a jwt".to_owned(), "posture_assertion_malformed"),
    ];
    for (token, code) in cases {
        let v = view(f.posture.evaluate(Some(&chain(&dev)), Some(&token), now()));
        assert_eq!(
            v.assertion_error.as_ref().map(|e| e.code()),
            Some(code),
            "token {token}"
        );
        assert_eq!(
            v.posture.compliant.known(),
            Some(&false),
            "refused assertion must not change posture"
        );
    }
}

#[test]
fn rejected_certificate_gets_no_posture() {
    let f = fixture(&inventory_yaml(true, now()));
    let dev = f.pki.expired("PC-0042");
    match f.posture.evaluate(Some(&chain(&dev)), None, now()) {
        DeviceOutcome::Rejected(e) => assert_eq!(e.code(), "device_cert_expired"),
        other => panic!("{other:?}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn csv_inventory_loads_with_bom_and_reports_every_error_with_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "pcs.csv",
        "\u{feff}device_id,managed,ownership,owner,os,os_version,disk_encryption,compliant,last_check_in,tags\n\
         PC-0001,true,corporate,sato@city.example.lg.jp,windows,11.24H2,yes,true,2026-11-22T18:00:00+09:00,lgwan;finance\n\
         PC-0002,true,corporate,,windows,10.22H2,no,false,2026-11-01T09:00:00Z,\n",
    );
    let inv = Inventory::load(std::slice::from_ref(&good)).unwrap();
    assert_eq!(inv.len(), 2);
    let r = inv.get("PC-0001").unwrap();
    assert_eq!(r.disk_encryption, Some(true));
    assert_eq!(r.tags, vec!["lgwan", "finance"]);
    assert_eq!(inv.get("PC-0002").unwrap().owner, None);

    let bad = write(
        dir.path(),
        "bad.csv",
        "device_id,managed,ownership,last_check_in\n\
         PC-0001,true,corporate,2026-11-22T18:00:00+09:00\n\
         PC-0002,maybe,corporate,2026-11-22T18:00:00+09:00\n\
         PC 3,true,rented,yesterday\n",
    );
    let err = Inventory::load(&[bad]).unwrap_err();
    let lines: Vec<String> = err.issues.iter().map(ToString::to_string).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.csv:3") && l.contains("maybe")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.csv:4") && l.contains("rented")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.csv:4") && l.contains("yesterday")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.csv:4") && l.contains("device_id")),
        "{lines:#?}"
    );
}

#[test]
fn yaml_inventory_rejects_unknown_keys_and_duplicates_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write(
        dir.path(),
        "typo.yaml",
        "devices:\n  - device_id: PC-1\n    complaint: true\n",
    );
    let err = Inventory::load(&[typo]).unwrap_err().to_string();
    assert!(err.contains("typo.yaml:3"), "{err}");
    let a = write(dir.path(), "a.yaml", "devices:\n  - device_id: PC-1\n");
    let b = write(dir.path(), "b.csv", "device_id\nPC-1\n");
    let err = Inventory::load(&[a, b]).unwrap_err().to_string();
    assert!(
        err.contains("listed twice") && err.contains("a.yaml:2"),
        "{err}"
    );
    let other = write(dir.path(), "inv.json", "{}");
    assert!(
        Inventory::load(&[other])
            .unwrap_err()
            .to_string()
            .contains("unknown inventory format")
    );
}

/// The example inventories shipped in config/ load, and the stale examples come out unknown.
#[test]
fn example_inventories_in_config_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let files = vec![root.join("devices.yaml"), root.join("devices.csv")];
    let inv = Inventory::load(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.len(), 10);
    let at: Timestamp = "2026-11-23T09:00:00+09:00".parse().unwrap();
    let cfg = PostureConfig::default();
    let p = |id: &str| sekisho_posture::posture::merge_posture(id, inv.get(id), None, &cfg, at);
    assert!(p("PC-0042").compliant.is_true());
    assert_eq!(p("PC-0043").compliant.known(), Some(&false));
    assert_eq!(
        p("BYOD-IPHONE-0007").ownership.known(),
        Some(&Ownership::Byod)
    );
    assert_eq!(
        p("BYOD-ANDROID-0011").disk_encryption,
        Fact::Unknown {
            why: UnknownWhy::NotReported
        }
    );
    for stale in ["PC-0019", "PC-0150"] {
        assert!(
            matches!(
                p(stale).compliant,
                Fact::Unknown {
                    why: UnknownWhy::Stale { .. }
                }
            ),
            "{stale}"
        );
    }
}

/// The `devices:` configuration section parses with defaults and human durations.
#[test]
fn devices_config_parses_with_defaults() {
    let cfg: sekisho_posture::DevicesConfig = serde_saphyr::from_str(
        r#"
trust:
  ca_files: [/etc/sekisho/device-ca.pem]
  crl_files: [/etc/sekisho/device-ca.crl.pem]
inventory_files: [config/devices.yaml, config/devices.csv]
assertions:
  keys:
    - kid: mdm-1
      public_key_file: /etc/sekisho/mdm-1.pub.pem
      issuer: intune-bridge
  max_age: 10m
posture:
  inventory_max_age: 48h
"#,
    )
    .unwrap();
    assert_eq!(
        cfg.trust.device_id,
        sekisho_posture::DeviceIdSource::default()
    );
    assert!(!cfg.trust.allow_unknown_revocation_status);
    let a = cfg.assertions.unwrap();
    assert_eq!(a.header, "Sekisho-Device-Posture");
    assert_eq!(a.max_age, SignedDuration::from_mins(10));
    assert_eq!(a.leeway, SignedDuration::from_secs(60));
    assert_eq!(
        cfg.posture.inventory_max_age,
        SignedDuration::from_hours(48)
    );
    assert_eq!(cfg.posture.assertion_max_age, SignedDuration::from_mins(15));
    let other: sekisho_posture::DevicesConfig =
        serde_saphyr::from_str("trust:\n  ca_files: [a.pem]\n  device_id: { from: san_dns, suffix: .devices.city.lg.jp }\n").unwrap();
    assert_eq!(
        other.trust.device_id,
        sekisho_posture::DeviceIdSource::SanDns {
            suffix: Some(".devices.city.lg.jp".into())
        }
    );
    assert!(
        serde_saphyr::from_str::<sekisho_posture::DevicesConfig>(
            "trust:\n  ca_files: [a.pem]\n  crl: [b]\n"
        )
        .is_err()
    );
}
