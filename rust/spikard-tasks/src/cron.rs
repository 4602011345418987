//! `CronSchedule`: a serde DTO for recurring jobs, and the tick arithmetic behind it.
//!
//! Expressions have 5 fields (minute precision, as in Unix cron), 6 fields (seconds
//! first) or 7 (with a year), or are aliases (`@yearly`, `@monthly`, `@weekly`, `@daily`,
//! `@hourly`). Day-of-week numbers follow Unix cron: 0 and 7 are Sunday, 1 is Monday.
//! Ticks are computed in the schedule's IANA timezone:
//!
//! * a local time that does not exist (skipped by a DST change) does not fire that day;
//! * a local time that occurs twice (repeated by a DST change) fires once, at its first
//!   occurrence.
//!
//! A new schedule must fire: one whose expression matches no time from now on (February
//! 30, or only years that have passed) is refused with a `ConfigError`.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CoreError, CoreResult};
use crate::job::JobOptions;

mod fields;

/// What a scheduler does about ticks that passed while no scheduler ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissedTicks {
    /// Run once for the most recent missed tick (never a burst of backlog). Default.
    #[default]
    Latest,
    /// Run nothing for missed ticks; wait for the next one.
    Skip,
    /// Run once for every missed tick (at most [`MAX_CATCH_UP`]).
    All,
}

/// Most missed ticks run by [`MissedTicks::All`].
pub const MAX_CATCH_UP: usize = 1000;

/// A recurring job: on each tick of `expression` (in `timezone`), one job of `task`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSchedule {
    /// Unique name; defining a schedule again under a name replaces it.
    pub name: String,
    /// Cron expression (see the module docs).
    pub expression: String,
    /// Task to enqueue.
    pub task: String,
    /// Positional arguments (JSON array).
    #[serde(default = "empty_array")]
    pub args: Value,
    /// Keyword arguments (JSON object).
    #[serde(default = "empty_object")]
    pub kwargs: Value,
    /// IANA timezone name, e.g. `Europe/Berlin`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Disabled schedules are kept but do not fire.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Missed-tick policy.
    #[serde(default)]
    pub missed: MissedTicks,
    /// Options of the enqueued jobs (priority, max_attempts, timeout, queue).
    #[serde(default)]
    pub options: JobOptions,
}

fn empty_array() -> Value {
    Value::Array(vec![])
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}
fn utc() -> String {
    "UTC".to_owned()
}
fn yes() -> bool {
    true
}

/// A stored schedule with its firing state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The definition.
    pub schedule: CronSchedule,
    /// The last tick that fired (or was passed over), ms since epoch.
    pub last_tick_ms: i64,
    /// When the definition was last written, ms since epoch.
    pub updated_at_ms: i64,
}

impl CronSchedule {
    /// Checks every field and parses the expression and timezone.
    pub fn parse(&self) -> CoreResult<ParsedSchedule> {
        if self.name.is_empty() || self.name.len() > 200 {
            return Err(CoreError::config(
                "schedule name must be 1 to 200 characters",
            ));
        }
        if self.task.is_empty() {
            return Err(CoreError::config("a schedule needs a task name"));
        }
        if !self.args.is_array() || !self.kwargs.is_object() {
            return Err(CoreError::config(
                "schedule args must be a JSON array and kwargs a JSON object",
            ));
        }
        if self.options.delay.is_some() || self.options.run_at_ms.is_some() {
            return Err(CoreError::config(
                "delay and run_at make no sense on a schedule: its ticks set the time",
            ));
        }
        ParsedSchedule::new(&self.expression, &self.timezone)
    }

    /// [`CronSchedule::parse`], and refuses a schedule that would never fire after
    /// `now_ms`. For a schedule being created; one read back from storage is only parsed
    /// (its last years may have passed since).
    pub fn validate(&self, now_ms: i64) -> CoreResult<ParsedSchedule> {
        let parsed = self.parse()?;
        if parsed.next_after(now_ms).is_none() {
            return Err(CoreError::config(format!(
                "cron expression {:?} never fires: no date from now on matches it \
                 (a day the month does not have, such as February 30, or only past years)",
                self.expression
            )));
        }
        Ok(parsed)
    }
}

/// A validated expression in its timezone.
#[derive(Clone, Debug)]
pub struct ParsedSchedule {
    /// The expression as the `cron` crate reads it (seconds first, Sunday = 1).
    pub schedule: cron::Schedule,
    /// The timezone ticks are computed in.
    pub tz: Tz,
}

impl ParsedSchedule {
    /// Parses `expression` in `timezone`; errors name the bad part.
    pub fn new(expression: &str, timezone: &str) -> CoreResult<Self> {
        let tz = Tz::from_str(timezone).map_err(|_| {
            CoreError::config(format!(
                "unknown timezone {timezone:?}: use an IANA name such as \"UTC\" or \"Europe/Berlin\""
            ))
        })?;
        let normalized = normalize(expression)?;
        let schedule = cron::Schedule::from_str(&normalized).map_err(|e| {
            CoreError::config(format!("invalid cron expression {expression:?}: {e}"))
        })?;
        Ok(Self { schedule, tz })
    }

