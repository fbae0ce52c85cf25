//! `stats`: denials by reason and by route, access outside office hours, per day.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::query::Located;
use crate::record::{Decision, Event};

/// Office hours (開庁時間). Default: Monday–Friday 08:30–17:15, Asia/Tokyo.
#[derive(Debug, Clone)]
pub struct OfficeHours {
    /// Time zone of the hours.
    pub tz: TimeZone,
    /// Working days.
    pub weekdays: Vec<Weekday>,
    /// Start (inclusive).
    pub start: Time,
    /// End (exclusive).
    pub end: Time,
    /// Days off on working weekdays (national holidays, 年末年始 …).
    pub holidays: BTreeSet<Date>,
}

impl Default for OfficeHours {
    fn default() -> Self {
        OfficeHours {
            tz: TimeZone::get("Asia/Tokyo").unwrap_or(TimeZone::UTC),
            weekdays: vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
            start: Time::constant(8, 30, 0, 0),
            end: Time::constant(17, 15, 0, 0),
            holidays: BTreeSet::new(),
        }
    }
}

impl OfficeHours {
    /// Is `t` inside office hours?
    pub fn contains(&self, t: jiff::Timestamp) -> bool {
        let z = t.to_zoned_datetime(self.tz.clone());
        let d = z.date();
        let time = z.time();
        self.weekdays.contains(&d.weekday())
            && !self.holidays.contains(&d)
            && time >= self.start
            && time < self.end
    }
}

/// Counts for one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayStats {
    /// Allowed requests.
    pub allow: u64,
    /// Denied requests.
    pub deny: u64,
    /// Access records outside office hours (allow and deny).
    pub outside_hours: u64,
    /// Users seen outside office hours.
    pub outside_hours_users: BTreeSet<String>,
    /// Failed logins.
    pub login_failures: u64,
    /// Rejected device certificates.
    pub device_cert_failures: u64,
}

/// The result of [`stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Per local day (office-hours time zone).
    pub days: BTreeMap<Date, DayStats>,
    /// Denials by reason code.
    pub deny_by_reason: BTreeMap<String, u64>,
    /// Denials by route (`-` when no route matched).
    pub deny_by_route: BTreeMap<String, u64>,
    /// Access records in total.
    pub access: u64,
    /// Denials in total.
    pub deny: u64,
    /// Access outside office hours in total.
    pub outside_hours: u64,
}

/// Count `records` (already filtered).
pub fn stats(records: &[Located], hours: &OfficeHours) -> Stats {
    let mut s = Stats::default();
    for loc in records {
        let Some(t) = loc.record.timestamp() else {
            continue;
        };
        let day = t.to_zoned_datetime(hours.tz.clone()).date();
        let d = s.days.entry(day).or_default();
        match &loc.record.event {
            Event::Access(a) => {
                s.access += 1;
                match a.decision {
                    Decision::Allow => d.allow += 1,
                    Decision::Deny => {
                        d.deny += 1;
                        s.deny += 1;
                        *s.deny_by_route
                            .entry(a.route.clone().unwrap_or_else(|| "-".into()))
                            .or_default() += 1;
                        if a.reasons.is_empty() {
                            *s.deny_by_reason.entry("-".into()).or_default() += 1;
                        }
                        for r in a.reasons.iter() {
                            *s.deny_by_reason.entry(r.code.to_string()).or_default() += 1;
                        }
                    }
                }
                if !hours.contains(t) {
                    d.outside_hours += 1;
                    s.outside_hours += 1;
                    if let Some(u) = &a.user {
                        d.outside_hours_users
                            .insert(u.email.clone().unwrap_or_else(|| u.sub.clone()));
                    }
                }
            }
            Event::LoginFailure(_) => d.login_failures += 1,
            Event::DeviceCertFailure(_) => d.device_cert_failures += 1,
            _ => {}
        }
    }
    s
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "access / アクセス: {}   deny / 拒否: {}   outside office hours / 時間外: {}",
            self.access, self.deny, self.outside_hours
        )?;
        writeln!(f, "\ndenials by reason / 拒否理由別:")?;
        let mut by_reason: Vec<_> = self.deny_by_reason.iter().collect();
        by_reason.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, v) in by_reason {
            writeln!(f, "  {v:>8}  {k}")?;
        }
        writeln!(f, "\ndenials by route / ルート別拒否:")?;
        let mut by_route: Vec<_> = self.deny_by_route.iter().collect();
        by_route.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, v) in by_route {
            writeln!(f, "  {v:>8}  {k}")?;
        }
        writeln!(f, "\nper day / 日別:")?;
        writeln!(
            f,
            "  {:<10}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  outside-hours users / 時間外利用者",
            "date", "allow", "deny", "outside", "login_ng", "cert_ng"
        )?;
        for (day, d) in &self.days {
            writeln!(
                f,
                "  {day}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {}",
                d.allow,
                d.deny,
                d.outside_hours,
                d.login_failures,
                d.device_cert_failures,
                d.outside_hours_users
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        Ok(())
    }
}
