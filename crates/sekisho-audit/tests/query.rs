mod common;

use common::*;
use jiff::SignedDuration;
use sekisho_audit::query::{self, Filter, Format};
use sekisho_audit::stats::{OfficeHours, stats};
use sekisho_audit::{
    AccessEvent, AccessResultEvent, AuditConfig, Decision, Durability, Event, LoginFailureEvent,
    Reason, UserInfo,
};

/// A small trail: Japanese text, a formula-looking value, an allowed request with its
/// result, denials inside and outside office hours.
async fn trail(dir: &std::path::Path) {
    let clk = clock("2026-11-24T00:00:00Z"); // Tue 09:00 JST
    let mut cfg = AuditConfig::new(dir, "gw-1");
    cfg.durability = Durability::Strict;
    let (h, task) = start(cfg, clk.clone());
    h.append(access(1, Decision::Allow)).await.unwrap();
    h.append(Event::AccessResult(AccessResultEvent {
        request_id: "req-0001".into(),
        upstream: Some("10.1.2.3:443".into()),
        upstream_status: Some(200),
        status: 200,
        bytes_in: 10,
        bytes_out: 2048,
        duration_us: 12_345,
        error: None,
    }))
    .await
    .unwrap();
    let mut hostile = AccessEvent {
        request_id: "req-evil".into(),
        zone: "internet".into(),
        listener: "inet".into(),
        route: Some("=HYPERLINK(\"http://x\",\"y\")".into()),
        method: "POST".into(),
        host: "a.example".into(),
        path: "/申請/\"quoted\",comma".into(),
        client_ip: "198.51.100.7".into(),
        user: Some(
            UserInfo {
                sub: "@sub".into(),
                email: Some("山田太郎@city.example.lg.jp".into()),
                ..Default::default()
            }
            .into(),
        ),
        decision: Decision::Deny,
        reasons: vec![Reason {
            code: "mfa_required".into(),
            ja: Some("多要素認証が必要です".into()),
            en: Some("MFA required".into()),
        }]
        .into(),
        policy_version: "-1+2".into(),
        ..Default::default()
    };
    h.append(Event::Access(Box::new(hostile.clone())))
        .await
        .unwrap();
    clk.advance(SignedDuration::from_hours(10)); // 19:00 JST: outside office hours
    hostile.request_id = "req-late".into();
    hostile.route = Some("zaimu".into());
    h.append(Event::Access(Box::new(hostile))).await.unwrap();
    h.append(access(2, Decision::Deny)).await.unwrap();
    h.append(Event::LoginFailure(LoginFailureEvent {
        request_id: "req-lf".into(),
        issuer: "https://idp.example".into(),
        user_hint: Some("user-1".into()),
        client_ip: "192.0.2.1".into(),
        reason: "state_mismatch".into(),
    }))
    .await
    .unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_opens_in_excel_bom_crlf_quoting_japanese_and_no_formulas() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path()).await;
    let rows = query::query(dir.path(), &Filter::default(), |_, _| panic!("bad line")).unwrap();
    let mut out = Vec::new();
    query::write(&mut out, &rows, Format::Csv, false).unwrap();
    assert!(out.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM");
    let text = String::from_utf8(out[3..].to_vec()).unwrap();
    assert!(text.ends_with("\r\n"));
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "only CRLF line ends"
    );
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    // header + access(folded result) + 2 hostile + access + login failure; access_result folded
    assert_eq!(lines.len(), 1 + 5, "{text}");
    assert!(lines[0].starts_with("\"time\",\"seq\",\"kind\""));
    assert!(text.contains("山田太郎@city.example.lg.jp"));
    assert!(text.contains("多要素認証が必要です"));
    // Quotes doubled, commas inside quotes.
    assert!(text.contains("\"/申請/\"\"quoted\"\",comma\""));
    // Formula injection neutralised.
    assert!(text.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""));
    assert!(text.contains("\"'@sub\""));
    assert!(text.contains("\"'-1+2\""));
    assert!(
        !text.contains(",\"=")
            && !text.contains(",\"@")
            && !text.contains(",\"-")
            && !text.contains(",\"+")
    );
    // The allowed request carries its result.
    let first = lines[1];
    assert!(
        first.contains("\"2048\"") && first.contains("\"12.345\""),
        "{first}"
    );
    // The query string is not shown by default...
    assert!(!text.contains("id=REDACTED"));
    // ... only when asked.
    let mut out = Vec::new();
    query::write(&mut out, &rows, Format::Csv, true).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("id=REDACTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_by_user_device_route_zone_decision_reason_and_time() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path()).await;
    let q = |f: Filter| query::query(dir.path(), &f, |_, _| {}).unwrap();
    let ids =
        |rows: Vec<query::Located>| -> Vec<u64> { rows.iter().map(|r| r.record.seq).collect() };
    assert_eq!(
        ids(q(Filter {
            decision: Some(Decision::Deny),
            ..Default::default()
        })),
        [3, 4, 5]
    );
    assert_eq!(
        ids(q(Filter {
            zone: Some("internet".into()),
            ..Default::default()
        })),
        [3, 4]
    );
    assert_eq!(
        ids(q(Filter {
            route: Some("zaimu".into()),
            ..Default::default()
        })),
        [1, 4]
    );
    assert_eq!(
        ids(q(Filter {
            route: Some("kintai".into()),
            ..Default::default()
        })),
        [5]
    );
    assert_eq!(
        ids(q(Filter {
            user: Some("山田太郎@city.example.lg.jp".into()),
            ..Default::default()
        })),
        [3, 4]
    );
    assert_eq!(
        ids(q(Filter {
            user: Some("USER-1".into()),
            ..Default::default()
        })),
        [1, 6]
    );
    assert_eq!(
        ids(q(Filter {
            device: Some("dev-2".into()),
            ..Default::default()
        })),
        [5]
    );
    assert_eq!(
        ids(q(Filter {
            reason: Some("多要素".into()),
            ..Default::default()
        })),
        [3, 4]
    );
    assert_eq!(
        ids(q(Filter {
            reason: Some("state_mismatch".into()),
            ..Default::default()
        })),
        [6]
    );
    let late = ts("2026-11-24T09:00:00Z");
    assert_eq!(
        ids(q(Filter {
            since: Some(late),
            ..Default::default()
        })),
        [4, 5, 6]
    );
    assert_eq!(
        ids(q(Filter {
            until: Some(late),
            ..Default::default()
        })),
        [1, 3]
    );
    assert_eq!(
        ids(q(Filter {
            kinds: vec!["login_failure".into()],
            ..Default::default()
        })),
        [6]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_and_table_output() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path()).await;
    let rows = query::query(dir.path(), &Filter::default(), |_, _| {}).unwrap();
    let mut out = Vec::new();
    query::write(&mut out, &rows, Format::JsonLines, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 5);
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v.get("query").is_none());
    }
    let mut out = Vec::new();
    query::write(&mut out, &rows, Format::Table, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.lines().next().unwrap().starts_with("time"));
    assert!(text.contains("mfa_required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_denials_and_outside_office_hours_per_day() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path()).await;
    let rows = query::query(dir.path(), &Filter::default(), |_, _| {}).unwrap();
    let s = stats(&rows, &OfficeHours::default());
    assert_eq!(s.access, 4);
    assert_eq!(s.deny, 3);
    assert_eq!(s.deny_by_reason.get("mfa_required"), Some(&2));
    assert_eq!(s.deny_by_reason.get("device_not_compliant"), Some(&1));
    assert_eq!(s.deny_by_route.get("zaimu"), Some(&1));
    assert_eq!(s.deny_by_route.get("kintai"), Some(&1));
    assert_eq!(s.outside_hours, 2);
    let day = s.days.get(&"2026-11-24".parse().unwrap()).unwrap();
    assert_eq!((day.allow, day.deny, day.login_failures), (1, 3, 1));
    assert!(
        day.outside_hours_users
            .contains("山田太郎@city.example.lg.jp")
    );
    // A holiday makes the whole day outside office hours.
    let mut h = OfficeHours::default();
    h.holidays.insert("2026-11-24".parse().unwrap());
    assert_eq!(stats(&rows, &h).outside_hours, 4);
    let text = s.to_string();
    assert!(text.contains("mfa_required") && text.contains("2026-11-24"));
}

#[test]
fn office_hours_default_is_weekdays_0830_to_1715_tokyo() {
    let h = OfficeHours::default();
    assert!(h.contains(ts("2026-11-24T08:30:00+09:00")));
    assert!(h.contains(ts("2026-11-24T17:14:59+09:00")));
    assert!(!h.contains(ts("2026-11-24T17:15:00+09:00")));
    assert!(!h.contains(ts("2026-11-24T08:29:59+09:00")));
    assert!(!h.contains(ts("2026-11-28T10:00:00+09:00"))); // Saturday
}

/// An upgraded connection whose access was withdrawn has two access records with one request
/// ID (the allow that opened it, the deny that closed it); its outcome, recorded after both,
/// belongs to the allow and is shown there, not on the withdrawal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_after_a_withdrawal_folds_into_the_decision_that_opened_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = AuditConfig::new(dir.path(), "gw-1");
    cfg.durability = Durability::Strict;
    let (h, task) = start(cfg, clock("2026-11-24T00:00:00Z"));
    h.append(access(7, Decision::Allow)).await.unwrap();
    h.append(access(7, Decision::Deny)).await.unwrap();
    h.append(Event::AccessResult(AccessResultEvent {
        request_id: "req-0007".into(),
        upstream: Some("10.1.2.3:443".into()),
        upstream_status: Some(101),
        status: 101,
        bytes_in: 10,
        bytes_out: 2048,
        duration_us: 9_000_000,
        error: None,
    }))
    .await
    .unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let rows = query::query(dir.path(), &Filter::default(), |_, _| {}).unwrap();
    let access: Vec<&AccessEvent> = rows
        .iter()
        .filter_map(|r| match &r.record.event {
            Event::Access(a) => Some(&**a),
            _ => None,
        })
        .collect();
    assert_eq!(access.len(), 2);
    assert_eq!(access[0].decision, Decision::Allow);
    assert_eq!(access[0].status, Some(101));
    assert_eq!(access[1].decision, Decision::Deny);
    assert_eq!(
        access[1].status, None,
        "the withdrawal has no outcome of its own"
    );
}
