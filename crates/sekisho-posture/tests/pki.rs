//! `certs init / issue-device / revoke` as library calls, checked with the real verifier.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sekisho_posture::pki::{self, InitOptions, IssueOptions, RevokeTarget};
use sekisho_posture::{DeviceTrust, DeviceTrustConfig};

fn now() -> Timestamp {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

fn trust_for(dir: &Path) -> DeviceTrust {
    let mut cfg = DeviceTrustConfig::new(vec![dir.join(pki::DEVICE_CA_CERT)]);
    cfg.crl_files = vec![dir.join(pki::DEVICE_CA_CRL)];
    DeviceTrust::load(cfg).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_issue_revoke_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let report = pki::init(dir, &InitOptions::new(now())).unwrap();
    for key in [pki::DEVICE_CA_KEY, pki::SERVER_CA_KEY, pki::SERVER_KEY] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        assert!(report.files.contains(&dir.join(key)));
    }
    // The server certificate covers the demo hosts.
    let server = CertificateDer::pem_file_iter(dir.join(pki::SERVER_CERT))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(&server).unwrap();
    let names = &x
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    let dns: Vec<&str> = names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(*d),
            _ => None,
        })
        .collect();
    for host in [
        "portal.lgwan.localhost",
        "groupware.localhost",
        "*.localhost",
        "localhost",
    ] {
        assert!(dns.contains(&host), "{host} in {dns:?}");
    }
    assert!(names.iter().any(|n| matches!(n, x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1])));
    // A second init must not silently replace the CA.
    assert!(
        pki::init(dir, &InitOptions::new(now()))
            .unwrap_err()
            .to_string()
            .contains("--force")
    );

    let opts = IssueOptions::new(now(), "correct horse".into());
    let issued = pki::issue_device(dir, "PC-0042", &opts).unwrap();
    assert_eq!(mode(&issued.key_path), 0o600);
    assert_eq!(mode(&issued.p12_path), 0o600);
    assert_eq!(
        issued.not_after - issued.not_before,
        SignedDuration::from_hours(365 * 24)
    );

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&issued.cert_path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let trust = trust_for(dir);
    let dev = trust.check(&chain[..1], now()).unwrap();
    assert_eq!(dev.id(), "PC-0042");
    assert_eq!(dev.serial_hex(), issued.serial_hex);

    // The PKCS#12 bundle opens with its password and holds the key and the chain.
    let p12 = std::fs::read(&issued.p12_path).unwrap();
    let ks = p12_keystore::KeyStore::from_pkcs12(
        &p12,
        "correct horse",
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .unwrap();
    let (_, kc) = ks.private_key_chain().expect("key chain");
    assert_eq!(kc.certs()[0].as_der(), chain[0].as_ref());
    assert!(
        p12_keystore::KeyStore::from_pkcs12(
            &p12,
            "wrong",
            p12_keystore::Pkcs12ImportPolicy::Strict
        )
        .is_err()
    );

    // Revoke by device ID; the CRL is rewritten and a reload makes the check fail.
    let revoked = pki::revoke(dir, &RevokeTarget::DeviceId("PC-0042".into()), now()).unwrap();
    assert_eq!(revoked, vec![issued.serial_hex.clone()]);
    trust.reload().unwrap();
    assert_eq!(
        trust.check(&chain[..1], now()).unwrap_err().code(),
        "device_cert_revoked"
    );
    assert!(trust.is_revoked(&issued.serial_hex.to_uppercase()));

    // Revoking again is a no-op; an unknown ID is an error; a serial works with colons.
    assert!(
        pki::revoke(dir, &RevokeTarget::DeviceId("PC-0042".into()), now())
            .unwrap()
            .is_empty()
    );
    assert!(pki::revoke(dir, &RevokeTarget::DeviceId("PC-404".into()), now()).is_err());
    let other = pki::issue_device(dir, "PC-0043", &opts).unwrap();
    let colon: String = other
        .serial_hex
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(
        pki::revoke(dir, &RevokeTarget::Serial(colon), now()).unwrap(),
        vec![other.serial_hex.clone()]
    );
    trust.reload().unwrap();
    assert!(trust.is_revoked(&other.serial_hex));
    let index = pki::load_index(dir).unwrap();
    assert_eq!(index.devices.len(), 2);
    assert!(index.crl_number >= 4);
}

#[test]
fn issue_with_explicit_dates_and_refuse_bad_ids() {
    let tmp = tempfile::tempdir().unwrap();
    pki::init(tmp.path(), &InitOptions::new(now())).unwrap();
    let mut opts = IssueOptions::new(now(), "pw".into());
    opts.not_before = Some(now() - SignedDuration::from_hours(48));
    opts.not_after = Some(now() - SignedDuration::from_hours(24));
    let expired = pki::issue_device(tmp.path(), "PC-OLD", &opts).unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&expired.cert_path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        trust_for(tmp.path())
            .check(&chain[..1], now())
            .unwrap_err()
            .code(),
        "device_cert_expired"
    );

    let opts = IssueOptions::new(now(), "pw".into());
    assert!(pki::issue_device(tmp.path(), "PC 42", &opts).is_err());
    assert!(pki::issue_device(tmp.path(), "../../etc/passwd", &opts).is_err());
}

#[test]
fn issue_without_init_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err =
        pki::issue_device(tmp.path(), "PC-1", &IssueOptions::new(now(), "pw".into())).unwrap_err();
    assert!(err.to_string().contains("device-ca.pem"), "{err}");
}
