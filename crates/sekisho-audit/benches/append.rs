//! Writer throughput in records/s: `batched` vs `strict`, one appender and 64 concurrent
//! appenders (group commit). Every iteration waits until its records are fsynced, so the
//! figures are sustained, durable throughput, not just queue acceptance.
//!
//! `cargo bench -p sekisho-audit --bench append` (files go to a tempdir on the build
//! machine's disk).
//!
//! Figures on the 2-core build machine (virtio disk, other builds running), 2026-11-23:
//!
//! | mode        | appenders | records/s (median) |
//! |-------------|-----------|--------------------|
//! | batched     | 1         | ≈ 91 000           |
//! | batched     | 64        | ≈ 68 000           |
//! | strict      | 1         | ≈ 550 (one fsync per record: ≈ 1.8 ms) |
//! | strict      | 64        | ≈ 9 900 (group commit) |
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sekisho_audit::{
    AccessEvent, AuditConfig, AuditHandle, AuditWriter, Decision, DeviceInfo, Durability, Event,
    Reason, SystemClock, UserInfo,
};

fn event(i: u64) -> Event {
    Event::Access(Box::new(AccessEvent {
        request_id: format!("01JDX{i:010}"),
        zone: "lgwan".into(),
        listener: "lgwan-https".into(),
        route: Some("kintai".into()),
        method: "GET".into(),
        host: "kintai.city.example.lg.jp".into(),
        path: "/api/v1/timesheet/2026/11".into(),
        client_ip: "203.0.113.25".into(),
        user: Some(
            UserInfo {
                sub: "u-0001".into(),
                email: Some("yamada.taro@city.example.lg.jp".into()),
                groups: vec!["staff".into()],
                amr: vec!["pwd".into(), "otp".into()],
                acr: Some("mfa".into()),
                auth_time: None,
            }
            .into(),
        ),
        device: Some(
            DeviceInfo {
                id: "PC-0042".into(),
                fingerprint: Some("ab".repeat(32)),
                posture: vec![],
            }
            .into(),
        ),
        decision: Decision::Deny,
        rule: Some("lgwan-staff".into()),
        reasons: vec![Reason {
            code: "outside_hours".into(),
            ja: Some("利用時間外です".into()),
            en: None,
        }]
        .into(),
        policy_version: "p-91ab".into(),
        ..Default::default()
    }))
}

async fn run(h: &AuditHandle, n: u64, concurrency: u64) {
    let target = h.metrics().records_written + n;
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(concurrency as usize) {
                h.append(event(i)).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Batched: wait for the fsync that covers these records.
    while h.metrics().records_written < target {
        tokio::task::yield_now().await;
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    let modes = [
        ("batched", Durability::default(), 1u64, 20_000u64),
        ("batched_64", Durability::default(), 64, 20_000),
        ("strict", Durability::Strict, 1, 200),
        ("strict_64", Durability::Strict, 64, 5_000),
    ];
    for (name, durability, concurrency, n) in modes {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AuditConfig::new(dir.path(), "bench");
        cfg.durability = durability;
        cfg.retention_days = None;
        let (h, task) = rt
            .block_on(async { AuditWriter::start(cfg, Arc::new(SystemClock)) })
            .unwrap();
        g.throughput(Throughput::Elements(n));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(run(&h, n, concurrency));
                }
                start.elapsed()
            })
        });
        rt.block_on(async {
            h.shutdown(None).await.unwrap();
            task.await.unwrap().unwrap();
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
