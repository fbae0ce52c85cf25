//! Certificate → device ID: `parse_cert` over arbitrary DER never panics, and `device_id`
//! only ever returns IDs that `valid_device_id` accepts, whatever the certificate says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sekisho_posture::identity::{DeviceIdSource, device_id, parse_cert, valid_device_id};

fuzz_target!(|data: &[u8]| {
    let Ok(facts) = parse_cert(data) else { return };
    assert_eq!(facts.fingerprint_sha256.len(), 64);
    for source in [
        DeviceIdSource::SanUri { prefix: "urn:sekisho:device:".into() },
        DeviceIdSource::SanUri { prefix: String::new() },
        DeviceIdSource::SanDns { suffix: Some(".devices.city.example.jp".into()) },
        DeviceIdSource::SanDns { suffix: None },
        DeviceIdSource::SubjectCn,
        DeviceIdSource::Serial,
    ] {
        if let Ok(id) = device_id(&facts, &source) {
            assert!(valid_device_id(&id), "{source:?} gave {id:?}");
            assert!(!id.contains(['/', '\\', ' ', '\0', '\n']), "{id:?}");
        }
    }
});
