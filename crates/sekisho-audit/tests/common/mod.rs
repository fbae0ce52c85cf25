//! Shared helpers for the integration tests.
#![allow(dead_code)] // reason: each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sekisho_audit::{
    AccessEvent, AuditConfig, AuditHandle, AuditWriter, Decision, DeviceInfo, Event, ManualClock,
    PostureFact, Reason, UserInfo,
};

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn clock(at: &str) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(ts(at)))
}

pub fn access(i: u64, decision: Decision) -> Event {
    Event::Access(Box::new(AccessEvent {
        request_id: format!("req-{i:04}"),
        zone: "lgwan".into(),
        listener: "lgwan-https".into(),
        route: Some(if i.is_multiple_of(2) {
            "kintai".into()
        } else {
            "zaimu".into()
        }),
        method: "GET".into(),
        host: "kintai.city.example.lg.jp".into(),
        path: format!("/api/v1/items/{i}"),
        query: Some("id=REDACTED".into()),
        client_ip: "192.0.2.10".into(),
        user: Some(
            UserInfo {
                sub: format!("user-{}", i % 3),
                email: Some(format!("user{}@city.example.lg.jp", i % 3)),
                groups: vec!["staff".into()],
                amr: vec!["pwd".into(), "otp".into()],
                acr: Some("mfa".into()),
                auth_time: Some("2026-11-23T08:00:00+09:00".into()),
            }
            .into(),
        ),
        device: Some(
            DeviceInfo {
                id: format!("dev-{}", i % 4),
                fingerprint: Some("ab".repeat(32)),
                posture: vec![PostureFact {
                    name: "compliant".into(),
                    value: "true".into(),
                    source: Some("inventory".into()),
                    age_secs: Some(3600),
                }],
            }
            .into(),
        ),
        decision,
        rule: Some("lgwan-staff/allow[0]".into()),
        reasons: if decision == Decision::Deny {
            vec![Reason {
                code: "device_not_compliant".into(),
                ja: Some("端末が準拠していません".into()),
                en: Some("device is not compliant".into()),
            }]
            .into()
        } else {
            vec![].into()
        },
        policy_version: "sha256:0123abcd".into(),
        upstream: Some("10.1.2.3:443".into()),
        ..Default::default()
    }))
}

pub fn start(
    cfg: AuditConfig,
    clock: Arc<ManualClock>,
) -> (
    AuditHandle,
    tokio::task::JoinHandle<Result<(), sekisho_audit::AuditError>>,
) {
    AuditWriter::start(cfg, clock).expect("writer starts")
}

/// Wait (without a fixed sleep) until `cond` holds; fail the test after 10 s.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 10 s"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

pub fn read_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = vec![];
    for f in sekisho_audit::files::list(dir).unwrap() {
        let text = std::fs::read_to_string(&f.path).unwrap();
        for l in text.lines() {
            out.push(serde_json::from_str(l).unwrap());
        }
    }
    out
}

pub fn kinds(dir: &Path) -> Vec<String> {
    read_lines(dir)
        .iter()
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect()
}
