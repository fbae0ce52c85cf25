//! `verify`: walk every file in order and check the hash chain, sequence numbers, torn
//! lines, the start of the trail, and (when present) signed checkpoints.
//!
//! The report names the first record that was changed, removed, inserted or reordered by
//! file, line and sequence number. How a problem is classified:
//!
//! | what is seen at a line                                 | reported as |
//! |--------------------------------------------------------|-------------|
//! | seq as expected, `prev` ≠ hash of the line before; the next line does chain to this one | the line before was **changed** |
//! | seq as expected, `prev` ≠ hash of the line before; the next line does not chain either | this line was **changed** |
//! | `prev` fine, seq not as expected                        | this line was **changed** |
//! | seq jumps ahead                                         | records **removed** (at a file boundary: the previous file was **truncated**) |
//! | seq goes back; the same line appeared before            | **inserted** (a copy) |
//! | seq goes back; the expected seq follows later in the file | **reordered** |
//! | the trail ends before a checkpoint's seq                | **truncated** |
//! | the last line has no newline                            | **torn** last line |
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::AuditError;
use crate::checkpoint::{self, Checkpoint, PublicKey};
use crate::files;
use crate::record::{Event, GENESIS_PREV, Record, line_hash};

/// What kind of problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's bytes differ from what was written.
    Changed,
    /// Records are missing in the middle of the trail.
    Removed,
    /// A record was added.
    Inserted,
    /// Records are out of order.
    Reordered,
    /// The end of a file or of the whole trail is missing.
    Truncated,
    /// The last line of a file is incomplete (a crash during a write, not yet repaired).
    TornLine,
    /// A line is not a record at all.
    Unparseable,
    /// The beginning of the trail is missing and no retention record explains it.
    MissingStart,
    /// A checkpoint is missing, unsigned, badly signed, or does not match the trail.
    Checkpoint,
}

impl ProblemKind {
    /// Short label, English and Japanese.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::Changed => "changed / 改ざん",
            ProblemKind::Removed => "removed / 削除",
            ProblemKind::Inserted => "inserted / 挿入",
            ProblemKind::Reordered => "reordered / 順序入替",
            ProblemKind::Truncated => "truncated / 切り詰め",
            ProblemKind::TornLine => "torn line / 書きかけ行",
            ProblemKind::Unparseable => "unparseable / 解析不能",
            ProblemKind::MissingStart => "missing start / 先頭欠落",
            ProblemKind::Checkpoint => "checkpoint / チェックポイント",
        }
    }
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Kind.
    pub kind: ProblemKind,
    /// File name (a trail file, or the checkpoint sidecar).
    pub file: String,
    /// 1-based line number (0 when the problem is not at a line).
    pub line: usize,
    /// Sequence number of the record concerned, when known.
    pub seq: Option<u64>,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind.label(), self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(s) = self.seq {
            write!(f, " seq={s}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Per-file summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// File name.
    pub name: String,
    /// Complete lines.
    pub records: u64,
    /// First seq in the file.
    pub first_seq: Option<u64>,
    /// Last seq in the file.
    pub last_seq: Option<u64>,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Files checked, in order.
    pub files: Vec<FileSummary>,
    /// Records checked.
    pub records: u64,
    /// First seq of the trail.
    pub first_seq: Option<u64>,
    /// Last seq of the trail.
    pub last_seq: Option<u64>,
    /// Hash of the last line (compare with a checkpoint or syslog copy).
    pub last_hash: Option<String>,
    /// Checkpoints compared with the trail.
    pub checkpoints_checked: usize,
    /// Whether checkpoint signatures were checked (a public key was given).
    pub signatures_checked: bool,
    /// Everything wrong, first problem first.
    pub problems: Vec<Problem>,
    /// Things an auditor should know that are not problems.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Nothing wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem, if any.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "files / ファイル数: {}   records / レコード数: {}   seq: {} .. {}",
            self.files.len(),
            self.records,
            self.first_seq.map_or("-".into(), |s| s.to_string()),
            self.last_seq.map_or("-".into(), |s| s.to_string()),
        )?;
        if let Some(h) = &self.last_hash {
            writeln!(f, "last hash / 最終ハッシュ: {h}")?;
        }
        writeln!(
            f,
            "checkpoints / チェックポイント: {} checked, signatures {}",
            self.checkpoints_checked,
            if self.signatures_checked {
                "verified / 署名検証済"
            } else {
                "NOT checked (no public key) / 署名未検証"
            }
        )?;
        for n in &self.notes {
            writeln!(f, "note / 注記: {n}")?;
        }
        if self.problems.is_empty() {
            writeln!(f, "OK: the trail is intact / 改ざんは検出されませんでした")
        } else {
            writeln!(
                f,
                "FAILED: {} problem(s) / 問題 {} 件",
                self.problems.len(),
                self.problems.len()
            )?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
            Ok(())
        }
    }
}

