//! `sekisho audit …`: the auditor's tools around `sekisho-audit`.
//!
//! * `audit verify DIR`  — check the hash chain, sequence, torn lines and signed checkpoints;
//!   exit 1 when anything is wrong
//! * `audit query DIR`   — filter records; table, JSON lines or CSV (Excel)
//! * `audit export DIR`  — the same filters, CSV (default) or JSON lines to a file
//! * `audit stats DIR`   — denials by reason and route, access outside office hours, per day
//! * `audit keygen`      — an Ed25519 key pair for signed checkpoints
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use sekisho_audit::checkpoint::{PublicKey, generate_key_pair};
use sekisho_audit::query::{self, Filter, Format};
use sekisho_audit::stats::{OfficeHours, stats};
use sekisho_audit::{Decision, VerifyOptions, verify_with};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the trail in DIR: names the first record that was changed, removed, inserted
    /// or reordered, and any truncation. Exit status 1 when anything is wrong.
    Verify {
        /// Audit log directory.
        dir: PathBuf,
        /// Ed25519 public key (PEM) to check signed checkpoints with.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Checkpoint file (default DIR/checkpoints.jsonl).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show records that match the filters.
    Query(QueryArgs),
    /// Write records that match the filters to a file (CSV for Excel by default).
    Export {
        #[command(flatten)]
        query: QueryArgs,
    },
    /// Denials by reason and by route, access outside office hours, per day.
    Stats(StatsArgs),
    /// Make an Ed25519 key pair for signed checkpoints. Keep the private key outside
    /// the log directory; give the public key to auditors.
    Keygen {
        /// Where to write the private key (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        private: PathBuf,
        /// Where to write the public key (PEM).
        #[arg(long)]
        public: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutFormat {
    /// Aligned columns.
    Table,
    /// One JSON record per line.
    Jsonl,
    /// CSV for Excel (UTF-8 with BOM, CRLF).
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DecisionArg {
    Allow,
    Deny,
}

#[derive(Args)]
pub struct FilterArgs {
    /// Audit log directory.
    dir: PathBuf,
    /// From this time (RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` in --tz).
    #[arg(long)]
    since: Option<String>,
    /// Until this time, exclusive (a date means the end of that day).
    #[arg(long)]
    until: Option<String>,
    /// User: OIDC subject or e-mail.
    #[arg(long)]
    user: Option<String>,
    /// Device ID or certificate fingerprint.
    #[arg(long)]
    device: Option<String>,
    /// Route name.
    #[arg(long)]
    route: Option<String>,
    /// Zone.
    #[arg(long)]
    zone: Option<String>,
    /// allow or deny.
    #[arg(long, value_enum)]
    decision: Option<DecisionArg>,
    /// Reason code, or part of the reason text.
    #[arg(long)]
    reason: Option<String>,
    /// Record kind (access, login_success, login_failure, …); repeatable.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Time zone for dates given without an offset.
    #[arg(long, default_value = "Asia/Tokyo")]
    tz: String,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Output format (query: table; export: csv).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Include URL query strings (if the gateway recorded them; redacted there).
    #[arg(long)]
    show_query: bool,
}

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Office hours, `HH:MM-HH:MM`.
    #[arg(long, default_value = "08:30-17:15")]
    office_hours: String,
    /// Working days, comma-separated (`mon,tue,wed,thu,fri`).
    #[arg(long, default_value = "mon,tue,wed,thu,fri")]
    weekdays: String,
    /// A day off on a working weekday (national holiday …); repeatable.
    #[arg(long = "holiday")]
    holidays: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            dir,
            public_key,
            checkpoints,
            json,
        } => verify_cmd(&dir, public_key, checkpoints, json),
        AuditCommand::Query(q) => query_cmd(q, Format::Table),
        AuditCommand::Export { query } => query_cmd(query, Format::Csv),
        AuditCommand::Stats(s) => stats_cmd(s),
        AuditCommand::Keygen { private, public } => keygen(&private, &public),
    }
}

