//! Audit record parsing and verification: a trail written by the real writer (ending in a
//! signed checkpoint) is copied and changed by the fuzzer — bytes replaced, inserted or cut,
//! a line duplicated or dropped — and `verify_with` must never panic and must fail whenever
//! the trail differs from what was written.
#![no_main]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sekisho_audit::checkpoint::{PublicKey, generate_key_pair};
use sekisho_audit::{
    AccessEvent, AuditConfig, AuditWriter, CheckpointConfig, Decision, Durability, Event,
    ManualClock, StopEvent, VerifyOptions, verify_with,
};

struct Template {
    _keep: tempfile::TempDir,
    public: PathBuf,
    /// (file name, bytes) of every file in the trail directory.
    files: Vec<(String, Vec<u8>)>,
    work: tempfile::TempDir,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let keep = tempfile::tempdir().unwrap();
        let dir = keep.path().join("log");
        let (private, public) = generate_key_pair().unwrap();
        std::fs::write(keep.path().join("cp.key"), private).unwrap();
        std::fs::write(keep.path().join("cp.pub"), public).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut cfg = AuditConfig::new(&dir, "gw-fuzz");
            cfg.durability = Durability::Strict;
            let mut cp = CheckpointConfig::new(keep.path().join("cp.key"));
            cp.every_records = 4;
            cfg.checkpoint = Some(cp);
            let at = jiff::Timestamp::from_second(1_795_000_000).unwrap();
            let (h, task) = AuditWriter::start(cfg, Arc::new(ManualClock::new(at))).unwrap();
            for i in 0..10u32 {
                let e = Event::Access(Box::new(AccessEvent {
                    request_id: format!("req-{i}"),
                    zone: "lgwan".into(),
                    listener: "lgwan-https".into(),
                    route: Some("kintai".into()),
                    method: "GET".into(),
                    host: "kintai.city.example.lg.jp".into(),
                    path: format!("/items/{i}"),
                    client_ip: "127.0.0.1".into(),
                    decision: if i % 3 == 0 { Decision::Deny } else { Decision::Allow },
                    policy_version: "v1".into(),
                    ..Default::default()
                }));
                h.append(e).await.unwrap();
            }
            h.shutdown(Some(Event::Stop(StopEvent { reason: "fuzz".into() })))
                .await
                .unwrap();
            task.await.unwrap().unwrap();
        });
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        let public = keep.path().join("cp.pub");
        let opts = VerifyOptions { public_key: Some(PublicKey::load(&public).unwrap()), checkpoints: None };
        assert!(verify_with(&dir, &opts).unwrap().is_ok(), "template verifies");
        Template { _keep: keep, public, files, work: tempfile::tempdir().unwrap() }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = template();
    if data.len() < 4 {
        return;
    }
    let file = usize::from(data[0]) % t.files.len();
    let op = data[1] % 5;
    let mut files = t.files.clone();
    let bytes = &mut files[file].1;
    if bytes.is_empty() {
        return;
    }
    let pos = (usize::from(u16::from_le_bytes([data[2], data[3]])) * bytes.len()) >> 16;
    let rest = &data[4..];
    match op {
        0 => {
            for (k, b) in rest.iter().enumerate() {
                if let Some(x) = bytes.get_mut(pos + k) {
                    *x = *b;
                }
            }
        }
        1 => {
            let tail = bytes.split_off(pos);
            bytes.extend_from_slice(rest);
            bytes.extend_from_slice(&tail);
        }
        2 => {
            let n = rest.first().map(|n| usize::from(*n) + 1).unwrap_or(1);
            let end = (pos + n).min(bytes.len());
            bytes.drain(pos..end);
        }
        3 => bytes.truncate(pos),
        _ => {
            // Duplicate or drop the line containing `pos`.
            let start = bytes[..pos].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let end = bytes[pos..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |i| pos + i + 1);
            let line = bytes[start..end].to_vec();
            if rest.first().is_some_and(|b| b & 1 == 1) {
                bytes.splice(start..start, line);
            } else {
                bytes.drain(start..end);
            }
        }
    }
    // Only the records are the trail; the checkpoint sidecar is checked for panics only.
    let changed = files
        .iter()
        .zip(&t.files)
        .any(|(a, b)| a.0.starts_with("audit-") && a != b);
    let dir = t.work.path().join("trail");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, b) in &files {
        std::fs::write(dir.join(name), b).unwrap();
    }
    let opts = VerifyOptions { public_key: Some(PublicKey::load(&t.public).unwrap()), checkpoints: None };
    if let Ok(report) = verify_with(&dir, &opts) {
        if changed {
            assert!(!report.is_ok(), "a changed trail verified (file {}, op {op}, pos {pos})", files[file].0);
        }
    }
});
