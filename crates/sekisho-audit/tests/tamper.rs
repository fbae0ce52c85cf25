//! Property: any edit, deletion, insertion, reorder or truncation of a trail written by
//! the writer (ending in a signed checkpoint, as after a clean shutdown) fails `verify`.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use sekisho_audit::checkpoint::{PublicKey, generate_key_pair};
use sekisho_audit::record::{Record, line_hash};
use sekisho_audit::{
    AuditConfig, CheckpointConfig, Decision, Durability, Event, StopEvent, VerifyOptions,
    verify_with,
};

struct Template {
    _keep: tempfile::TempDir,
    dir: PathBuf,
    public: PathBuf,
    /// (file name, lines without newline)
    files: Vec<(String, Vec<Vec<u8>>)>,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let keep = tempfile::tempdir().unwrap();
        let dir = keep.path().join("log");
        let keys = keep.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let (private, public) = generate_key_pair().unwrap();
        std::fs::write(keys.join("cp.key"), private).unwrap();
        std::fs::write(keys.join("cp.pub"), public).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut cfg = AuditConfig::new(&dir, "gw-prop");
            cfg.durability = Durability::Strict;
            cfg.max_file_bytes = 6000;
            let mut cp = CheckpointConfig::new(keys.join("cp.key"));
            cp.every_records = 6;
            cfg.checkpoint = Some(cp);
            let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
            for i in 0..24 {
                let d = if i % 3 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                };
                h.append(access(i, d)).await.unwrap();
            }
            h.shutdown(Some(Event::Stop(StopEvent {
                reason: "test".into(),
            })))
            .await
            .unwrap();
            task.await.unwrap().unwrap();
        });
        let files = sekisho_audit::files::list(&dir)
            .unwrap()
            .iter()
            .map(|f| {
                let data = std::fs::read(&f.path).unwrap();
                let lines = data
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
                (f.name(), lines)
            })
            .collect();
        Template {
            _keep: keep,
            dir,
            public: keys.join("cp.pub"),
            files,
        }
    })
}

#[derive(Debug, Clone)]
enum Tamper {
    /// Change one byte of one line to a different value.
    Edit { line: usize, pos: usize, byte: u8 },
    /// Remove one line.
    Delete { line: usize },
    /// Insert a copy of line `from` before line `at`.
    InsertCopy { from: usize, at: usize },
    /// Insert, before line `at`, a well-formed record that chains to the line before it.
    InsertCrafted { at: usize },
    /// Swap two lines.
    Swap { a: usize, b: usize },
    /// Cut a file at a byte offset (fraction of its length).
    Truncate { file: usize, keep_per_mille: u32 },
    /// Remove a whole file.
    DeleteFile { file: usize },
    /// Remove the checkpoint sidecar.
    DeleteCheckpoints,
}

fn tamper_strategy(lines: usize, files: usize) -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (0..lines, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(line, p, byte)| {
            Tamper::Edit {
                line,
                pos: p.index(usize::MAX),
                byte,
            }
        }),
        (0..lines).prop_map(|line| Tamper::Delete { line }),
        (0..lines, 0..lines).prop_map(|(from, at)| Tamper::InsertCopy { from, at }),
        (1..lines).prop_map(|at| Tamper::InsertCrafted { at }),
        (0..lines, 0..lines)
            .prop_filter("distinct", |(a, b)| a != b)
            .prop_map(|(a, b)| Tamper::Swap { a, b }),
        (0..files, 0..1000u32).prop_map(|(file, keep_per_mille)| Tamper::Truncate {
            file,
            keep_per_mille
        }),
        (0..files).prop_map(|file| Tamper::DeleteFile { file }),
        Just(Tamper::DeleteCheckpoints),
    ]
}

/// Apply `t` to a copy of the template in `out`.
fn apply(t: &Tamper, out: &Path) {
    let tpl = template();
    std::fs::create_dir_all(out).unwrap();
    std::fs::copy(
        tpl.dir.join("checkpoints.jsonl"),
        out.join("checkpoints.jsonl"),
    )
    .unwrap();
    // Flatten to (file index, line) so that line-level tampering can cross files.
    let mut flat: Vec<(usize, Vec<u8>)> = tpl
        .files
        .iter()
        .enumerate()
        .flat_map(|(fi, (_, ls))| ls.iter().map(move |l| (fi, l.clone())))
        .collect();
    let mut truncate: Option<(usize, u32)> = None;
    let mut delete_file = None;
    match t {
        Tamper::Edit { line, pos, byte } => {
            let l = &mut flat[*line].1;
            let p = pos % l.len();
            l[p] = if l[p] == *byte {
                byte.wrapping_add(1)
            } else {
                *byte
            };
        }
        Tamper::Delete { line } => {
            flat.remove(*line);
        }
        Tamper::InsertCopy { from, at } => {
            let c = flat[*from].clone();
            flat.insert(*at, (flat[*at].0, c.1));
        }
        Tamper::InsertCrafted { at } => {
            let before: Record = serde_json::from_slice(&flat[at - 1].1).unwrap();
            let mut rec = before.clone();
            rec.seq = before.seq + 1;
            rec.prev = line_hash(&flat[at - 1].1);
            rec.event = access(999, Decision::Allow);
            flat.insert(*at, (flat[*at].0, serde_json::to_vec(&rec).unwrap()));
        }
        Tamper::Swap { a, b } => {
            let la = flat[*a].1.clone();
            let lb = std::mem::replace(&mut flat[*b].1, la);
            flat[*a].1 = lb;
        }
        Tamper::Truncate {
            file,
            keep_per_mille,
        } => truncate = Some((*file, *keep_per_mille)),
        Tamper::DeleteFile { file } => delete_file = Some(*file),
        Tamper::DeleteCheckpoints => std::fs::remove_file(out.join("checkpoints.jsonl")).unwrap(),
    }
    for (fi, (name, _)) in tpl.files.iter().enumerate() {
        if delete_file == Some(fi) {
            continue;
        }
        let mut data = Vec::new();
        for (_, l) in flat.iter().filter(|(f, _)| *f == fi) {
            data.extend_from_slice(l);
            data.push(b'\n');
        }
        if let Some((tf, per_mille)) = truncate
            && tf == fi
        {
            let keep = data.len() * per_mille as usize / 1000;
            data.truncate(keep.min(data.len() - 1));
        }
        std::fs::write(out.join(name), data).unwrap();
    }
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        public_key: Some(PublicKey::load(&template().public).unwrap()),
        checkpoints: None,
    }
}

