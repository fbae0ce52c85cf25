//! Evaluation allocates nothing: every outcome of the realistic 20-rule policy is
//! decided under a counting global allocator (`stats_alloc`, a test-only crate; our
//! own crates forbid `unsafe`, which implementing `GlobalAlloc` needs).
//!
//! One test function only: the counter is process-wide, and other tests running in
//! parallel threads would be counted too.

use std::alloc::System;
use std::net::IpAddr;

use jiff::Timestamp;
use sekisho_policy::{
    Certificate, Device, Fact, Identity, Input, Outcome, Ownership, PolicySet, Request, Target,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn evaluation_does_not_allocate() {
    let (set, _) =
        PolicySet::compile(&[("realistic.yaml", include_str!("../benches/realistic.yaml"))])
            .unwrap_or_else(|d| panic!("{}", sekisho_yaml::render_all(&d)));
    let target = Target::with_floor(set.lookup("floor").unwrap(), set.lookup("app").unwrap());
    let now: Timestamp = "2026-04-14T10:00:00+09:00".parse().unwrap();
    let mut id = Identity {
        sub: "tanaka".into(),
        email: Some("tanaka@city.example.lg.jp".into()),
        groups: vec!["staff".into(), "library".into()],
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: Some("2026-04-14T09:00:00+09:00".parse().unwrap()),
        ..Identity::default()
    };
    id.claims
        .insert("department".into(), serde_json::json!("図書館"));
    let dev = Device {
        certificate: Certificate::Present {
            id: "pc-1".into(),
            fingerprint: "ab".into(),
        },
        managed: Fact::known(true, now),
        compliant: Fact::known(true, now),
        ownership: Fact::known(Ownership::Corporate, now),
        os: Fact::known("windows".into(), now),
        os_version: Fact::known("10.0.22631".into(), now),
        disk_encryption: Fact::known(true, now),
        screen_lock: Fact::known(true, now),
        last_check_in: Fact::known(now, now),
        tags: Fact::known(vec!["lgwan".into()], now),
        ..Device::default()
    };
    let mut id_password_only = id.clone();
    id_password_only.amr = vec!["pwd".into()];
    let req = Request {
        method: "GET".into(),
        host: "apps.lgwan.example".into(),
        path: "/library/books".into(),
        zone: "lgwan".into(),
        route: "lgwan-apps".into(),
        source_ip: IpAddr::from([127, 0, 0, 1]),
    };
    let mut admin_req = req.clone();
    admin_req.path = "/admin/users".into();
    let night: Timestamp = "2026-04-14T23:30:00+09:00".parse().unwrap();

    let cases: Vec<(Input, &str)> = vec![
        (
            Input {
                identity: Some(&id),
                device: Some(&dev),
                request: &req,
                now,
            },
            "allow",
        ),
        (
            Input {
                identity: Some(&id),
                device: Some(&dev),
                request: &req,
                now: night,
            },
            "deny",
        ),
        (
            Input {
                identity: Some(&id),
                device: Some(&dev),
                request: &admin_req,
                now,
            },
            "deny",
        ),
        (
            Input {
                identity: Some(&id_password_only),
                device: Some(&dev),
                request: &req,
                now,
            },
            "step_up",
        ),
        (
            Input {
                identity: None,
                device: Some(&dev),
                request: &req,
                now,
            },
            "login_required",
        ),
        (
            Input {
                identity: Some(&id),
                device: None,
                request: &req,
                now,
            },
            "device_certificate_required",
        ),
    ];
    // Warm up (lazy statics in dependencies, if any).
    for (input, _) in &cases {
        std::hint::black_box(set.evaluate(target, input));
    }
    for (input, expected) in &cases {
        let region = Region::new(GLOBAL);
        let decision = std::hint::black_box(set.evaluate(target, input));
        let stats = region.change();
        assert_eq!(decision.outcome.code(), *expected, "{decision:?}");
        drop(decision);
        assert_eq!(
            (stats.allocations, stats.reallocations),
            (0, 0),
            "evaluating a `{expected}` request allocated"
        );
    }
    // The counter works: an allocation is seen.
    let region = Region::new(GLOBAL);
    let v = std::hint::black_box(vec![1u8; 16]);
    assert_eq!(region.change().allocations, 1);
    drop(v);
    assert!(matches!(
        set.evaluate(target, &cases[0].0).outcome,
        Outcome::Allow
    ));
}
