//! From punches to figures: shifts (with breaks and malformed sequences flagged), then the day
//! and week figures of DESIGN.md §6. A pure function of the punches, so that any arrival
//! order gives the result of processing in event-time order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use chrono_tz::Tz;
use fleetstream_schemas::{OvertimeFlag, Period, PunchKind};
use serde::{Deserialize, Serialize};

use super::calendar;
use crate::config::OvertimeConfig;

/// A punch as stored: minute-truncated time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPunch {
    pub id: String,
    pub kind: PunchKind,
    pub ts: i64,
}

fn rank(kind: PunchKind) -> u8 {
    match kind {
        PunchKind::ClockOut => 0,
        PunchKind::BreakEnd => 1,
        PunchKind::BreakStart => 2,
        PunchKind::ClockIn => 3,
    }
}

/// Event-time order; at the same minute a clock-out precedes a clock-in.
pub fn sort_punches(punches: &mut [StoredPunch]) {
    punches.sort_by(|a, b| (a.ts, rank(a.kind), &a.id).cmp(&(b.ts, rank(b.kind), &b.id)));
}

/// A worked shift: clock-in to clock-out minus breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub start: i64,
    pub end: i64,
    pub breaks: Vec<(i64, i64)>,
}

impl Shift {
    /// The worked intervals: the shift without its breaks.
    pub fn worked(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut cursor = self.start;
        for &(b0, b1) in &self.breaks {
            let (b0, b1) = (b0.clamp(self.start, self.end), b1.clamp(self.start, self.end));
            if b0 > cursor {
                out.push((cursor, b0));
            }
            cursor = cursor.max(b1);
        }
        if self.end > cursor {
            out.push((cursor, self.end));
        }
        out
    }
}

/// Shifts and flags found in a punch sequence.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub shifts: Vec<Shift>,
    /// Flags by the local date they concern.
    pub flags: BTreeMap<NaiveDate, BTreeSet<OvertimeFlag>>,
    /// A shift clocked in and not (yet) out: its start.
    pub open_shift: Option<i64>,
}

/// A shift clocked in and not yet out.
struct OpenShift {
    start: i64,
    breaks: Vec<(i64, i64)>,
    break_start: Option<i64>,
}

/// Pairs punches (sorted by [`sort_punches`]) into shifts. Malformed sequences never drop time
/// silently: they are flagged on the day they concern.
pub fn timeline(punches: &[StoredPunch], config: &OvertimeConfig) -> Timeline {
    let tz = config.timezone;
    let mut out = Timeline::default();
    let flag = |out: &mut Timeline, ts: i64, f: OvertimeFlag| {
        out.flags
            .entry(calendar::local_date(tz, ts))
            .or_default()
            .insert(f);
    };
    let mut open: Option<OpenShift> = None;
    for p in punches {
        match (p.kind, open.as_mut()) {
            (PunchKind::ClockIn, previous) => {
                // A shift still open never clocked out: flag it, count nothing for it.
                if let Some(previous) = previous {
                    let start = previous.start;
                    flag(&mut out, start, OvertimeFlag::MissingClockOut);
                }
                open = Some(OpenShift {
                    start: p.ts,
                    breaks: Vec::new(),
                    break_start: None,
                });
            }
            (PunchKind::ClockOut, None) => flag(&mut out, p.ts, OvertimeFlag::MissingClockIn),
            (PunchKind::ClockOut, Some(_)) => {
                let mut shift = open.take().expect("matched Some");
                if let Some(bs) = shift.break_start {
                    // A break never ended: it lasts until the clock-out.
                    shift.breaks.push((bs, p.ts));
                    flag(&mut out, shift.start, OvertimeFlag::OpenBreak);
                }
                out.shifts.push(Shift {
                    start: shift.start,
                    end: p.ts,
                    breaks: shift.breaks,
                });
            }
            (PunchKind::BreakStart, Some(shift)) => {
                if shift.break_start.is_some() {
                    let start = shift.start;
                    flag(&mut out, start, OvertimeFlag::StrayBreakPunch);
                } else {
                    shift.break_start = Some(p.ts);
                }
            }
            (PunchKind::BreakEnd, Some(shift)) => match shift.break_start.take() {
                Some(bs) => shift.breaks.push((bs, p.ts)),
                None => {
                    let start = shift.start;
                    flag(&mut out, start, OvertimeFlag::StrayBreakPunch);
                }
            },
            (PunchKind::BreakStart | PunchKind::BreakEnd, None) => {
                flag(&mut out, p.ts, OvertimeFlag::StrayBreakPunch)
            }
        }
    }
    out.open_shift = open.map(|s| s.start);
    out
}

