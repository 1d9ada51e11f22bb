//! The overtime rules as a naive recomputation (DESIGN.md §6): all punches of an employee in
//! event-time order, shifts paired one by one, and every worked minute looked at on its own —
//! its local time for night work, its local date for holidays.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use fleetstream_schemas::{OvertimeFlag, Period, Punch, PunchKind, time};

use crate::config::OvertimeConfig;

/// A span of time in ms, start inclusive.
type Span = (i64, i64);
/// A shift: clock-in, clock-out, breaks.
type NaiveShift = (i64, i64, Vec<Span>);
/// An open shift: clock-in, breaks, an unfinished break's start.
type Open = (i64, Vec<Span>, Option<i64>);

/// Final figures per (employee, period, period start), flags sorted by name.
pub type Results = BTreeMap<(String, Period, NaiveDate), Totals>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub worked: i64,
    pub regular: i64,
    pub ot_150: i64,
    pub ot_200: i64,
    pub weekly_ot: i64,
    pub night: i64,
    pub holiday: i64,
    pub flags: Vec<String>,
}

fn local(config: &OvertimeConfig, ms: i64) -> DateTime<chrono_tz::Tz> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("a valid instant")
        .with_timezone(&config.timezone)
}

fn rank(kind: PunchKind) -> u8 {
    match kind {
        PunchKind::ClockOut => 0,
        PunchKind::BreakEnd => 1,
        PunchKind::BreakStart => 2,
        PunchKind::ClockIn => 3,
    }
}

fn is_night(config: &OvertimeConfig, t: chrono::NaiveTime) -> bool {
    if config.night_start > config.night_end {
        t >= config.night_start || t < config.night_end
    } else {
        t >= config.night_start && t < config.night_end
    }
}

/// The figures every window would have once closed, from all punches.
pub fn compute(punches: &[Punch], config: &OvertimeConfig) -> Results {
    let mut by_employee: BTreeMap<&str, Vec<(i64, PunchKind, &str)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for p in punches {
        if seen.insert(p.punch_id.as_str()) {
            let ts = time::to_millis(&p.ts).div_euclid(60_000) * 60_000;
            by_employee
                .entry(&p.employee_id)
                .or_default()
                .push((ts, p.kind, &p.punch_id));
        }
    }
    let mut out = Results::new();
    for (employee, mut list) in by_employee {
        list.sort_by(|a, b| (a.0, rank(a.1), a.2).cmp(&(b.0, rank(b.1), b.2)));
        let date = |ms: i64| local(config, ms).date_naive();
        let mut flags: BTreeMap<NaiveDate, BTreeSet<OvertimeFlag>> = BTreeMap::new();
        let mut shifts: Vec<NaiveShift> = Vec::new();
        let mut open: Option<Open> = None;
        for (ts, kind, _) in list {
            match kind {
                PunchKind::ClockIn => {
                    if let Some((start, _, _)) = open.take() {
                        flags
                            .entry(date(start))
                            .or_default()
                            .insert(OvertimeFlag::MissingClockOut);
                    }
                    open = Some((ts, Vec::new(), None));
                }
                PunchKind::ClockOut => match open.take() {
                    None => {
                        flags
                            .entry(date(ts))
                            .or_default()
                            .insert(OvertimeFlag::MissingClockIn);
                    }
                    Some((start, mut breaks, pending)) => {
                        if let Some(b) = pending {
                            breaks.push((b, ts));
                            flags
                                .entry(date(start))
                                .or_default()
                                .insert(OvertimeFlag::OpenBreak);
                        }
                        shifts.push((start, ts, breaks));
                    }
                },
                PunchKind::BreakStart => match open.as_mut() {
                    Some((start, _, pending)) => {
                        if pending.is_some() {
                            flags
                                .entry(date(*start))
                                .or_default()
                                .insert(OvertimeFlag::StrayBreakPunch);
                        } else {
                            *pending = Some(ts);
                        }
                    }
                    None => {
                        flags
                            .entry(date(ts))
                            .or_default()
                            .insert(OvertimeFlag::StrayBreakPunch);
                    }
                },
                PunchKind::BreakEnd => match open.as_mut() {
                    Some((start, breaks, pending)) => match pending.take() {
                        Some(b) => breaks.push((b, ts)),
                        None => {
                            flags
                                .entry(date(*start))
                                .or_default()
                                .insert(OvertimeFlag::StrayBreakPunch);
                        }
                    },
                    None => {
                        flags
                            .entry(date(ts))
                            .or_default()
                            .insert(OvertimeFlag::StrayBreakPunch);
                    }
                },
            }
        }
        if let Some((start, _, _)) = open {
            flags
                .entry(date(start))
                .or_default()
                .insert(OvertimeFlag::OpenShift);
        }
        let mut days: BTreeMap<NaiveDate, Totals> = BTreeMap::new();
        let mut previous_end: Option<i64> = None;
        for (start, end, breaks) in &shifts {
            let day = date(*start);
            let totals = days.entry(day).or_default();
            let mut minute = *start;
            while minute < *end {
                if !breaks.iter().any(|(b0, b1)| minute >= *b0 && minute < *b1) {
                    let at = local(config, minute);
                    totals.worked += 1;
                    if is_night(config, at.time()) {
                        totals.night += 1;
                    }
                    if config.holidays.contains(&at.date_naive()) {
                        totals.holiday += 1;
                    }
                }
                minute += 60_000;
            }
            if previous_end.is_some_and(|e| start - e < config.min_rest.as_millis() as i64) {
                flags.entry(day).or_default().insert(OvertimeFlag::ShortRest);
            }
            previous_end = Some(previous_end.map_or(*end, |e| e.max(*end)));
        }
        for day in flags.keys() {
            days.entry(*day).or_default();
        }
        let mut weeks: BTreeMap<NaiveDate, (Totals, BTreeSet<OvertimeFlag>)> = BTreeMap::new();
        for (day, mut t) in days {
            let day_flags = flags.get(&day).cloned().unwrap_or_default();
            let ot = (t.worked - config.daily_regular_minutes).max(0);
            t.ot_150 = ot.min(config.daily_ot_150_minutes);
            t.ot_200 = ot - t.ot_150;
            t.regular = t.worked - ot;
            let monday = day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()));
            let (w, wflags) = weeks.entry(monday).or_default();
            w.worked += t.worked;
            w.regular += t.regular;
            w.ot_150 += t.ot_150;
            w.ot_200 += t.ot_200;
            w.night += t.night;
            w.holiday += t.holiday;
            wflags.extend(day_flags.iter().copied());
            t.flags = sorted_names(&day_flags);
            out.insert((employee.to_string(), Period::Day, day), t);
        }
        for (monday, (mut w, mut wflags)) in weeks {
            w.weekly_ot = (w.regular - config.weekly_regular_minutes).max(0);
            w.regular -= w.weekly_ot;
            if w.worked > config.weekly_max_minutes {
                wflags.insert(OvertimeFlag::WeekOver48h);
            }
            w.flags = sorted_names(&wflags);
            out.insert((employee.to_string(), Period::Week, monday), w);
        }
    }
    out
}

fn sorted_names(flags: &BTreeSet<OvertimeFlag>) -> Vec<String> {
    let mut names: Vec<String> = flags.iter().map(|f| f.as_str().to_string()).collect();
    names.sort();
    names
}