/// Options for [`verify_with`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Check checkpoint signatures with this key; then at least one checkpoint must exist.
    pub public_key: Option<PublicKey>,
    /// Checkpoint sidecar (default `<dir>/checkpoints.jsonl`).
    pub checkpoints: Option<PathBuf>,
}

const MAX_PROBLEMS: usize = 1000;

/// Verify the trail in `dir` (checkpoints from the default sidecar, signatures unchecked).
pub fn verify(dir: &Path) -> Result<VerifyReport, AuditError> {
    verify_with(dir, &VerifyOptions::default())
}

struct Prev {
    file: String,
    line: usize,
    seq: Option<u64>,
    hash: String,
}

/// Verify the trail in `dir`.
pub fn verify_with(dir: &Path, opts: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let mut rep = VerifyReport {
        signatures_checked: opts.public_key.is_some(),
        ..Default::default()
    };
    let sidecar = opts
        .checkpoints
        .clone()
        .unwrap_or_else(|| dir.join("checkpoints.jsonl"));
    let sidecar_name = sidecar
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoints")
        .to_string();
    let mut cps: HashMap<u64, Vec<(usize, Checkpoint)>> = HashMap::new();
    let mut cp_count = 0usize;
    for (i, cp) in checkpoint::read_sidecar(&sidecar)?.into_iter().enumerate() {
        match cp {
            Err(line) => rep.problems.push(Problem {
                kind: ProblemKind::Checkpoint,
                file: sidecar_name.clone(),
                line,
                seq: None,
                detail: "not a checkpoint".into(),
            }),
            Ok(cp) => {
                if let Some(k) = &opts.public_key
                    && !cp.verify(k)
                {
                    rep.problems.push(Problem {
                        kind: ProblemKind::Checkpoint,
                        file: sidecar_name.clone(),
                        line: i + 1,
                        seq: Some(cp.seq),
                        detail: "signature does not verify with the given public key".into(),
                    });
                    continue;
                }
                cp_count += 1;
                cps.entry(cp.seq).or_default().push((i + 1, cp));
            }
        }
    }

    let trail = files::list(dir)?;
    let mut prev: Option<Prev> = None;
    let mut start_seq: Option<u64> = None;
    let mut retention_through: u64 = 0;
    let mut last_kind = "";
    let mut seen_hashes: HashMap<String, u64> = HashMap::new();
    let mut cp_matched: HashSet<u64> = HashSet::new();

    for tf in &trail {
        let name = tf.name();
        // Copies are recognised within a file; memory stays bounded by the largest file.
        seen_hashes.clear();
        let data = std::fs::read(&tf.path).map_err(|e| AuditError::io(&tf.path, e))?;
        let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
        // `split` yields a final empty piece after the last newline; anything else is torn.
        let tail = lines.pop().unwrap_or_default();
        let mut summary = FileSummary {
            name: name.clone(),
            records: 0,
            first_seq: None,
            last_seq: None,
        };
        let parsed: Vec<Option<Record>> = lines
            .iter()
            .map(|l| serde_json::from_slice(l).ok())
            .collect();
        for (i, bytes) in lines.iter().enumerate() {
            let lineno = i + 1;
            let hash = line_hash(bytes);
            summary.records += 1;
            rep.records += 1;
            let Some(rec) = &parsed[i] else {
                rep.problems.push(Problem {
                    kind: ProblemKind::Unparseable,
                    file: name.clone(),
                    line: lineno,
                    seq: None,
                    detail: "line is not an audit record (changed or inserted)".into(),
                });
                prev = Some(Prev {
                    file: name.clone(),
                    line: lineno,
                    seq: None,
                    hash,
                });
                continue;
            };
            summary.first_seq.get_or_insert(rec.seq);
            summary.last_seq = Some(rec.seq);
            rep.first_seq.get_or_insert(rec.seq);
            rep.last_seq = Some(rec.seq);
            last_kind = rec.event.kind();
            if let Event::Retention(r) = &rec.event {
                retention_through = retention_through.max(r.removed_through_seq);
            }
            match &prev {
                None => {
                    start_seq = Some(rec.seq);
                    if rec.seq == 1 && rec.prev != GENESIS_PREV {
                        rep.problems.push(Problem {
                            kind: ProblemKind::Changed,
                            file: name.clone(),
                            line: lineno,
                            seq: Some(rec.seq),
                            detail: "first record of the trail does not start the chain".into(),
                        });
                    }
                }
                Some(p) => {
                    let want_seq = p.seq.map(|s| s + 1);
                    let seq_ok = want_seq.is_none_or(|w| w == rec.seq);
                    let prev_ok = rec.prev == p.hash;
                    if !(seq_ok && prev_ok) {
                        let problem = classify(
                            p,
                            &name,
                            lineno,
                            rec,
                            &hash,
                            want_seq,
                            prev_ok,
                            &seen_hashes,
                            lines.get(i + 1).copied(),
                            &parsed[i + 1..],
                        );
                        rep.problems.push(problem);
                    }
                }
            }
            if let Some(list) = cps.get(&rec.seq) {
                for (cpline, cp) in list {
                    cp_matched.insert(rec.seq);
                    if cp.hash != hash {
                        rep.problems.push(Problem {
                            kind: ProblemKind::Changed,
                            file: name.clone(),
                            line: lineno,
                            seq: Some(rec.seq),
                            detail: format!(
                                "record differs from what checkpoint {sidecar_name}:{cpline} attests"
                            ),
                        });
                    }
                }
            }
            seen_hashes.insert(hash.clone(), rec.seq);
            prev = Some(Prev {
                file: name.clone(),
                line: lineno,
                seq: Some(rec.seq),
                hash,
            });
        }
        if !tail.is_empty() {
            rep.problems.push(Problem {
                kind: ProblemKind::TornLine,
                file: name.clone(),
                line: lines.len() + 1,
                seq: None,
                detail: format!(
                    "last line is incomplete ({} bytes without a newline): a crash during a write, or a truncation; \
                     the writer cuts it off on its next start and records that",
                    tail.len()
                ),
            });
        }
        rep.files.push(summary);
        if rep.problems.len() > MAX_PROBLEMS {
            rep.problems.truncate(MAX_PROBLEMS);
            rep.notes
                .push(format!("stopped after {MAX_PROBLEMS} problems"));
            return Ok(rep);
        }
    }
    rep.last_hash = prev.as_ref().map(|p| p.hash.clone());

    if let Some(s) = start_seq
        && s > 1
    {
        if retention_through + 1 >= s {
            rep.notes.push(format!(
                "the trail starts at seq {s}: earlier files were removed by the retention rule (recorded in the trail)"
            ));
        } else {
            rep.problems.insert(
                0,
                Problem {
                    kind: ProblemKind::MissingStart,
                    file: trail.first().map(|f| f.name()).unwrap_or_default(),
                    line: 1,
                    seq: Some(s),
                    detail: format!(
                        "records 1..{} are missing and no retention record explains it",
                        s - 1
                    ),
                },
            );
        }
    }

    rep.checkpoints_checked = cp_matched.len();
    let last = rep.last_seq.unwrap_or(0);
    let mut beyond: Vec<&Checkpoint> = cps
        .values()
        .flatten()
        .map(|(_, c)| c)
        .filter(|c| c.seq > last)
        .collect();
    beyond.sort_by_key(|c| c.seq);
    if let Some(cp) = beyond.last() {
        rep.problems.push(Problem {
            kind: ProblemKind::Truncated,
            file: cp.file.clone(),
            line: 0,
            seq: Some(cp.seq),
            detail: format!(
                "the trail ends at seq {last}, but a checkpoint made at {} attests records up to seq {}: the end was cut off",
                cp.time, cp.seq
            ),
        });
    }
    if opts.public_key.is_some() && cp_count == 0 && rep.records > 0 {
        rep.problems.push(Problem {
            kind: ProblemKind::Checkpoint,
            file: sidecar_name.clone(),
            line: 0,
            seq: None,
            detail: "a public key was given but no signed checkpoint was found".into(),
        });
    }
    if let Some(max_cp) = cps.keys().copied().filter(|s| *s <= last).max() {
        if max_cp < last {
            rep.notes.push(format!(
                "records {}..{last} come after the last checkpoint: they are protected by the hash chain only",
                max_cp + 1
            ));
        }
    } else if rep.records > 0 {
        rep.notes.push(
            "no checkpoint covers the trail: a cut-off end cannot be detected without one".into(),
        );
    }
    if rep.records > 0 && last_kind != "stop" {
        rep.notes.push(
            "the trail does not end with a stop record: the gateway is running, or it stopped without writing one".into(),
        );
    }
    Ok(rep)
}