/// The figures of one employee for one day or week.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub worked: i64,
    pub regular: i64,
    pub ot_150: i64,
    pub ot_200: i64,
    pub weekly_ot: i64,
    pub night: i64,
    pub holiday: i64,
    pub flags: BTreeSet<OvertimeFlag>,
}

/// A window: a period and the local date it starts on.
pub type WindowKey = (Period, NaiveDate);

/// When figures are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// While a window is open: a malformed sequence may still be mended by a late punch, so it
    /// is not flagged yet, and a shift not clocked out yet counts nothing.
    Open,
    /// When a window closes: malformed sequences and open shifts are flagged for good.
    Closing,
}

/// Day and week figures for every window with a shift (and, closing, a flag or an open shift).
pub fn figures(timeline: &Timeline, config: &OvertimeConfig, stage: Stage) -> BTreeMap<WindowKey, Figures> {
    let tz = config.timezone;
    let mut days: BTreeMap<NaiveDate, Figures> = BTreeMap::new();
    let min_rest = config.min_rest.as_millis() as i64;
    let mut previous_end: Option<i64> = None;
    for shift in &timeline.shifts {
        let day = calendar::local_date(tz, shift.start);
        let f = days.entry(day).or_default();
        for (from, to) in shift.worked() {
            f.worked += (to - from) / calendar::MINUTE_MS;
            f.night += calendar::night_minutes(tz, from, to, config.night_start, config.night_end);
            f.holiday += calendar::holiday_minutes(tz, from, to, &config.holidays);
        }
        if previous_end.is_some_and(|end| shift.start - end < min_rest) {
            f.flags.insert(OvertimeFlag::ShortRest);
        }
        previous_end = Some(previous_end.map_or(shift.end, |e| e.max(shift.end)));
    }
    if stage == Stage::Closing {
        for (day, flags) in &timeline.flags {
            days.entry(*day).or_default().flags.extend(flags.iter().copied());
        }
        if let Some(start) = timeline.open_shift {
            days.entry(calendar::local_date(tz, start))
                .or_default()
                .flags
                .insert(OvertimeFlag::OpenShift);
        }
    }
    let mut out = BTreeMap::new();
    let mut weeks: BTreeMap<NaiveDate, Figures> = BTreeMap::new();
    for (day, mut f) in days {
        let overtime = (f.worked - config.daily_regular_minutes).max(0);
        f.ot_150 = overtime.min(config.daily_ot_150_minutes);
        f.ot_200 = overtime - f.ot_150;
        f.regular = f.worked - overtime;
        let w = weeks.entry(calendar::week_start(day)).or_default();
        w.worked += f.worked;
        w.regular += f.regular;
        w.ot_150 += f.ot_150;
        w.ot_200 += f.ot_200;
        w.night += f.night;
        w.holiday += f.holiday;
        w.flags.extend(f.flags.iter().copied());
        out.insert((Period::Day, day), f);
    }
    for (monday, mut w) in weeks {
        w.weekly_ot = (w.regular - config.weekly_regular_minutes).max(0);
        w.regular -= w.weekly_ot;
        if w.worked > config.weekly_max_minutes {
            w.flags.insert(OvertimeFlag::WeekOver48h);
        }
        out.insert((Period::Week, monday), w);
    }
    out
}

/// Where a timeline must start for the windows starting on `from` or later to come out as
/// from all punches: at the clock-in of the last completed shift starting before `from`.
///
/// From a clock-in on, pairing does not depend on what came before; that shift's clock-out is
/// the rest period's reference for the next one (shifts that never clocked out do not move
/// it); and whatever the earlier punches flag falls on days before `from`.
fn start_for(punches: &[StoredPunch], tz: Tz, from: NaiveDate) -> usize {
    // Everything before the first instant of `from` lies on earlier days.
    let bound = calendar::day_start(tz, from);
    // The kind of the next clock-in or clock-out after the punch looked at.
    let mut next = None;
    for (i, p) in punches.iter().enumerate().rev() {
        match p.kind {
            PunchKind::ClockIn if p.ts < bound && next == Some(PunchKind::ClockOut) => return i,
            PunchKind::ClockIn | PunchKind::ClockOut => next = Some(p.kind),
            PunchKind::BreakStart | PunchKind::BreakEnd => {}
        }
    }
    0
}

