mod common;

use std::time::Duration;

use common::*;
use jiff::SignedDuration;
use sekisho_audit::fault::{FaultInjector, FaultKind};
use sekisho_audit::verify::ProblemKind;
use sekisho_audit::{
    AuditConfig, AuditError, Decision, Durability, Event, Receipt, StopEvent, verify,
};

fn strict_cfg(dir: &std::path::Path) -> AuditConfig {
    let mut c = AuditConfig::new(dir, "gw-test-1");
    c.durability = Durability::Strict;
    c.retry_interval = Duration::from_millis(5);
    c
}

fn batched_cfg(dir: &std::path::Path, max_delay: Duration, max_records: usize) -> AuditConfig {
    let mut c = AuditConfig::new(dir, "gw");
    c.durability = Durability::Batched {
        max_delay,
        max_records,
    };
    c
}

/// The trail `cfg` describes, whose writes and fsyncs the test controls through the injector.
fn with_faults(
    mut cfg: AuditConfig,
) -> (
    sekisho_audit::AuditHandle,
    tokio::task::JoinHandle<Result<(), AuditError>>,
    FaultInjector,
) {
    let fault = FaultInjector::new();
    cfg.fault_injection = Some(fault.clone());
    let (h, task) = start(cfg, clock("2026-11-23T01:00:00Z"));
    (h, task, fault)
}

/// A strict trail in `dir` whose writes and fsyncs the test controls through the injector.
fn strict_with_faults(
    dir: &std::path::Path,
) -> (
    sekisho_audit::AuditHandle,
    tokio::task::JoinHandle<Result<(), AuditError>>,
    FaultInjector,
) {
    with_faults(strict_cfg(dir))
}