#[test]
fn untouched_template_verifies() {
    let tpl = template();
    assert!(
        tpl.files.len() >= 3,
        "the template should span several files"
    );
    let rep = verify_with(&tpl.dir, &opts()).unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert!(rep.checkpoints_checked >= 4, "{rep}");
}

#[test]
fn wrong_public_key_fails() {
    let (_, other) = generate_key_pair().unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("other.pub"), other).unwrap();
    let o = VerifyOptions {
        public_key: Some(PublicKey::load(&d.path().join("other.pub")).unwrap()),
        checkpoints: None,
    };
    assert!(!verify_with(&template().dir, &o).unwrap().is_ok());
}

#[test]
fn removing_the_last_record_is_reported_as_truncation() {
    let d = tempfile::tempdir().unwrap();
    let total: usize = template().files.iter().map(|f| f.1.len()).sum();
    apply(&Tamper::Delete { line: total - 1 }, d.path());
    let rep = verify_with(d.path(), &opts()).unwrap();
    assert_eq!(
        rep.first_problem().unwrap().kind,
        sekisho_audit::verify::ProblemKind::Truncated,
        "{rep}"
    );
}

#[test]
fn an_edit_names_the_changed_record() {
    let d = tempfile::tempdir().unwrap();
    // Change the path of record 5 (line 5 of the first file) without touching its JSON shape.
    let line = &template().files[0].1[4];
    let pos = line.windows(6).position(|w| w == b"items/").unwrap() + 6;
    apply(
        &Tamper::Edit {
            line: 4,
            pos,
            byte: b'9',
        },
        d.path(),
    );
    let rep = verify_with(d.path(), &opts()).unwrap();
    let p = rep.first_problem().unwrap();
    assert_eq!(p.kind, sekisho_audit::verify::ProblemKind::Changed, "{rep}");
    assert_eq!((p.line, p.seq), (5, Some(5)), "{rep}");
    assert_eq!(p.file, template().files[0].0);
}

#[test]
fn a_swap_is_reported_as_reordering() {
    let d = tempfile::tempdir().unwrap();
    apply(&Tamper::Swap { a: 2, b: 3 }, d.path());
    let rep = verify_with(d.path(), &opts()).unwrap();
    let p = rep.first_problem().unwrap();
    assert_eq!(
        p.kind,
        sekisho_audit::verify::ProblemKind::Reordered,
        "{rep}"
    );
    assert_eq!((p.line, p.seq), (3, Some(4)), "{rep}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_tampering_fails_verification(t in {
        let tpl = template();
        let lines = tpl.files.iter().map(|f| f.1.len()).sum();
        tamper_strategy(lines, tpl.files.len())
    }) {
        let d = tempfile::tempdir().unwrap();
        apply(&t, d.path());
        let rep = verify_with(d.path(), &opts()).unwrap();
        prop_assert!(!rep.is_ok(), "tampering {:?} was not detected:\n{}", t, rep);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever is in the directory, verify reports; it never panics.
    #[test]
    fn verify_never_panics_on_arbitrary_files(
        a in prop::collection::vec(any::<u8>(), 0..2000),
        b in prop::collection::vec(any::<u8>(), 0..2000),
        cps in prop::collection::vec(any::<u8>(), 0..500),
    ) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("audit-2026-11-23-0001.jsonl"), &a).unwrap();
        std::fs::write(d.path().join("audit-2026-11-23-0002.jsonl"), &b).unwrap();
        std::fs::write(d.path().join("checkpoints.jsonl"), &cps).unwrap();
        let rep = verify_with(d.path(), &opts()).unwrap();
        // Random bytes are never a valid, signed trail.
        prop_assert!(!rep.is_ok() || (a.is_empty() && b.is_empty()));
    }
}