/// The figures of the windows starting on `from` or later: those of [`figures`] over all
/// `punches` (sorted by [`sort_punches`]), from the punches they depend on only.
pub fn figures_from(
    punches: &[StoredPunch],
    config: &OvertimeConfig,
    stage: Stage,
    from: NaiveDate,
) -> BTreeMap<WindowKey, Figures> {
    let start = start_for(punches, config.timezone, from);
    let mut out = figures(&timeline(&punches[start..], config), config, stage);
    out.retain(|(_, first), _| *first >= from);
    out
}

/// The first day whose figures a new punch can change, `punches` holding it (sorted by
/// [`sort_punches`]) at `at`.
///
/// The punch changes at most the shift opened by the clock-in before it and what follows; all
/// of that (shifts, rest periods, flags) is counted on the local days of those punches. The
/// earliest of them is taken rather than the clock-in's, as local dates need not grow with
/// time where clocks fall back across midnight.
pub fn first_changed_day(punches: &[StoredPunch], at: usize, config: &OvertimeConfig) -> NaiveDate {
    let opened = punches[..at]
        .iter()
        .rposition(|p| p.kind == PunchKind::ClockIn)
        .unwrap_or(at);
    punches[opened..]
        .iter()
        .map(|p| calendar::local_date(config.timezone, p.ts))
        .min()
        .expect("the punch itself")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn at(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn p(id: &str, kind: PunchKind, ts: &str) -> StoredPunch {
        StoredPunch {
            id: id.into(),
            kind,
            ts: at(ts),
        }
    }

    fn config() -> OvertimeConfig {
        OvertimeConfig::default()
    }

    fn day(s: &str) -> WindowKey {
        (Period::Day, s.parse().unwrap())
    }

    #[test]
    fn a_long_day_splits_overtime_150_then_200() {
        use PunchKind::*;
        let punches = [
            p("1", ClockIn, "2026-10-20 06:00"),
            p("2", ClockOut, "2026-10-20 17:37"),
        ];
        let f = figures(&timeline(&punches, &config()), &config(), Stage::Closing);
        let d = &f[&day("2026-10-20")];
        assert_eq!(
            (d.worked, d.regular, d.ot_150, d.ot_200, d.weekly_ot),
            (697, 480, 120, 97, 0)
        );
    }

    #[test]
    fn malformed_sequences_are_flagged_not_dropped() {
        use PunchKind::*;
        let punches = [
            p("0", ClockOut, "2026-10-19 05:00"),
            p("1", ClockIn, "2026-10-19 06:00"),
            p("2", ClockIn, "2026-10-19 07:00"),
            p("3", BreakStart, "2026-10-19 09:00"),
            p("4", ClockOut, "2026-10-19 10:00"),
            p("5", BreakEnd, "2026-10-19 11:00"),
        ];
        let t = timeline(&punches, &config());
        assert_eq!(t.shifts.len(), 1);
        let flags = &figures(&t, &config(), Stage::Closing)[&day("2026-10-19")].flags;
        for f in [
            OvertimeFlag::MissingClockIn,
            OvertimeFlag::MissingClockOut,
            OvertimeFlag::OpenBreak,
            OvertimeFlag::StrayBreakPunch,
        ] {
            assert!(flags.contains(&f), "{f:?} in {flags:?}");
        }
        assert_eq!(
            figures(&t, &config(), Stage::Closing)[&day("2026-10-19")].worked,
            120
        );
    }

    #[test]
    fn weekly_overtime_comes_from_regular_minutes() {
        use PunchKind::*;
        let mut punches = Vec::new();
        for d in 19..=24 {
            punches.push(p(&format!("i{d}"), ClockIn, &format!("2026-10-{d} 06:00")));
            punches.push(p(&format!("o{d}"), ClockOut, &format!("2026-10-{d} 15:00")));
        }
        let f = figures(&timeline(&punches, &config()), &config(), Stage::Closing);
        let w = &f[&(Period::Week, "2026-10-19".parse().unwrap())];
        // 6 days of 540 minutes: 60 daily overtime each, 480 regular each = 2880 regular.
        assert_eq!(w.worked, 3240);
        assert_eq!(w.ot_150, 360);
        assert_eq!(w.weekly_ot, 480);
        assert_eq!(w.regular, 2400);
        assert!(w.flags.contains(&OvertimeFlag::WeekOver48h));
    }

    #[test]
    fn short_rest_flags_the_later_shift() {
        use PunchKind::*;
        let punches = [
            p("1", ClockIn, "2026-10-19 12:00"),
            p("2", ClockOut, "2026-10-19 22:00"),
            p("3", ClockIn, "2026-10-20 08:59"),
            p("4", ClockOut, "2026-10-20 12:00"),
        ];
        let f = figures(&timeline(&punches, &config()), &config(), Stage::Closing);
        assert!(f[&day("2026-10-20")].flags.contains(&OvertimeFlag::ShortRest));
        assert!(f[&day("2026-10-19")].flags.is_empty());
    }

    /// Random punch sequences of one employee over three weeks around a change of clocks,
    /// malformed ones included: in Berlin (back an hour at 03:00) and in Santiago (back from
    /// midnight to 23:00, so local dates do not grow with time there).
    fn random_sheets() -> Vec<(OvertimeConfig, Vec<StoredPunch>)> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let zones = [
            (chrono_tz::Europe::Berlin, "2026-10-15 00:00", "2026-10-31"),
            (chrono_tz::America::Santiago, "2026-03-26 00:00", "2026-04-06"),
        ];
        let mut out = Vec::new();
        for round in 0..200 {
            let (tz, first, holiday) = zones[round % 2];
            let config = OvertimeConfig {
                timezone: tz,
                holidays: vec![holiday.parse().unwrap()],
                ..config()
            };
            let mut punches = Vec::new();
            let mut t = at(first) + rng.gen_range(0..600) * calendar::MINUTE_MS;
            for i in 0..rng.gen_range(1..50) {
                // Mostly well-formed: in, (break), out, rest; now and then a stray punch.
                let kind = match (i % 4, rng.gen_range(0..10)) {
                    (_, 0) => PunchKind::BreakStart,
                    (_, 1) => PunchKind::BreakEnd,
                    (_, 2) => PunchKind::ClockIn,
                    (0 | 2, _) => PunchKind::ClockIn,
                    _ => PunchKind::ClockOut,
                };
                punches.push(StoredPunch {
                    id: format!("p{i}"),
                    kind,
                    ts: t,
                });
                t += rng.gen_range(0..20 * 60) * calendar::MINUTE_MS;
            }
            sort_punches(&mut punches);
            out.push((config, punches));
        }
        out
    }

    #[test]
    fn figures_from_a_day_on_are_those_of_all_punches() {
        for (n, (config, punches)) in random_sheets().into_iter().enumerate() {
            let first = calendar::local_date(config.timezone, punches[0].ts);
            let last = calendar::local_date(config.timezone, punches.last().unwrap().ts);
            for stage in [Stage::Open, Stage::Closing] {
                let all = figures(&timeline(&punches, &config), &config, stage);
                let mut from = first - chrono::Duration::days(1);
                while from <= last + chrono::Duration::days(1) {
                    let mut want = all.clone();
                    want.retain(|(_, start), _| *start >= from);
                    assert_eq!(
                        figures_from(&punches, &config, stage, from),
                        want,
                        "sheet {n}, {stage:?}, from {from}"
                    );
                    from += chrono::Duration::days(1);
                }
            }
        }
    }

    #[test]
    fn a_new_punch_changes_no_window_before_the_week_of_its_first_changed_day() {
        for (n, (config, punches)) in random_sheets().into_iter().enumerate() {
            let all = |punches: &[StoredPunch], stage| figures(&timeline(punches, &config), &config, stage);
            for at in 0..punches.len() {
                let mut without = punches.clone();
                let punch = without.remove(at);
                let from = calendar::week_start(first_changed_day(&punches, at, &config));
                for stage in [Stage::Open, Stage::Closing] {
                    let earlier = |mut f: BTreeMap<WindowKey, Figures>| {
                        f.retain(|(_, start), _| *start < from);
                        f
                    };
                    assert_eq!(
                        earlier(all(&without, stage)),
                        earlier(all(&punches, stage)),
                        "sheet {n}, punch {punch:?}, {stage:?}"
                    );
                }
            }
        }
    }
}