#[allow(clippy::too_many_arguments)] // reason: one call site; the values are all distinct facts about one line
fn classify(
    p: &Prev,
    file: &str,
    line: usize,
    rec: &Record,
    hash: &str,
    want_seq: Option<u64>,
    prev_ok: bool,
    seen: &HashMap<String, u64>,
    next_line: Option<&[u8]>,
    rest: &[Option<Record>],
) -> Problem {
    let at = |kind, detail: String| Problem {
        kind,
        file: file.to_string(),
        line,
        seq: Some(rec.seq),
        detail,
    };
    let Some(want) = want_seq else {
        return at(
            ProblemKind::Changed,
            "does not chain to the line before it".into(),
        );
    };
    if rec.seq == want && !prev_ok {
        let next_chains = next_line
            .and_then(|l| serde_json::from_slice::<Record>(l).ok())
            .is_some_and(|n| n.prev == hash);
        if next_chains {
            return Problem {
                kind: ProblemKind::Changed,
                file: p.file.clone(),
                line: p.line,
                seq: p.seq,
                detail: format!(
                    "this record was changed: the next record ({file}:{line}) holds a different hash for it"
                ),
            };
        }
        return at(
            ProblemKind::Changed,
            "this record was changed: it does not chain to the record before it".into(),
        );
    }
    if rec.seq != want && prev_ok {
        return at(
            ProblemKind::Changed,
            format!("sequence number was changed (expected {want})"),
        );
    }
    if rec.seq > want {
        if rest.iter().flatten().any(|r| r.seq == want) {
            return at(
                ProblemKind::Reordered,
                format!("out of order: expected seq {want} here, it comes later"),
            );
        }
        if line == 1 && p.file != file {
            return at(
                ProblemKind::Truncated,
                format!(
                    "{} ends at seq {} but this file starts at seq {}: the end of {} was cut off",
                    p.file,
                    want - 1,
                    rec.seq,
                    p.file
                ),
            );
        }
        return at(
            ProblemKind::Removed,
            format!(
                "records {want}..{} are missing before this one",
                rec.seq - 1
            ),
        );
    }
    if let Some(orig) = seen.get(hash) {
        return at(
            ProblemKind::Inserted,
            format!("copy of record seq {orig} inserted here (expected seq {want})"),
        );
    }
    if rest.iter().flatten().any(|r| r.seq == want) {
        return at(
            ProblemKind::Reordered,
            format!("out of order: expected seq {want} here, it comes later"),
        );
    }
    at(
        ProblemKind::Inserted,
        format!("record inserted here (expected seq {want})"),
    )
}
