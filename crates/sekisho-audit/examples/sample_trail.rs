//! Write a small sample trail (for the docs and for trying `sekisho audit …`):
//!
//! ```text
//! cargo run -p sekisho-audit --example sample_trail -- /tmp/audit-sample [checkpoint-key.pem]
//! ```
use std::sync::Arc;

use jiff::SignedDuration;
use sekisho_audit::*;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), AuditError> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "audit-sample".into());
    let mut cfg = AuditConfig::new(&dir, "sekisho-gw-1");
    cfg.durability = Durability::Strict;
    if let Some(key) = args.next() {
        cfg.checkpoint = Some(CheckpointConfig::new(key));
    }
    let clock = Arc::new(ManualClock::new(
        "2026-11-24T08:45:12.345+09:00".parse().unwrap(),
    ));
    let (h, task) = AuditWriter::start(cfg, clock.clone())?;
    let user = UserInfo {
        sub: "u-0001".into(),
        email: Some("yamada.taro@city.example.lg.jp".into()),
        groups: vec!["staff".into(), "zaimu".into()],
        amr: vec!["pwd".into(), "otp".into()],
        acr: Some("urn:city:mfa".into()),
        auth_time: Some("2026-11-24T08:40:01+09:00".into()),
    };
    let device = DeviceInfo {
        id: "PC-0042".into(),
        fingerprint: Some("3f9a0c…".into()),
        posture: vec![
            PostureFact {
                name: "managed".into(),
                value: "true".into(),
                source: Some("inventory".into()),
                age_secs: Some(5400),
            },
            PostureFact {
                name: "compliant".into(),
                value: "true".into(),
                source: Some("inventory".into()),
                age_secs: Some(5400),
            },
        ],
    };
    h.append(Event::Start(StartEvent {
        version: "0.1.0".into(),
        config_version: "c-7d1e".into(),
        policy_version: "p-91ab".into(),
    }))
    .await?;
    h.append(Event::LoginSuccess(LoginEvent {
        request_id: "01JDX0001".into(),
        issuer: "https://idp.city.example.lg.jp".into(),
        user: user.clone(),
        client_ip: "203.0.113.25".into(),
        device_id: Some("PC-0042".into()),
    }))
    .await?;
    h.append(Event::Access(Box::new(AccessEvent {
        request_id: "01JDX0002".into(),
        zone: "lgwan".into(),
        listener: "lgwan-https".into(),
        route: Some("財務会計".into()),
        method: "GET".into(),
        host: "zaimu.city.example.lg.jp".into(),
        path: "/budget/2026".into(),
        client_ip: "203.0.113.25".into(),
        user: Some(user.clone().into()),
        device: Some(device.clone().into()),
        decision: Decision::Allow,
        rule: Some("lgwan-staff/allow[0]".into()),
        policy_version: "p-91ab".into(),
        upstream: Some("10.20.0.15:443".into()),
        ..Default::default()
    })))
    .await?;
    h.append(Event::AccessResult(AccessResultEvent {
        request_id: "01JDX0002".into(),
        upstream: Some("10.20.0.15:443".into()),
        upstream_status: Some(200),
        status: 200,
        bytes_in: 0,
        bytes_out: 48_213,
        duration_us: 84_120,
        error: None,
    }))
    .await?;
    clock.advance(SignedDuration::from_hours(11));
    h.append(Event::Access(Box::new(AccessEvent {
        request_id: "01JDX0003".into(),
        zone: "lgwan".into(),
        listener: "lgwan-https".into(),
        route: Some("財務会計".into()),
        method: "POST".into(),
        host: "zaimu.city.example.lg.jp".into(),
        path: "/budget/2026/export".into(),
        client_ip: "198.51.100.80".into(),
        user: Some(user.into()),
        device: None,
        decision: Decision::Deny,
        rule: Some("lgwan-floor".into()),
        reasons: vec![Reason {
            code: "device_required".into(),
            ja: Some("管理端末からのアクセスが必要です".into()),
            en: Some("a managed device is required".into()),
        }]
        .into(),
        policy_version: "p-91ab".into(),
        status: Some(403),
        duration_us: Some(1_210),
        ..Default::default()
    })))
    .await?;
    h.append(Event::LoginFailure(LoginFailureEvent {
        request_id: "01JDX0004".into(),
        issuer: "https://idp.city.example.lg.jp".into(),
        user_hint: None,
        client_ip: "198.51.100.80".into(),
        reason: "state_mismatch".into(),
    }))
    .await?;
    h.append(Event::ConfigReload(ConfigReloadEvent {
        outcome: "applied".into(),
        config_version: "c-8a02".into(),
        policy_version: "p-a3c4".into(),
        previous_policy_version: Some("p-91ab".into()),
        changes: vec!["policy changed: lgwan-staff (時間帯 07:00-22:00 → 07:00-20:00)".into()],
        errors: vec![],
    }))
    .await?;
    h.shutdown(Some(Event::Stop(StopEvent {
        reason: "signal".into(),
    })))
    .await?;
    task.await
        .map_err(|e| AuditError::Config(e.to_string()))??;
    println!("sample trail written to {dir}");
    Ok(())
}
