//! Auditor queries: read the trail, filter, and print as a table, JSON lines or CSV.
//!
//! Output never includes the URL query string unless asked for (`show_query`); the
//! schema has no place for tokens, cookies or bodies in the first place.
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use jiff::Timestamp;

use crate::AuditError;
use crate::files;
use crate::record::{Decision, Event, Record};

/// Filters; every one that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
    /// User: OIDC sub or e-mail (case-insensitive, exact).
    pub user: Option<String>,
    /// Device: ID or certificate fingerprint (exact).
    pub device: Option<String>,
    /// Route name (access records only).
    pub route: Option<String>,
    /// Zone (access records only).
    pub zone: Option<String>,
    /// allow / deny (access records only).
    pub decision: Option<Decision>,
    /// Reason code (exact) or text (substring), in access, login failure and device
    /// certificate failure records.
    pub reason: Option<String>,
    /// Record kinds (`access`, `login_failure`, …); empty means all.
    pub kinds: Vec<String>,
}

impl Filter {
    /// Does `rec` pass?
    pub fn matches(&self, rec: &Record) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = rec.timestamp() else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == rec.event.kind()) {
            return false;
        }
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if let Some(u) = &self.user {
            let ok = match &rec.event {
                Event::Access(a) => a
                    .user
                    .as_ref()
                    .is_some_and(|x| eq(&x.sub, u) || x.email.as_deref().is_some_and(|e| eq(e, u))),
                Event::LoginSuccess(l) => {
                    eq(&l.user.sub, u) || l.user.email.as_deref().is_some_and(|e| eq(e, u))
                }
                Event::LoginFailure(l) => l.user_hint.as_deref().is_some_and(|h| eq(h, u)),
                Event::Logout(s) | Event::SessionRefresh(s) => eq(&s.sub, u),
                Event::StepUp(s) => eq(&s.sub, u),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        if let Some(d) = &self.device {
            let ok = match &rec.event {
                Event::Access(a) => a
                    .device
                    .as_ref()
                    .is_some_and(|x| x.id == *d || x.fingerprint.as_deref() == Some(d)),
                Event::LoginSuccess(l) => l.device_id.as_deref() == Some(d),
                Event::DeviceCertFailure(f) => {
                    f.device_id.as_deref() == Some(d) || f.fingerprint.as_deref() == Some(d)
                }
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        if self.route.is_some() || self.zone.is_some() || self.decision.is_some() {
            let Event::Access(a) = &rec.event else {
                return false;
            };
            if self
                .route
                .as_ref()
                .is_some_and(|r| a.route.as_ref() != Some(r))
                || self.zone.as_ref().is_some_and(|z| a.zone != *z)
                || self.decision.is_some_and(|d| a.decision != d)
            {
                return false;
            }
        }
        if let Some(r) = &self.reason {
            let ok = match &rec.event {
                Event::Access(a) => a.reasons.iter().any(|x| {
                    x.code == *r
                        || x.ja.as_deref().is_some_and(|t| t.contains(r.as_str()))
                        || x.en.as_deref().is_some_and(|t| t.contains(r.as_str()))
                }),
                Event::LoginFailure(l) => l.reason == *r,
                Event::DeviceCertFailure(f) => f.reason == *r,
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// A record with where it was found.
#[derive(Debug, Clone)]
pub struct Located {
    /// File name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The record.
    pub record: Record,
}

/// Read every record in `dir` in order. Lines that do not parse are passed to `bad`
/// (file, line) and skipped: `verify` is the tool that judges them.
pub fn read_all(
    dir: &Path,
    mut each: impl FnMut(Located),
    mut bad: impl FnMut(&str, usize),
) -> Result<(), AuditError> {
    for tf in files::list(dir)? {
        let name = tf.name();
        let data = std::fs::read(&tf.path).map_err(|e| AuditError::io(&tf.path, e))?;
        for (i, l) in data.split(|b| *b == b'\n').enumerate() {
            if l.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Record>(l) {
                Ok(record) => each(Located {
                    file: name.clone(),
                    line: i + 1,
                    record,
                }),
                Err(_) => bad(&name, i + 1),
            }
        }
    }
    Ok(())
}

/// Run a query: matching records in order, with `access_result` records folded into the
/// `access` record of the same request (and not listed on their own).
pub fn query(
    dir: &Path,
    filter: &Filter,
    bad: impl FnMut(&str, usize),
) -> Result<Vec<Located>, AuditError> {
    let mut out: Vec<Located> = Vec::new();
    let mut by_request: HashMap<String, usize> = HashMap::new();
    let fold = filter.kinds.is_empty() || filter.kinds.iter().any(|k| k == "access");
    read_all(
        dir,
        |loc| {
            if fold && let Event::AccessResult(r) = &loc.record.event {
                if let Some(&i) = by_request.get(&r.request_id)
                    && let Event::Access(a) = &mut out[i].record.event
                {
                    a.upstream = r.upstream.clone().or(a.upstream.take());
                    a.upstream_status = r.upstream_status.or(a.upstream_status);
                    a.status = Some(r.status);
                    a.bytes_in = Some(r.bytes_in);
                    a.bytes_out = Some(r.bytes_out);
                    a.duration_us = Some(r.duration_us);
                }
                if filter.kinds.iter().all(|k| k != "access_result") {
                    return;
                }
            }
            if filter.matches(&loc.record) {
                if let Event::Access(a) = &loc.record.event {
                    // The first record of a request is its decision; a later one with the same
                    // ID (an upgraded connection's withdrawal) must not take its outcome.
                    by_request.entry(a.request_id.clone()).or_insert(out.len());
                }
                out.push(loc);
            }
        },
        bad,
    )?;
    Ok(out)
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON record per line.
    JsonLines,
    /// CSV for Excel: UTF-8 with BOM, CRLF, every field quoted, formulas neutralised.
    Csv,
}

/// CSV / table columns, in order.
pub const COLUMNS: &[&str] = &[
    "time",
    "seq",
    "kind",
    "instance",
    "request_id",
    "zone",
    "listener",
    "route",
    "method",
    "host",
    "path",
    "client_ip",
    "user_sub",
    "user_email",
    "groups",
    "amr",
    "acr",
    "device_id",
    "device_fingerprint",
    "posture",
    "decision",
    "rule",
    "reason_codes",
    "reasons_ja",
    "policy_version",
    "upstream",
    "upstream_status",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "detail",
    "file",
    "line",
];

/// One record flattened to [`COLUMNS`].
pub fn row(loc: &Located, show_query: bool) -> Vec<String> {
    let r = &loc.record;
    let mut v: HashMap<&str, String> = HashMap::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let num = |o: Option<u64>| o.map(|x| x.to_string()).unwrap_or_default();
    v.insert("time", r.time.clone());
    v.insert("seq", r.seq.to_string());
    v.insert("kind", r.event.kind().to_string());
    v.insert("instance", r.instance.clone());
    let detail: String = match &r.event {
        Event::Access(a) => {
            v.insert("request_id", a.request_id.clone());
            v.insert("zone", a.zone.clone());
            v.insert("listener", a.listener.clone());
            v.insert("route", opt(&a.route));
            v.insert("method", a.method.to_string());
            v.insert("host", a.host.clone());
            let path = match (&a.query, show_query) {
                (Some(q), true) => format!("{}?{q}", a.path),
                _ => a.path.clone(),
            };
            v.insert("path", path);
            v.insert("client_ip", a.client_ip.clone());
            if let Some(u) = &a.user {
                v.insert("user_sub", u.sub.clone());
                v.insert("user_email", opt(&u.email));
                v.insert("groups", u.groups.join(";"));
                v.insert("amr", u.amr.join(";"));
                v.insert("acr", opt(&u.acr));
            }
            if let Some(d) = &a.device {
                v.insert("device_id", d.id.clone());
                v.insert("device_fingerprint", opt(&d.fingerprint));
                let facts: Vec<String> = d
                    .posture
                    .iter()
                    .map(|p| match p.age_secs {
                        Some(age) => format!("{}={} ({age}s)", p.name, p.value),
                        None => format!("{}={}", p.name, p.value),
                    })
                    .collect();
                v.insert("posture", facts.join(";"));
            }
            v.insert("decision", a.decision.as_str().to_string());
            v.insert("rule", opt(&a.rule));
            v.insert(
                "reason_codes",
                a.reasons
                    .iter()
                    .map(|x| x.code.as_ref())
                    .collect::<Vec<_>>()
                    .join(";"),
            );
            v.insert(
                "reasons_ja",
                a.reasons
                    .iter()
                    .filter_map(|x| x.ja.as_deref().or(x.en.as_deref()))
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
            v.insert("policy_version", a.policy_version.clone());
            v.insert("upstream", opt(&a.upstream));
            v.insert("upstream_status", num(a.upstream_status.map(u64::from)));
            v.insert("status", num(a.status.map(u64::from)));
            v.insert("bytes_in", num(a.bytes_in));
            v.insert("bytes_out", num(a.bytes_out));
            v.insert(
                "duration_ms",
                a.duration_us
                    .map(|d| format!("{:.3}", d as f64 / 1000.0))
                    .unwrap_or_default(),
            );
            String::new()
        }
        Event::AccessResult(x) => {
            v.insert("request_id", x.request_id.clone());
            v.insert("upstream", opt(&x.upstream));
            v.insert("upstream_status", num(x.upstream_status.map(u64::from)));
            v.insert("status", x.status.to_string());
            v.insert("bytes_in", x.bytes_in.to_string());
            v.insert("bytes_out", x.bytes_out.to_string());
            v.insert(
                "duration_ms",
                format!("{:.3}", x.duration_us as f64 / 1000.0),
            );
            opt(&x.error)
        }
        Event::LoginSuccess(l) => {
            v.insert("request_id", l.request_id.clone());
            v.insert("client_ip", l.client_ip.clone());
            v.insert("user_sub", l.user.sub.clone());
            v.insert("user_email", opt(&l.user.email));
            v.insert("groups", l.user.groups.join(";"));
            v.insert("amr", l.user.amr.join(";"));
            v.insert("acr", opt(&l.user.acr));
            v.insert("device_id", opt(&l.device_id));
            format!("issuer={}", l.issuer)
        }
        Event::LoginFailure(l) => {
            v.insert("request_id", l.request_id.clone());
            v.insert("client_ip", l.client_ip.clone());
            v.insert("user_sub", opt(&l.user_hint));
            v.insert("reason_codes", l.reason.clone());
            format!("issuer={}", l.issuer)
        }
        Event::Logout(s) | Event::SessionRefresh(s) => {
            v.insert("request_id", s.request_id.clone());
            v.insert("client_ip", s.client_ip.clone());
            v.insert("user_sub", s.sub.clone());
            format!("outcome={}", s.outcome)
        }
        Event::StepUp(s) => {
            v.insert("request_id", s.request_id.clone());
            v.insert("user_sub", s.sub.clone());
            v.insert("route", opt(&s.route));
            format!("required={} outcome={}", s.required, s.outcome)
        }
        Event::DeviceCertFailure(f) => {
            v.insert("request_id", opt(&f.request_id));
            v.insert("listener", f.listener.clone());
            v.insert("client_ip", f.client_ip.clone());
            v.insert("device_id", opt(&f.device_id));
            v.insert("device_fingerprint", opt(&f.fingerprint));
            v.insert("reason_codes", f.reason.clone());
            String::new()
        }
        Event::ConfigReload(c) => {
            v.insert("policy_version", c.policy_version.clone());
            let mut d = format!("outcome={} config_version={}", c.outcome, c.config_version);
            if let Some(p) = &c.previous_policy_version {
                d.push_str(&format!(" previous_policy_version={p}"));
            }
            for ch in &c.changes {
                d.push_str(&format!("; {ch}"));
            }
            for e in &c.errors {
                d.push_str(&format!("; error: {e}"));
            }
            d
        }
        Event::ConfigError(c) => format!("{}: {}", c.source, c.errors.join("; ")),
        Event::Start(s) => {
            v.insert("policy_version", s.policy_version.clone());
            format!("version={} config_version={}", s.version, s.config_version)
        }
        Event::Stop(s) => format!("reason={}", s.reason),
        Event::Rotated(x) => format!("previous_file={} reason={}", x.previous_file, x.reason),
        Event::Retention(x) => format!(
            "removed {} file(s) through seq {} (retention {} days): {}",
            x.removed.len(),
            x.removed_through_seq,
            x.retention_days,
            x.removed.join(";")
        ),
        Event::Repaired(x) => format!(
            "torn last line of {} cut off: {} bytes, sha256 {} (copy: {})",
            x.file, x.removed_bytes, x.removed_sha256, x.copy
        ),
        Event::Recovered(x) => format!(
            "writing failed since {} ({}); {} append(s) refused meanwhile",
            x.failed_since, x.error, x.rejected_appends
        ),
    };
    v.insert("detail", detail);
    v.insert("file", loc.file.clone());
    v.insert("line", loc.line.to_string());
    COLUMNS
        .iter()
        .map(|c| v.remove(c).unwrap_or_default())
        .collect()
}

/// One CSV cell: neutralise spreadsheet formulas, then quote.
///
/// A cell that begins with `=`, `+`, `-`, `@`, tab or CR would be run as a formula by
/// Excel, so it gets a leading `'` (OWASP "CSV injection").
pub fn csv_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push('"');
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Write results in `format`.
pub fn write(
    out: &mut impl Write,
    rows: &[Located],
    format: Format,
    show_query: bool,
) -> io::Result<()> {
    match format {
        Format::JsonLines => {
            for loc in rows {
                let mut rec = loc.record.clone();
                if !show_query && let Event::Access(a) = &mut rec.event {
                    a.query = None;
                }
                serde_json::to_writer(&mut *out, &rec)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            out.write_all("\u{feff}".as_bytes())?;
            let header: Vec<String> = COLUMNS.iter().map(|c| csv_cell(c)).collect();
            out.write_all(header.join(",").as_bytes())?;
            out.write_all(b"\r\n")?;
            for loc in rows {
                let cells: Vec<String> = row(loc, show_query).iter().map(|c| csv_cell(c)).collect();
                out.write_all(cells.join(",").as_bytes())?;
                out.write_all(b"\r\n")?;
            }
        }
        Format::Table => {
            const SHOWN: &[&str] = &[
                "time",
                "seq",
                "kind",
                "user_sub",
                "device_id",
                "route",
                "method",
                "path",
                "decision",
                "reason_codes",
                "detail",
            ];
            let idx: Vec<usize> = SHOWN
                .iter()
                .map(|c| COLUMNS.iter().position(|x| x == c).unwrap_or(0))
                .collect();
            let mut table: Vec<Vec<String>> = vec![SHOWN.iter().map(|s| s.to_string()).collect()];
            for loc in rows {
                let r = row(loc, show_query);
                table.push(idx.iter().map(|&i| clip(&r[i], 60)).collect());
            }
            let mut widths = vec![0usize; SHOWN.len()];
            for r in &table {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(display_width(c));
                }
            }
            for r in &table {
                let mut line = String::new();
                for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
                    line.push_str(c);
                    if i + 1 < r.len() {
                        line.push_str(&" ".repeat(w - display_width(c) + 2));
                    }
                }
                writeln!(out, "{}", line.trim_end())?;
            }
        }
    }
    Ok(())
}

fn clip(s: &str, max: usize) -> String {
    if display_width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > max - 1 {
            break;
        }
        w += cw;
        out.push(c);
    }
    out.push('…');
    out
}

/// Terminal width of a string: East Asian wide characters count two.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}