    /// The first tick strictly after `after_ms`, in ms since epoch.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        self.ticks_after(after_ms).next()
    }

    /// Ticks strictly after `after_ms`, ascending (first occurrence of repeated local
    /// times only).
    pub fn ticks_after(&self, after_ms: i64) -> impl Iterator<Item = i64> + '_ {
        let start = Utc
            .timestamp_millis_opt(after_ms)
            .single()
            .unwrap_or_else(Utc::now)
            .with_timezone(&self.tz);
        let mut last_local: Option<chrono::NaiveDateTime> = None;
        self.schedule
            .after(&start)
            .filter_map(move |t: DateTime<Tz>| {
                // A repeated local time (DST fall-back) comes twice; keep the first.
                let local = t.naive_local();
                if last_local == Some(local) {
                    return None;
                }
                last_local = Some(local);
                Some(t.timestamp_millis())
            })
    }

    /// Ticks in `(after_ms, until_ms]`, oldest first, at most `limit` (the newest kept).
    pub fn ticks_between(&self, after_ms: i64, until_ms: i64, limit: usize) -> Vec<i64> {
        let mut out: Vec<i64> = Vec::new();
        for tick in self.ticks_after(after_ms) {
            if tick > until_ms {
                break;
            }
            out.push(tick);
            if out.len() > limit {
                out.remove(0);
            }
        }
        out
    }
}

/// Converts a user expression to the `cron` crate's form: 5 fields get a `0` seconds
/// field, and numeric days of week move from Unix numbering (0/7 = Sunday) to the
/// crate's (1 = Sunday).
pub fn normalize(expression: &str) -> CoreResult<String> {
    let trimmed = expression.trim();
    if trimmed.starts_with('@') {
        return Ok(trimmed.to_owned());
    }
    let mut fields: Vec<String> = trimmed.split_whitespace().map(str::to_owned).collect();
    match fields.len() {
        5 => fields.insert(0, "0".to_owned()),
        6 | 7 => {}
        n => {
            return Err(CoreError::config(format!(
                "invalid cron expression {expression:?}: expected 5 fields (minute hour day \
                 month weekday), 6 (seconds first) or 7 (with year), got {n}"
            )))
        }
    }
    fields::check(&fields)
        .map_err(|e| CoreError::config(format!("invalid cron expression {expression:?}: {e}")))?;
    fields[5] = translate_weekdays(&fields[5]);
    Ok(fields.join(" "))
}