/// While the trail is down the writer retries every 5 ms, and each attempt writes (part of)
/// a line and cuts it off again; a test reading the file during one would see those bytes.
/// From here on retries write nothing; returns once two more have failed (the second began
/// after the change), so the file then holds exactly what the cut-offs left.
async fn quiet_retries(h: &sekisho_audit::AuditHandle, fault: &FaultInjector) {
    fault.fail_writes(FaultKind::NoSpace, 0);
    let failed = h.metrics().write_errors;
    tokio::time::timeout(Duration::from_secs(10), async {
        while h.metrics().write_errors < failed + 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the writer keeps retrying");
}

fn stop() -> Option<Event> {
    Some(Event::Stop(StopEvent {
        reason: "test".into(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_chained_numbered_and_timestamped() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-11-23T01:02:03.456Z");
    let (h, task) = start(strict_cfg(dir.path()), clk.clone());
    for i in 0..5 {
        let r = h.append(access(i, Decision::Allow)).await.unwrap();
        assert!(matches!(r, Receipt::Durable { seq, .. } if seq == i + 1));
    }
    h.shutdown(stop()).await.unwrap();
    task.await.unwrap().unwrap();
    let lines = read_lines(dir.path());
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["prev"], sekisho_audit::record::GENESIS_PREV);
    assert_eq!(lines[0]["time"], "2026-11-23T10:02:03.456+09:00");
    assert_eq!(lines[0]["instance"], "gw-test-1");
    assert_eq!(lines[5]["kind"], "stop");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
    }
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name() == "audit-2026-11-23-0001.jsonl")
    );
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(rep.records, 6);
    // Appends after shutdown are refused.
    assert!(matches!(
        h.append(access(9, Decision::Allow)).await,
        Err(AuditError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_append_resolves_only_after_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task, fault) = strict_with_faults(dir.path());
    fault.hold_fsync();
    let h2 = h.clone();
    let pending = tokio::spawn(async move { h2.append(access(1, Decision::Allow)).await });
    wait_until(|| fault.fsyncs_waiting() == 1).await;
    // The record has been written but the fsync has not finished: not resolved yet.
    assert!(!pending.is_finished());
    assert_eq!(fault.fsync_count(), 0);
    fault.release_fsync();
    let r = pending.await.unwrap().unwrap();
    assert!(matches!(r, Receipt::Durable { seq: 1, .. }));
    assert_eq!(fault.fsync_count(), 1);
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_append_resolves_before_fsync_and_is_on_disk_after() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task, fault) = with_faults(batched_cfg(dir.path(), Duration::from_millis(20), 1000));
    fault.hold_fsync();
    for i in 0..10 {
        assert_eq!(
            h.append(access(i, Decision::Deny)).await.unwrap(),
            Receipt::Queued
        );
    }
    wait_until(|| fault.fsyncs_waiting() == 1).await;
    assert_eq!(h.metrics().records_written, 0);
    fault.release_fsync();
    wait_until(|| h.metrics().records_written == 10).await;
    // Group commit: the ten records took far fewer than ten fsyncs.
    assert!(fault.fsync_count() <= 3, "fsyncs: {}", fault.fsync_count());
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(read_lines(dir.path()).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_closed_and_recovers_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task, fault) = strict_with_faults(dir.path());
    let mut health = h.subscribe_health();
    h.append(access(1, Decision::Allow)).await.unwrap();

    // ENOSPC after 17 bytes of the next line reached the file: a torn write.
    fault.fail_writes(FaultKind::NoSpace, 17);
    let err = h.append(access(2, Decision::Allow)).await.unwrap_err();
    assert!(matches!(err, AuditError::Unavailable(_)), "{err}");
    assert!(!h.is_healthy());
    assert!(!h.health().healthy);
    assert!(h.health().error.unwrap().contains("no space"));
    // Fails closed at once while down.
    assert!(matches!(
        h.append(access(3, Decision::Allow)).await,
        Err(AuditError::Unavailable(_))
    ));
    let m = h.metrics();
    assert!(m.write_errors >= 1);
    assert!(m.rejected_appends >= 2);
    // The torn bytes were cut off again.
    quiet_retries(&h, &fault).await;
    let on_disk = std::fs::read_to_string(dir.path().join("audit-2026-11-23-0001.jsonl")).unwrap();
    assert!(on_disk.ends_with('\n') && on_disk.lines().count() == 1);

    fault.heal();
    health.wait_for(|h| h.healthy).await.unwrap();
    assert!(h.is_healthy());
    h.append(access(4, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();

    let lines = read_lines(dir.path());
    let k: Vec<&str> = lines.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(k, ["access", "recovered", "access"]);
    assert!(
        lines[1]["rejected_appends"].as_u64().unwrap() >= 2,
        "{}",
        lines[1]
    );
    assert!(lines[1]["error"].as_str().unwrap().contains("no space"));
    // The refused requests have no record (they were answered 503, not forwarded).
    assert!(
        lines
            .iter()
            .all(|l| l["request_id"] != "req-0002" && l["request_id"] != "req-0003")
    );
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_records_accepted_before_a_failed_fsync_are_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = batched_cfg(dir.path(), Duration::from_millis(5), 4);
    cfg.retry_interval = Duration::from_millis(5);
    let (h, task, fault) = with_faults(cfg);
    let mut health = h.subscribe_health();
    fault.fail_fsync(FaultKind::Io);
    let mut accepted = 0;
    for i in 0..4 {
        if h.append(access(i, Decision::Allow)).await.is_ok() {
            accepted += 1;
        }
    }
    health.wait_for(|h| !h.healthy).await.unwrap();
    assert!(h.append(access(99, Decision::Allow)).await.is_err());
    fault.heal();
    health.wait_for(|h| h.healthy).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let k = kinds(dir.path());
    assert_eq!(k.iter().filter(|k| *k == "access").count(), accepted);
    assert!(k.contains(&"recovered".to_string()));
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_line_is_reported_then_repaired_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-11-23T01:00:00Z");
    let (h, task) = start(strict_cfg(dir.path()), clk.clone());
    for i in 0..3 {
        h.append(access(i, Decision::Allow)).await.unwrap();
    }
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    // A crash in the middle of a write.
    let file = dir.path().join("audit-2026-11-23-0001.jsonl");
    let torn = br#"{"v":1,"seq":4,"time":"2026-11-23T10:00:00.000+09:00","ins"#;
    let mut data = std::fs::read(&file).unwrap();
    data.extend_from_slice(torn);
    std::fs::write(&file, &data).unwrap();

    let rep = verify(dir.path()).unwrap();
    assert_eq!(rep.first_problem().unwrap().kind, ProblemKind::TornLine);
    assert_eq!(rep.first_problem().unwrap().line, 4);

    let (h, task) = start(strict_cfg(dir.path()), clk);
    h.append(access(10, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let lines = read_lines(dir.path());
    assert_eq!(lines[3]["kind"], "repaired");
    assert_eq!(lines[3]["seq"], 4);
    assert_eq!(lines[3]["removed_bytes"], torn.len() as u64);
    assert_eq!(
        lines[3]["removed_sha256"],
        sekisho_audit::record::line_hash(torn)
    );
    let copy = dir.path().join(lines[3]["copy"].as_str().unwrap());
    assert_eq!(std::fs::read(copy).unwrap(), torn);
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(rep.last_seq, Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_by_day_with_the_injected_clock_and_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-11-23T14:59:59Z"); // 23:59:59 in Tokyo
    let (h, task) = start(strict_cfg(dir.path()), clk.clone());
    h.append(access(1, Decision::Allow)).await.unwrap();
    clk.advance(SignedDuration::from_secs(2)); // 00:00:01 on the 24th in Tokyo
    h.append(access(2, Decision::Allow)).await.unwrap();
    clk.advance(SignedDuration::from_hours(24));
    h.append(access(3, Decision::Deny)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let names: Vec<String> = sekisho_audit::files::list(dir.path())
        .unwrap()
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(
        names,
        [
            "audit-2026-11-23-0001.jsonl",
            "audit-2026-11-24-0001.jsonl",
            "audit-2026-11-25-0001.jsonl"
        ]
    );
    let second = std::fs::read_to_string(dir.path().join(&names[1])).unwrap();
    let first: serde_json::Value = serde_json::from_str(second.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "rotated");
    assert_eq!(first["reason"], "day");
    assert_eq!(first["previous_file"], "audit-2026-11-23-0001.jsonl");
    assert_eq!(first["time"], "2026-11-24T00:00:01.000+09:00");
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = strict_cfg(dir.path());
    cfg.max_file_bytes = 2000;
    let (h, task) = start(cfg, clock("2026-11-23T01:00:00Z"));
    for i in 0..20 {
        h.append(access(i, Decision::Allow)).await.unwrap();
    }
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let files = sekisho_audit::files::list(dir.path()).unwrap();
    assert!(files.len() >= 5, "{files:?}");
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f.index as usize, i + 1);
        // A file exceeds the limit by at most one batch (here: one record).
        assert!(std::fs::metadata(&f.path).unwrap().len() < 2000 + 1500);
    }
    assert!(verify(dir.path()).unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_continues_the_chain_in_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-11-23T01:00:00Z");
    for round in 0..3 {
        let (h, task) = start(strict_cfg(dir.path()), clk.clone());
        h.append(access(round, Decision::Allow)).await.unwrap();
        h.shutdown(stop()).await.unwrap();
        task.await.unwrap().unwrap();
    }
    assert_eq!(sekisho_audit::files::list(dir.path()).unwrap().len(), 1);
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(rep.last_seq, Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_days_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-01-05T01:00:00Z");
    let mut cfg = strict_cfg(dir.path());
    cfg.retention_days = Some(30);
    let (h, task) = start(cfg.clone(), clk.clone());
    h.append(access(1, Decision::Allow)).await.unwrap();
    clk.advance(SignedDuration::from_hours(24 * 10));
    h.append(access(2, Decision::Allow)).await.unwrap();
    clk.advance(SignedDuration::from_hours(24 * 25)); // first day now 35 days old
    h.append(access(3, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let names: Vec<String> = sekisho_audit::files::list(dir.path())
        .unwrap()
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(
        names,
        ["audit-2026-01-15-0001.jsonl", "audit-2026-02-09-0001.jsonl"]
    );
    let k = kinds(dir.path());
    assert!(k.contains(&"retention".to_string()), "{k:?}");
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert!(rep.notes.iter().any(|n| n.contains("retention")));

    // Removing a file by hand is not retention: verify says the start is missing.
    std::fs::remove_file(dir.path().join(&names[0])).unwrap();
    let rep = verify(dir.path()).unwrap();
    assert!(!rep.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_retention_is_at_least_a_year() {
    let cfg = AuditConfig::new("/nonexistent", "gw");
    assert!(cfg.retention_days.unwrap() >= 366);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_going_back_never_writes_into_an_earlier_file() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-11-24T01:00:00Z");
    let mut cfg = strict_cfg(dir.path());
    cfg.max_file_bytes = 1500;
    let (h, task) = start(cfg.clone(), clk.clone());
    h.append(access(1, Decision::Allow)).await.unwrap();
    clk.advance(SignedDuration::from_hours(-48));
    h.append(access(2, Decision::Allow)).await.unwrap();
    h.append(access(3, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    // Restart with the clock still behind.
    let (h, task) = start(cfg, clk);
    h.append(access(4, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let names: Vec<String> = sekisho_audit::files::list(dir.path())
        .unwrap()
        .iter()
        .map(|f| f.name())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("audit-2026-11-24-")),
        "{names:?}"
    );
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(rep.records as usize, read_lines(dir.path()).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_continue_a_trail_cut_short_of_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (private, _) = sekisho_audit::checkpoint::generate_key_pair().unwrap();
    std::fs::write(keys.path().join("k.pem"), private).unwrap();
    let mut cfg = strict_cfg(dir.path());
    cfg.checkpoint = Some(sekisho_audit::CheckpointConfig::new(
        keys.path().join("k.pem"),
    ));
    let clk = clock("2026-11-23T01:00:00Z");
    let (h, task) = start(cfg.clone(), clk.clone());
    for i in 0..3 {
        h.append(access(i, Decision::Allow)).await.unwrap();
    }
    h.shutdown(stop()).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(h.metrics().checkpoints, 1);
    // A clean restart is fine.
    let (h, task) = start(cfg.clone(), clk.clone());
    h.shutdown(stop()).await.unwrap();
    task.await.unwrap().unwrap();
    // Cut the last record off.
    let file = dir.path().join("audit-2026-11-23-0001.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let keep: Vec<&str> = text.lines().collect();
    std::fs::write(&file, keep[..keep.len() - 1].join("\n") + "\n").unwrap();
    let err = sekisho_audit::AuditWriter::start(cfg, clk).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_records_are_fsynced_within_max_delay_without_more_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = AuditConfig::new(dir.path(), "gw");
    cfg.durability = Durability::Batched {
        max_delay: Duration::from_millis(20),
        max_records: 1000,
    };
    let (h, task) = start(cfg, clock("2026-11-23T01:00:00Z"));
    let t0 = std::time::Instant::now();
    h.append(access(1, Decision::Allow)).await.unwrap();
    wait_until(|| h.metrics().records_written == 1).await;
    // Not before the deadline's order of magnitude, and well within a generous bound.
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(h.metrics().fsyncs, 1);
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_records_fsyncs_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task) = start(strict_cfg(dir.path()), clock("2026-11-23T01:00:00Z"));
    for i in 0..7 {
        h.append(access(i, Decision::Allow)).await.unwrap();
    }
    let m = h.metrics();
    assert_eq!(m.records_written, 7);
    assert!(m.fsyncs >= 1 && m.fsyncs <= 7);
    assert!(m.bytes_written > 7 * 100);
    assert_eq!(m.queue_depth, 0);
    assert!(m.healthy);
    assert_eq!(m.write_errors, 0);
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert!(!h.metrics().healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_writer_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let clk = clock("2026-11-23T01:00:00Z");
    let (h, task) = start(strict_cfg(dir.path()), clk.clone());
    let second = sekisho_audit::AuditWriter::start(strict_cfg(dir.path()), clk.clone());
    assert!(matches!(second, Err(AuditError::Config(_))));
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    // Once the first has stopped, a new writer may take over.
    let (h, task) = start(strict_cfg(dir.path()), clk);
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_down_the_writer_retries_at_its_interval_not_in_a_tight_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = batched_cfg(dir.path(), Duration::from_millis(1), 1);
    cfg.retry_interval = Duration::from_secs(3600);
    let (h, task, fault) = with_faults(cfg);
    let mut health = h.subscribe_health();
    fault.fail_fsync(FaultKind::Io);
    h.append(access(1, Decision::Allow)).await.unwrap();
    health.wait_for(|h| !h.healthy).await.unwrap();
    let errors = h.metrics().write_errors;
    // The retry timer is not injectable (tokio time on the writer's thread), so this
    // watches real time: a tight loop would add thousands of errors in 100 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        h.metrics().write_errors <= errors + 1,
        "{} -> {}",
        errors,
        h.metrics().write_errors
    );
    fault.heal();
    // Shutdown retries once more and writes the kept record and the recovery.
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(kinds(dir.path()), ["access", "recovered"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_key_may_not_live_in_the_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = sekisho_audit::checkpoint::generate_key_pair().unwrap();
    std::fs::write(dir.path().join("k.pem"), private).unwrap();
    let mut cfg = strict_cfg(dir.path());
    cfg.checkpoint = Some(sekisho_audit::CheckpointConfig::new(
        dir.path().join("k.pem"),
    ));
    let err = sekisho_audit::AuditWriter::start(cfg, clock("2026-11-23T01:00:00Z")).unwrap_err();
    assert!(matches!(err, AuditError::Config(_)), "{err}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trail_files_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (h, task) = start(strict_cfg(dir.path()), clock("2026-11-23T01:00:00Z"));
    h.append(access(1, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let f = &sekisho_audit::files::list(dir.path()).unwrap()[0];
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = AuditConfig::new(dir.path(), "gw");
    cfg.durability = Durability::Batched {
        max_delay: Duration::from_millis(5),
        max_records: 1000,
    };
    let (h, task) = start(cfg, clock("2026-11-23T01:00:00Z"));
    h.append(access(1, Decision::Allow)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.metrics().records_written == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batched deadline fsync never ran"
        );
        tokio::task::yield_now().await;
    }
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(read_lines(dir.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_records_refused_after_a_failed_fsync_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task, fault) = strict_with_faults(dir.path());
    h.append(access(1, Decision::Allow)).await.unwrap();
    fault.fail_fsync(FaultKind::Io);
    assert!(h.append(access(2, Decision::Allow)).await.is_err());
    // The refused record was written but never fsynced; it is cut off again at once,
    // so even a crash right now could not leave a record of a request answered 503.
    quiet_retries(&h, &fault).await;
    let on_disk = std::fs::read_to_string(dir.path().join("audit-2026-11-23-0001.jsonl")).unwrap();
    assert_eq!(on_disk.lines().count(), 1);
    assert!(!on_disk.contains("req-0002"));
    fault.heal();
    h.subscribe_health().wait_for(|h| h.healthy).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(kinds(dir.path()), ["access", "recovered"]);
    assert!(verify(dir.path()).unwrap().is_ok());
}

/// A disk that stops answering must not keep the gateway from stopping: `shutdown_within`
/// gives up with a clear error, and nothing accepted is lost once the disk answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_hung_fsync_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task, fault) = strict_with_faults(dir.path());
    h.append(access(1, Decision::Allow)).await.unwrap();
    fault.hold_fsync();
    // The limit is what is under test, so it is a real (short) one: the writer is a thread
    // of its own, blocked in the held fsync, and no clock of the test's can move it.
    let err = h
        .shutdown_within(stop(), Duration::from_millis(300))
        .await
        .expect_err("a hung fsync cannot close the trail");
    assert!(
        matches!(&err, AuditError::Unavailable(why) if why.contains("did not close within")),
        "{err}"
    );
    assert_eq!(
        fault.fsyncs_waiting(),
        1,
        "the writer is still in its fsync"
    );
    fault.release_fsync();
    task.await.unwrap().unwrap();
    assert_eq!(kinds(dir.path()), ["access", "stop"]);
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// An allowed access record as the gateway queues it before forwarding: no outcome yet.
fn allowed(i: u64) -> Event {
    let mut e = access(i, Decision::Allow);
    if let Event::Access(a) = &mut e {
        a.upstream = None;
    }
    e
}

fn outcome(i: u64) -> sekisho_audit::AccessResultEvent {
    sekisho_audit::AccessResultEvent {
        request_id: format!("req-{i:04}"),
        upstream: Some("https://kintai.internal:8443".into()),
        upstream_status: Some(200),
        status: 200,
        bytes_in: 0,
        bytes_out: 322 + i,
        duration_us: 1500,
        error: None,
    }
}

/// An allowed request's outcome goes into its own access record while that record waits to
/// be written (one line for the request). Once the record is written the outcome is handed
/// back and becomes an `access_result` record. The trail verifies either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_joins_its_access_record_until_that_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task, fault) = with_faults(batched_cfg(dir.path(), Duration::from_millis(20), 1));
    // The writer is held in the fsync of the first record, so the next ones stay queued.
    fault.hold_fsync();
    h.append(access(0, Decision::Deny)).await.unwrap();
    wait_until(|| fault.fsyncs_waiting() == 1).await;
    let (_, early) = h.append_awaiting_outcome(allowed(1)).await.unwrap();
    early
        .expect("batched mode keeps a place for the outcome")
        .fold(outcome(1))
        .expect("the record is not written yet: the outcome joins it");
    let (_, late) = h.append_awaiting_outcome(allowed(2)).await.unwrap();
    fault.release_fsync();
    wait_until(|| h.metrics().records_written == 3).await;
    let back = late
        .unwrap()
        .fold(outcome(2))
        .expect_err("the record is written: the outcome comes back");
    h.append(Event::AccessResult(back)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();

    let lines = read_lines(dir.path());
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["access", "access", "access", "access_result"]);
    assert_eq!(lines[1]["request_id"], "req-0001");
    assert_eq!(lines[1]["status"], 200);
    assert_eq!(lines[1]["upstream_status"], 200);
    assert_eq!(lines[1]["bytes_out"], 323);
    assert_eq!(lines[1]["duration_us"], 1500);
    assert_eq!(lines[1]["upstream"], "https://kintai.internal:8443");
    assert!(lines[2].get("status").is_none(), "{}", lines[2]);
    assert_eq!(lines[3]["request_id"], "req-0002");
    assert_eq!(lines[3]["bytes_out"], 324);
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// Under load the writer takes records off the queue while their responses are still
/// running. It holds such a record back for a moment (four fifths of `max_delay`) instead of
/// writing it at once, so an outcome that arrives soon after still joins its line (one
/// record per request, not two), and it keeps the queue's order: records queued after a
/// held one wait with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_record_waits_a_moment_for_its_outcome_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    // max_delay 5 s: records are held for up to a second, far longer than this test needs
    // between the writer taking them and the outcomes arriving.
    let (h, task) = start(
        batched_cfg(dir.path(), Duration::from_secs(5), 100_000),
        clock("2026-11-23T01:00:00Z"),
    );
    let mut pending = Vec::new();
    for i in 0..200 {
        if i % 10 == 9 {
            // A denial has no outcome to wait for; it is written in its place in the queue.
            h.append(access(i, Decision::Deny)).await.unwrap();
        } else {
            let (_, p) = h.append_awaiting_outcome(allowed(i)).await.unwrap();
            pending.push((i, p.expect("batched mode keeps a place for the outcome")));
        }
    }
    // Every record is off the queue and in the writer's hands before any response ends.
    wait_until(|| h.metrics().queue_depth == 0).await;
    for (i, p) in pending {
        p.fold(outcome(i))
            .unwrap_or_else(|_| panic!("record {i} was written before its outcome could join it"));
    }
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();

    let lines = read_lines(dir.path());
    let access: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] != "start").collect();
    assert_eq!(access.len(), 200, "one line per request");
    for (i, l) in access.iter().enumerate() {
        assert_eq!(l["kind"], "access", "{l}");
        assert_eq!(l["request_id"], format!("req-{i:04}"), "queue order kept");
        if i % 10 == 9 {
            assert_eq!(l["decision"], "deny");
        } else {
            assert_eq!(l["status"], 200, "{l}");
            assert_eq!(l["bytes_out"], 322 + i as u64, "{l}");
        }
    }
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// Records held for their outcome count against the queue's bound: once more are held than
/// the queue may take, they are written at once rather than kept in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_records_are_bounded_by_the_queue_capacity() {
    let dir = tempfile::tempdir().unwrap();
    // A hold of 40 s: far longer than `wait_until` waits, so only the bound can write them.
    let mut cfg = batched_cfg(dir.path(), Duration::from_secs(200), 1);
    cfg.queue_capacity = 8;
    let (h, task) = start(cfg, clock("2026-11-23T01:00:00Z"));
    let mut pending = Vec::new();
    for i in 0..40 {
        let (_, p) = h.append_awaiting_outcome(allowed(i)).await.unwrap();
        pending.push(p);
    }
    wait_until(|| h.metrics().records_written >= 30).await;
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(kinds(dir.path()).len(), 40);
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// A held record whose response never ends (a stalled upstream, a long download) is not held
/// for ever: once its hold is over it is written without its outcome and fsynced by the
/// batched deadline, with no other traffic to wake the writer. Its outcome, when it finally
/// comes, is handed back for an `access_result` record of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_response_never_ends_is_still_written_and_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task) = start(
        batched_cfg(dir.path(), Duration::from_millis(20), 100_000),
        clock("2026-11-23T01:00:00Z"),
    );
    let (_, pending) = h.append_awaiting_outcome(allowed(7)).await.unwrap();
    let pending = pending.expect("batched mode keeps a place for the outcome");
    wait_until(|| h.metrics().records_written == 1 && h.metrics().fsyncs == 1).await;
    let late = pending
        .fold(outcome(7))
        .expect_err("the record was written without its outcome");
    h.append(Event::AccessResult(late)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let lines = read_lines(dir.path());
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["access", "access_result"]);
    assert!(lines[0].get("status").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["request_id"], "req-0007");
    assert_eq!(lines[1]["status"], 200);
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// A record held for its outcome when the trail goes down was accepted before the outage:
/// once writing works again it is written ahead of the `recovered` record, not after it (the
/// trail would otherwise say the request came after the outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_held_when_the_trail_goes_down_is_written_before_recovered() {
    let dir = tempfile::tempdir().unwrap();
    // max_delay 100 ms: X's fsync is due 100 ms after the writer took it; A, taken 30 ms or
    // more after X, is still held (80 ms) when that fsync fails.
    let mut cfg = batched_cfg(dir.path(), Duration::from_millis(100), 100_000);
    cfg.retry_interval = Duration::from_millis(500);
    let (h, task, fault) = with_faults(cfg);
    let mut health = h.subscribe_health();
    fault.fail_fsync(FaultKind::Io);
    h.append(access(0, Decision::Deny)).await.unwrap();
    // Written (its fsync is what fails, and only at the deadline).
    wait_until(|| read_lines(dir.path()).len() == 1).await;
    // The writer's hold and deadline run on its own monotonic clock, which a test cannot
    // move: let real time pass so that A is taken well after X.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (_, pending) = h.append_awaiting_outcome(allowed(1)).await.unwrap();
    health.wait_for(|h| !h.healthy).await.unwrap();
    fault.heal();
    health.wait_for(|h| h.healthy).await.unwrap();
    drop(pending);
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let lines = read_lines(dir.path());
    let seen: Vec<String> = lines
        .iter()
        .map(|l| {
            let id = l["request_id"].as_str().unwrap_or("");
            format!("{} {id}", l["kind"].as_str().unwrap())
        })
        .map(|s| s.trim_end().to_string())
        .collect();
    assert_eq!(
        seen,
        ["access req-0000", "access req-0001", "recovered"],
        "records accepted before the outage come before `recovered`"
    );
    let rep = verify(dir.path()).unwrap();
    assert!(rep.is_ok(), "{rep}");
}

/// In strict mode the record is on disk before the request goes on: no outcome can join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_records_keep_no_place_for_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (h, task) = start(strict_cfg(dir.path()), clock("2026-11-23T01:00:00Z"));
    let (r, pending) = h.append_awaiting_outcome(allowed(1)).await.unwrap();
    assert!(matches!(r, Receipt::Durable { seq: 1, .. }));
    assert!(pending.is_none());
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
}
