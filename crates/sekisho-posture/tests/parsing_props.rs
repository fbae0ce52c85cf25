//! SAN / certificate parsing never panics, whatever the bytes.

use jiff::Timestamp;
use proptest::prelude::*;
use sekisho_posture::identity::{DeviceIdSource, device_id, normalize_serial_text, parse_cert};
use sekisho_posture::testkit::TestPki;

fn sample_cert() -> Vec<u8> {
    static CERT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let pki = TestPki::at("2026-11-23T00:00:00Z".parse::<Timestamp>().unwrap());
        pki.device("PC-0042").cert.cert_der.to_vec()
    })
    .clone()
}

fn all_sources() -> [DeviceIdSource; 4] {
    [
        DeviceIdSource::default(),
        DeviceIdSource::SanDns {
            suffix: Some(".devices.example".into()),
        },
        DeviceIdSource::SubjectCn,
        DeviceIdSource::Serial,
    ]
}

proptest! {
    #[test]
    fn garbage_der_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(facts) = parse_cert(&bytes) {
            for s in all_sources() {
                let _ = device_id(&facts, &s);
            }
        }
    }

    #[test]
    fn mutated_certificate_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut der = sample_cert();
        for (i, b) in edits {
            let n = der.len();
            der[i % n] = b;
        }
        let keep = cut % (der.len() + 1);
        der.truncate(keep.max(1));
        if let Ok(facts) = parse_cert(&der) {
            for s in all_sources() {
                if let Ok(id) = device_id(&facts, &s) {
                    prop_assert!(sekisho_posture::identity::valid_device_id(&id));
                }
            }
        }
    }

    #[test]
    fn serial_text_never_panics(s in ".{0,64}") {
        let _ = normalize_serial_text(&s);
    }
}

#[test]
fn sample_parses_with_default_source() {
    let facts = parse_cert(&sample_cert()).unwrap();
    assert_eq!(
        device_id(&facts, &DeviceIdSource::default()).unwrap(),
        "PC-0042"
    );
    assert_eq!(
        device_id(&facts, &DeviceIdSource::SubjectCn).unwrap(),
        "PC-0042"
    );
    assert_eq!(
        device_id(&facts, &DeviceIdSource::Serial).unwrap(),
        facts.serial_hex
    );
    assert_eq!(
        device_id(
            &facts,
            &DeviceIdSource::SanUri {
                prefix: "urn:other:".into()
            }
        )
        .unwrap_err()
        .code(),
        "device_cert_no_device_id"
    );
}
