//! The record format: every kind round-trips, field names are stable, and there is no
//! place for secrets.
mod common;

use common::*;
use sekisho_audit::record::*;
use sekisho_audit::{Decision, Event};

fn all_kinds() -> Vec<Event> {
    vec![
        access(1, Decision::Allow),
        access(2, Decision::Deny),
        Event::AccessResult(AccessResultEvent {
            request_id: "r".into(),
            status: 502,
            error: Some("upstream_timeout".into()),
            ..Default::default()
        }),
        Event::LoginSuccess(LoginEvent {
            request_id: "r".into(),
            issuer: "https://idp".into(),
            user: UserInfo {
                sub: "s".into(),
                ..Default::default()
            },
            client_ip: "192.0.2.1".into(),
            device_id: None,
        }),
        Event::LoginFailure(LoginFailureEvent {
            reason: "state_mismatch".into(),
            ..Default::default()
        }),
        Event::Logout(SessionEvent {
            sub: "s".into(),
            outcome: "ok".into(),
            ..Default::default()
        }),
        Event::SessionRefresh(SessionEvent {
            sub: "s".into(),
            outcome: "refresh_token_expired".into(),
            ..Default::default()
        }),
        Event::StepUp(StepUpEvent {
            sub: "s".into(),
            required: "acr=mfa".into(),
            outcome: "requested".into(),
            ..Default::default()
        }),
        Event::DeviceCertFailure(DeviceCertFailureEvent {
            reason: "revoked".into(),
            ..Default::default()
        }),
        Event::ConfigReload(ConfigReloadEvent {
            outcome: "applied".into(),
            changes: vec!["route added: 文書管理".into()],
            ..Default::default()
        }),
        Event::ConfigError(ConfigErrorEvent {
            source: "sekisho.yaml".into(),
            errors: vec!["sekisho.yaml:3:5: unknown key".into()],
        }),
        Event::Start(StartEvent::default()),
        Event::Stop(StopEvent {
            reason: "signal".into(),
        }),
        Event::Rotated(RotatedEvent {
            previous_file: "audit-2026-11-23-0001.jsonl".into(),
            reason: "day".into(),
        }),
        Event::Retention(RetentionEvent {
            removed: vec!["a".into()],
            removed_through_seq: 9,
            retention_days: 400,
        }),
        Event::Repaired(RepairedEvent::default()),
        Event::Recovered(RecoveredEvent::default()),
    ]
}

#[test]
fn every_kind_round_trips_and_is_tagged() {
    for (i, event) in all_kinds().into_iter().enumerate() {
        let rec = Record {
            v: SCHEMA_VERSION,
            seq: i as u64 + 1,
            time: "2026-11-23T09:00:00.000+09:00".into(),
            instance: "gw".into(),
            prev: GENESIS_PREV.into(),
            event,
        };
        let line = serde_json::to_string(&rec).unwrap();
        assert!(!line.contains('\n'));
        // The envelope comes first, in a fixed order, then the kind.
        assert!(
            line.starts_with(&format!("{{\"v\":1,\"seq\":{},\"time\":", i + 1)),
            "{line}"
        );
        let kind_at = line.find("\"kind\":").unwrap();
        assert!(kind_at > line.find("\"prev\":").unwrap());
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rec, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], rec.event.kind());
        // Serialising twice gives the same bytes: the chain hashes exactly these.
        assert_eq!(serde_json::to_string(&back).unwrap(), line);
    }
}

#[test]
fn no_field_can_hold_a_secret() {
    let forbidden = [
        "token",
        "cookie",
        "authorization",
        "password",
        "secret",
        "body",
        "set-cookie",
        "id_token",
        "code_verifier",
    ];
    for event in all_kinds() {
        let v = serde_json::to_value(&event).unwrap();
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let k = k.to_ascii_lowercase();
                        assert!(
                            !forbidden.iter().any(|f| k.contains(f)),
                            "field {k} in {}",
                            event.kind()
                        );
                        stack.push(v);
                    }
                }
                serde_json::Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
    }
}

#[test]
fn time_format_has_offset_and_milliseconds() {
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    assert_eq!(
        format_time(ts("2026-11-23T00:00:00Z"), &tz),
        "2026-11-23T09:00:00.000+09:00"
    );
    assert_eq!(
        format_time(ts("2026-11-23T00:00:00.123456Z"), &tz),
        "2026-11-23T09:00:00.123+09:00"
    );
    assert_eq!(
        format_time(ts("2026-11-23T00:00:00.5Z"), &jiff::tz::TimeZone::UTC),
        "2026-11-23T00:00:00.500+00:00"
    );
}
