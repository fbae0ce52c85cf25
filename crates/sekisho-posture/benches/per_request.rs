//! What the gateway pays per request: certificate check (chain + CRL + ID) and posture merge.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use sekisho_posture::inventory::InventoryStore;
use sekisho_posture::testkit::{AssertionSigner, TestPki};
use sekisho_posture::{DevicePosture, DeviceTrust, PostureConfig};

fn per_request(c: &mut Criterion) {
    let now: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
    let pki = TestPki::at(now);
    // A CRL with some entries, as in real life.
    for i in 0..200 {
        pki.revoke(&pki.device(&format!("OLD-{i}")));
    }
    let inv = pki.dir().join("devices.csv");
    let mut csv = String::from("device_id,managed,compliant,last_check_in\n");
    for i in 0..2000 {
        csv.push_str(&format!("PC-{i:04},true,true,2026-11-22T23:00:00Z\n"));
    }
    std::fs::write(&inv, csv).unwrap();
    let trust = Arc::new(DeviceTrust::load(pki.trust_config()).unwrap());
    let dev = pki.device("PC-0042");
    let chain = dev.chain();
    let signer = AssertionSigner::new(None);
    let verifier = sekisho_posture::assertion::AssertionVerifier::new(
        &serde_saphyr::from_str("keys: []").unwrap(),
        vec![signer.verifier_key()],
    )
    .unwrap();
    let posture = DevicePosture::new(
        trust.clone(),
        Arc::new(InventoryStore::load(vec![inv]).unwrap()),
        Some(verifier),
        PostureConfig::default(),
    );
    let token = signer.assertion(&dev, now, serde_json::json!({"compliant": true}));

    c.bench_function("trust_check", |b| {
        b.iter(|| trust.check(black_box(&chain), now).unwrap())
    });
    let first = trust.check(&chain, now).unwrap();
    c.bench_function("trust_check_memo_hit", |b| {
        b.iter(|| {
            trust
                .check_memo(black_box(&chain), Some(&first), now)
                .unwrap()
        })
    });
    c.bench_function("evaluate_memo_inventory_only", |b| {
        b.iter(|| posture.evaluate_memo(Some(black_box(&chain)), Some(&first), None, now))
    });
    c.bench_function("evaluate_inventory_only", |b| {
        b.iter(|| posture.evaluate(Some(black_box(&chain)), None, now))
    });
    c.bench_function("evaluate_with_assertion", |b| {
        b.iter(|| posture.evaluate(Some(black_box(&chain)), Some(&token), now))
    });
}

criterion_group!(benches, per_request);
criterion_main!(benches);