/// Unix weekday numbers (0 and 7 = Sunday) to the parser's (1 = Sunday); the numbers were
/// range-checked by [`fields::check`].
fn translate_weekdays(field: &str) -> String {
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let num = |s: &str| -> Option<u32> {
            if s.chars().all(|c| c.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        let with_step = |s: String| match step {
            Some(st) => format!("{s}/{st}"),
            None => s,
        };
        match range.split_once('-') {
            Some((a, b)) => match (num(a), num(b)) {
                (Some(a), Some(b)) => {
                    // Unix a..=b, with 7 meaning Sunday again at the end of the week.
                    let (a1, b1) = (a % 7 + 1, if b == 7 { 7 } else { b % 7 + 1 });
                    if b == 7 && a > 0 {
                        parts.push(with_step(format!("{a1}-7")));
                        parts.push("1".to_owned());
                    } else if b == 7 {
                        parts.push(with_step("1-7".to_owned()));
                    } else {
                        parts.push(with_step(format!("{a1}-{b1}")));
                    }
                }
                _ => parts.push(item.to_owned()),
            },
            None => match num(range) {
                Some(n) => parts.push(with_step(format!("{}", n % 7 + 1))),
                None => parts.push(item.to_owned()),
            },
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn five_fields_and_unix_weekdays() {
        assert_eq!(normalize("*/5 * * * *").unwrap(), "0 */5 * * * *");
        assert_eq!(normalize("0 9 * * 1").unwrap(), "0 0 9 * * 2");
        assert_eq!(normalize("0 9 * * 0,7").unwrap(), "0 0 9 * * 1,1");
        assert_eq!(normalize("0 9 * * 1-5").unwrap(), "0 0 9 * * 2-6");
        assert_eq!(normalize("0 9 * * 5-7").unwrap(), "0 0 9 * * 6-7,1");
        assert_eq!(normalize("0 9 * * MON-FRI").unwrap(), "0 0 9 * * MON-FRI");
        assert_eq!(normalize("@daily").unwrap(), "@daily");
        assert!(normalize("* * *").is_err());
        assert!(normalize("0 9 * * 8").is_err());
    }

    #[test]
    fn monday_means_monday() {
        let p = ParsedSchedule::new("0 9 * * 1", "UTC").unwrap();
        // 2026-11-28 is a Saturday; the next Monday 09:00 is 2026-11-30.
        assert_eq!(
            p.next_after(ms(2026, 11, 28, 12, 0)),
            Some(ms(2026, 11, 30, 9, 0))
        );
    }

    #[test]
    fn bad_input_is_a_config_error() {
        let err = ParsedSchedule::new("61 * * * *", "UTC").unwrap_err();
        assert!(matches!(err, CoreError::Config(_)));
        assert_eq!(
            err.to_string(),
            "invalid cron expression \"61 * * * *\": minute 61 is out of range 0-59"
        );
        for (expr, message) in [
            ("* 24 * * *", "hour 24 is out of range 0-23"),
            ("* * 32 * *", "day of month 32 is out of range 1-31"),
            ("* * * 13 *", "month 13 is out of range 1-12"),
            ("* * * * 8", "weekday 8 is out of range 0-7"),
            ("60 * * * * *", "second 60 is out of range 0-59"),
            ("* * * * 5-1", "weekday range 5-1 runs backwards"),
        ] {
            let err = ParsedSchedule::new(expr, "UTC").unwrap_err().to_string();
            assert!(err.contains(message), "{expr}: {err}");
        }
        assert!(ParsedSchedule::new("* * * * *", "Mars/Olympus").is_err());
        assert!(ParsedSchedule::new("@every-now-and-then", "UTC").is_err());
    }

    #[test]
    fn daily_0230_berlin_across_2026_dst_changes() {
        let p = ParsedSchedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        // Spring forward: 2026-03-29 02:00 CET -> 03:00 CEST; 02:30 does not exist.
        let spring = p.ticks_between(ms(2026, 3, 27, 12, 0), ms(2026, 3, 31, 12, 0), 100);
        assert_eq!(spring.len(), 3, "28th, (29th skipped), 30th, 31st");
        assert_eq!(spring[0], ms(2026, 3, 28, 1, 30));
        assert_eq!(spring[1], ms(2026, 3, 30, 0, 30));
        // Fall back: 2026-10-25 03:00 CEST -> 02:00 CET; 02:30 happens twice, fires once.
        let fall = p.ticks_between(ms(2026, 10, 23, 12, 0), ms(2026, 10, 27, 12, 0), 100);
        assert_eq!(fall.len(), 4, "24th, 25th (once), 26th, 27th");
        assert_eq!(fall[1], ms(2026, 10, 25, 0, 30), "the first (CEST) 02:30");
        // A whole year: 365 days, minus the one that has no 02:30.
        let year = p.ticks_between(ms(2026, 1, 1, 0, 0), ms(2027, 1, 1, 0, 0), 1000);
        assert_eq!(year.len(), 364);
    }

    fn schedule(expression: &str) -> CronSchedule {
        CronSchedule {
            name: "s".into(),
            expression: expression.into(),
            task: "t".into(),
            args: empty_array(),
            kwargs: empty_object(),
            timezone: utc(),
            enabled: true,
            missed: MissedTicks::default(),
            options: JobOptions::default(),
        }
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused() {
        let now = ms(2026, 12, 6, 12, 0);
        for expr in [
            "0 0 30 2 *",
            "0 0 31 4 *",
            "0 0 31 2,4,6,9,11 *",
            "0 0 0 1 1 * 2020",
        ] {
            let err = schedule(expr).validate(now).unwrap_err();
            assert!(matches!(err, CoreError::Config(_)));
            assert!(err.to_string().contains("never fires"), "{expr}: {err}");
            // Read back from storage it still parses (and has no next run).
            assert_eq!(schedule(expr).parse().unwrap().next_after(now), None);
        }
    }

    #[test]
    fn rare_schedules_are_accepted() {
        let now = ms(2026, 12, 6, 12, 0);
        // February 29 only when it is a Monday: next in 2044 (then 2072).
        let p = schedule("0 0 29 2 1").validate(now).unwrap();
        assert_eq!(p.next_after(now), Some(ms(2044, 2, 29, 0, 0)));
        assert_eq!(
            p.next_after(ms(2044, 2, 29, 0, 0)),
            Some(ms(2072, 2, 29, 0, 0))
        );
        let p = schedule("0 0 29 2 *").validate(now).unwrap();
        assert_eq!(p.next_after(now), Some(ms(2028, 2, 29, 0, 0)));
        let p = schedule("0 0 0 1 1 * 2090").validate(now).unwrap();
        assert_eq!(p.next_after(now), Some(ms(2090, 1, 1, 0, 0)));
    }

    #[test]
    fn seconds_and_limits() {
        let p = ParsedSchedule::new("* * * * * *", "UTC").unwrap();
        let t0 = ms(2026, 1, 1, 0, 0);
        assert_eq!(p.ticks_between(t0, t0 + 10_000, 100).len(), 10);
        let capped = p.ticks_between(t0, t0 + 10_000, 3);
        assert_eq!(capped, vec![t0 + 8000, t0 + 9000, t0 + 10_000]);
    }
}