fn verify_cmd(
    dir: &Path,
    public_key: Option<PathBuf>,
    checkpoints: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let public_key = public_key
        .map(|p| PublicKey::load(&p))
        .transpose()
        .context("loading the public key")?;
    let report = verify_with(
        dir,
        &VerifyOptions {
            public_key,
            checkpoints,
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn filter(a: &FilterArgs) -> Result<Filter> {
    let tz = TimeZone::get(&a.tz).with_context(|| format!("unknown time zone {}", a.tz))?;
    Ok(Filter {
        since: a
            .since
            .as_deref()
            .map(|s| parse_time(s, &tz, false))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| parse_time(s, &tz, true))
            .transpose()?,
        user: a.user.clone(),
        device: a.device.clone(),
        route: a.route.clone(),
        zone: a.zone.clone(),
        decision: a.decision.map(|d| match d {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Deny => Decision::Deny,
        }),
        reason: a.reason.clone(),
        kinds: a.kinds.clone(),
    })
}

/// RFC 3339, a civil date-time in `tz`, or a date (its start; with `end_of_day`, the
/// start of the next day, so `--until 2026-11-23` includes the 23rd).
fn parse_time(s: &str, tz: &TimeZone, end_of_day: bool) -> Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if !s.contains(['T', 't', ' '])
        && let Ok(d) = s.parse::<Date>()
    {
        let d = if end_of_day { d.tomorrow()? } else { d };
        return Ok(d
            .to_datetime(Time::midnight())
            .to_zoned_datetime(tz.clone())?
            .timestamp());
    }
    let dt: DateTime = s
        .parse()
        .with_context(|| format!("cannot read time {s:?}"))?;
    Ok(dt.to_zoned_datetime(tz.clone())?.timestamp())
}

fn query_cmd(q: QueryArgs, default: Format) -> Result<ExitCode> {
    let f = filter(&q.filter)?;
    let mut bad = 0usize;
    let rows = query::query(&q.filter.dir, &f, |file, line| {
        bad += 1;
        eprintln!("warning: {file}:{line} is not a record (run `sekisho audit verify`)");
    })?;
    let format = match q.format {
        None => default,
        Some(OutFormat::Table) => Format::Table,
        Some(OutFormat::Jsonl) => Format::JsonLines,
        Some(OutFormat::Csv) => Format::Csv,
    };
    match &q.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            query::write(&mut w, &rows, format, q.show_query)?;
            w.flush()?;
            eprintln!("{} record(s) written to {}", rows.len(), path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            query::write(&mut w, &rows, format, q.show_query)?;
            w.flush()?;
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn stats_cmd(s: StatsArgs) -> Result<ExitCode> {
    let f = filter(&s.filter)?;
    let tz = TimeZone::get(&s.filter.tz)?;
    let (start, end) = s
        .office_hours
        .split_once('-')
        .context("--office-hours must look like 08:30-17:15")?;
    let weekdays = s
        .weekdays
        .split(',')
        .map(|w| weekday(w.trim()))
        .collect::<Result<Vec<_>>>()?;
    let holidays = s
        .holidays
        .iter()
        .map(|h| h.parse::<Date>().with_context(|| format!("--holiday {h}")))
        .collect::<Result<BTreeSet<_>>>()?;
    let hours = OfficeHours {
        tz,
        weekdays,
        start: start.trim().parse().context("office hours start")?,
        end: end.trim().parse().context("office hours end")?,
        holidays,
    };
    let rows = query::query(&s.filter.dir, &f, |file, line| {
        eprintln!("warning: {file}:{line} is not a record (run `sekisho audit verify`)");
    })?;
    let st = stats(&rows, &hours);
    if s.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{st}");
    }
    Ok(ExitCode::SUCCESS)
}

fn weekday(s: &str) -> Result<Weekday> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "mon" | "月" => Weekday::Monday,
        "tue" | "火" => Weekday::Tuesday,
        "wed" | "水" => Weekday::Wednesday,
        "thu" | "木" => Weekday::Thursday,
        "fri" | "金" => Weekday::Friday,
        "sat" | "土" => Weekday::Saturday,
        "sun" | "日" => Weekday::Sunday,
        other => bail!("unknown weekday {other:?} (mon … sun)"),
    })
}

fn keygen(private: &Path, public: &Path) -> Result<ExitCode> {
    if private.exists() {
        bail!("{} exists; not overwriting a key", private.display());
    }
    let (priv_pem, pub_pem) = generate_key_pair()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(private)
        .with_context(|| format!("creating {}", private.display()))?;
    f.write_all(priv_pem.as_bytes())?;
    f.sync_all()?;
    std::fs::write(public, pub_pem).with_context(|| format!("writing {}", public.display()))?;
    eprintln!(
        "private key: {} (keep it outside the log directory)\npublic key:  {} (give it to auditors)",
        private.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_rfc3339_civil_or_whole_days_in_tz() {
        let tz = TimeZone::get("Asia/Tokyo").unwrap();
        let t = |s, end| parse_time(s, &tz, end).unwrap().to_string();
        assert_eq!(t("2026-11-23T00:00:00Z", false), "2026-11-23T00:00:00Z");
        assert_eq!(t("2026-11-23T09:30", false), "2026-11-23T00:30:00Z");
        assert_eq!(t("2026-11-23", false), "2026-11-22T15:00:00Z");
        // --until with a date includes that whole day.
        assert_eq!(t("2026-11-23", true), "2026-11-23T15:00:00Z");
        assert!(parse_time("yesterday", &tz, false).is_err());
    }

    #[test]
    fn weekdays_in_english_or_japanese() {
        assert_eq!(weekday("Mon").unwrap(), Weekday::Monday);
        assert_eq!(weekday("金").unwrap(), Weekday::Friday);
        assert!(weekday("xyz").is_err());
    }
}
