//! File names and how the trail is laid out in its directory.
//!
//! `audit-YYYY-MM-DD-NNNN.jsonl`: the date is the local date (in the configured time zone,
//! Asia/Tokyo by default) of the file's first record, so an auditor finds a day by name;
//! `NNNN` counts files within the day from 0001.
use std::path::{Path, PathBuf};

use jiff::civil::Date;

use crate::AuditError;

/// One trail file, identified by its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrailFile {
    /// Local date in the name.
    pub date: Date,
    /// Counter within the day (1-based).
    pub index: u32,
    /// Full path.
    pub path: PathBuf,
}

impl TrailFile {
    /// The file name (without directory).
    pub fn name(&self) -> String {
        file_name(self.date, self.index)
    }
}

/// `audit-2026-11-23-0001.jsonl`
pub fn file_name(date: Date, index: u32) -> String {
    format!("audit-{}-{index:04}.jsonl", date.strftime("%Y-%m-%d"))
}

/// Parse a trail file name; `None` for anything else.
pub fn parse_file_name(name: &str) -> Option<(Date, u32)> {
    let rest = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if rest.len() < 12 || rest.as_bytes()[10] != b'-' {
        return None;
    }
    let date: Date = rest[..10].parse().ok()?;
    let idx = &rest[11..];
    if idx.len() < 4 || !idx.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = idx.parse().ok()?;
    Some((date, index))
}

/// All trail files in `dir`, oldest first (by date, then counter).
pub fn list(dir: &Path) -> Result<Vec<TrailFile>, AuditError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| AuditError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((date, index)) = parse_file_name(name) {
            out.push(TrailFile {
                date,
                index,
                path: entry.path(),
            });
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_day() {
        let d: Date = "2026-11-23".parse().unwrap();
        assert_eq!(file_name(d, 1), "audit-2026-11-23-0001.jsonl");
        assert_eq!(parse_file_name("audit-2026-11-23-0001.jsonl"), Some((d, 1)));
        assert_eq!(
            parse_file_name("audit-2026-11-23-12345.jsonl"),
            Some((d, 12345))
        );
        assert_eq!(parse_file_name("audit-2026-11-23-0001.jsonl.torn"), None);
        assert_eq!(parse_file_name("checkpoints.jsonl"), None);
        assert_eq!(parse_file_name("audit-2026-13-23-0001.jsonl"), None);
    }
}
