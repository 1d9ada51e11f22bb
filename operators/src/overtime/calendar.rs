//! Local calendar arithmetic in the depot's time zone: days and ISO weeks as instants (23-,
//! 24- or 25-hour days across DST changes), and how many minutes of an interval fall at night
//! or on a holiday, judged by each minute's own local time and date.

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub const MINUTE_MS: i64 = 60_000;

/// The instant a local wall-clock time happens. A time skipped by a DST change maps to the
/// first instant after the gap; a repeated time to its first occurrence.
pub fn instant(tz: Tz, local: NaiveDateTime) -> i64 {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
        LocalResult::None => {
            // In a spring-forward gap: walk forward minute by minute to the first valid time.
            let mut probe = local;
            for _ in 0..180 {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.timestamp_millis();
                }
            }
            Utc.from_utc_datetime(&local).timestamp_millis()
        }
    }
}

/// Local midnight starting `date`.
pub fn day_start(tz: Tz, date: NaiveDate) -> i64 {
    instant(tz, date.and_time(NaiveTime::MIN))
}

/// Local midnight ending `date` (the next day's start).
pub fn day_end(tz: Tz, date: NaiveDate) -> i64 {
    day_start(tz, date.checked_add_days(Days::new(1)).unwrap_or(date))
}

/// The local date of an instant.
pub fn local_date(tz: Tz, ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// The Monday of the ISO week of `date`.
pub fn week_start(date: NaiveDate) -> NaiveDate {
    date - chrono::Duration::days(i64::from(date.weekday().num_days_from_monday()))
}

/// The end instant of the ISO week starting on `monday`.
pub fn week_end(tz: Tz, monday: NaiveDate) -> i64 {
    day_start(tz, monday + chrono::Duration::days(7))
}

/// Truncates an instant to its minute: timesheets count whole minutes.
pub fn truncate_to_minute(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

fn overlap_minutes(a: (i64, i64), b: (i64, i64)) -> i64 {
    ((a.1.min(b.1) - a.0.max(b.0)).max(0)) / MINUTE_MS
}

/// Minutes of `[from, to)` whose local time lies in the night window `[start, end)` (which may
/// wrap past midnight, e.g. 22:00-06:00).
pub fn night_minutes(tz: Tz, from: i64, to: i64, start: NaiveTime, end: NaiveTime) -> i64 {
    if to <= from {
        return 0;
    }
    let first = local_date(tz, from) - chrono::Duration::days(1);
    let last = local_date(tz, to);
    let mut minutes = 0;
    let mut date = first;
    while date <= last {
        let window = if start > end {
            (
                instant(tz, date.and_time(start)),
                instant(tz, (date + chrono::Duration::days(1)).and_time(end)),
            )
        } else {
            (instant(tz, date.and_time(start)), instant(tz, date.and_time(end)))
        };
        minutes += overlap_minutes((from, to), window);
        date += chrono::Duration::days(1);
    }
    minutes
}

/// Minutes of `[from, to)` whose local date is one of `holidays`.
pub fn holiday_minutes(tz: Tz, from: i64, to: i64, holidays: &[NaiveDate]) -> i64 {
    holidays
        .iter()
        .map(|&h| overlap_minutes((from, to), (day_start(tz, h), day_end(tz, h))))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let hours = |d| (day_end(Berlin, date(d)) - day_start(Berlin, date(d))) / 3_600_000;
        assert_eq!(hours("2026-03-29"), 23);
        assert_eq!(hours("2026-10-25"), 25);
        assert_eq!(hours("2026-10-26"), 24);
    }

    #[test]
    fn night_minutes_follow_local_time_across_dst_end() {
        // 2026-10-24 22:00 local (CEST) to 2026-10-25 06:00 local (CET): 9 hours of night.
        let from = day_start(Berlin, date("2026-10-24")) + 22 * 3_600_000;
        let to = day_start(Berlin, date("2026-10-25")) + 7 * 3_600_000; // 06:00 CET after the repeat hour
        assert_eq!(local_date(Berlin, to), date("2026-10-25"));
        assert_eq!(
            night_minutes(
                Berlin,
                from,
                to,
                NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(6, 0, 0).unwrap()
            ),
            9 * 60
        );
    }

    #[test]
    fn holiday_minutes_count_by_local_date() {
        let from = day_start(Berlin, date("2026-10-31")) - 60 * MINUTE_MS;
        let to = day_start(Berlin, date("2026-10-31")) + 30 * MINUTE_MS;
        assert_eq!(holiday_minutes(Berlin, from, to, &[date("2026-10-31")]), 30);
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(week_start(date("2026-11-01")), date("2026-10-26"));
        assert_eq!(week_start(date("2026-10-26")), date("2026-10-26"));
    }
}
