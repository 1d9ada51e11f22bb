//! Overtime windows through the real topology with the test driver: DST weeks, night shifts
//! and holidays, late punches inside and beyond the grace period, duplicates, malformed
//! sequences, and a property test against the naive minute-by-minute reference.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use fleetstream_operators::config::JobConfig;
use fleetstream_operators::generate::depot::{DepotParams, generate_depot};
use fleetstream_operators::reference::overtime::{Totals, compute};
use fleetstream_operators::topology;
use fleetstream_schemas::{OvertimeRecord, Period, Punch, topics};
use fleetstream_topology::TopologyTestDriver;
use proptest::prelude::*;
use serde_json::json;

fn berlin() -> JobConfig {
    let mut config = JobConfig::default();
    config.overtime.timezone = chrono_tz::Europe::Berlin;
    config.overtime.holidays = vec![date("2026-10-31"), date("2026-11-01")];
    config
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Local Berlin wall-clock time to epoch ms.
fn local(s: &str) -> i64 {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    chrono_tz::Europe::Berlin
        .from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .timestamp_millis()
}

struct Depot {
    driver: TopologyTestDriver,
    n: u32,
}

impl Depot {
    fn new(config: &JobConfig, partitions: u32) -> Depot {
        let jobs = topology::build("fs", config).unwrap();
        Depot {
            driver: TopologyTestDriver::new(jobs.topology, partitions),
            n: 0,
        }
    }

    fn punch(&mut self, employee: &str, kind: &str, ts: i64) -> String {
        self.n += 1;
        let id = format!("{employee}-{}", self.n);
        self.punch_with_id(employee, &id, kind, ts);
        id
    }

    fn punch_with_id(&mut self, employee: &str, id: &str, kind: &str, ts: i64) {
        let iso = fleetstream_schemas::time::format(&fleetstream_schemas::time::from_millis(ts));
        let v = json!({"punch_id": id, "employee_id": employee, "kind": kind, "ts": iso});
        self.driver.pipe_json(topics::TIMESHEET_PUNCHES, employee, &v, ts);
    }

    fn shift(&mut self, employee: &str, from: &str, to: &str) {
        self.punch(employee, "clock_in", local(from));
        self.punch(employee, "clock_out", local(to));
    }

    fn records(&mut self) -> Vec<OvertimeRecord> {
        self.driver
            .read_output(topics::OVERTIME_RECORDS)
            .iter()
            .map(|o| o.parse())
            .collect()
    }

    /// The latest record per window, of everything read so far plus `records`.
    fn latest(records: &[OvertimeRecord]) -> BTreeMap<(String, Period, NaiveDate), OvertimeRecord> {
        let mut out: BTreeMap<(String, Period, NaiveDate), OvertimeRecord> = BTreeMap::new();
        for r in records {
            let key = (r.employee_id.clone(), r.period, r.period_start);
            if out.get(&key).is_none_or(|old| old.version < r.version) {
                out.insert(key, r.clone());
            }
        }
        out
    }
}

fn day(
    records: &BTreeMap<(String, Period, NaiveDate), OvertimeRecord>,
    employee: &str,
    d: &str,
) -> OvertimeRecord {
    records[&(employee.to_string(), Period::Day, date(d))].clone()
}

fn week(
    records: &BTreeMap<(String, Period, NaiveDate), OvertimeRecord>,
    employee: &str,
    d: &str,
) -> OvertimeRecord {
    records[&(employee.to_string(), Period::Week, date(d))].clone()
}

#[test]
fn a_night_shift_across_the_end_of_summer_time_works_a_25_hour_night() {
    let mut depot = Depot::new(&berlin(), 2);
    // Sat 24 Oct 22:00 CEST to Sun 25 Oct 06:00 CET: nine hours, all of it night.
    depot.shift("E1", "2026-10-24 22:00", "2026-10-25 06:00");
    let records = Depot::latest(&depot.records());
    let d = day(&records, "E1", "2026-10-24");
    assert_eq!(
        (d.worked_minutes, d.night_minutes, d.ot_150_minutes),
        (540, 540, 60)
    );
    assert!(
        !records.contains_key(&("E1".to_string(), Period::Day, date("2026-10-25"))),
        "the shift belongs to the day it starts"
    );
    assert_eq!(week(&records, "E1", "2026-10-19").worked_minutes, 540);
}

#[test]
fn a_night_shift_across_the_start_of_summer_time_works_a_23_hour_night() {
    let mut depot = Depot::new(&berlin(), 2);
    // Sat 28 Mar 22:00 CET to Sun 29 Mar 06:00 CEST: seven hours.
    depot.shift("E1", "2026-03-28 22:00", "2026-03-29 06:00");
    let records = Depot::latest(&depot.records());
    let d = day(&records, "E1", "2026-03-28");
    assert_eq!(
        (d.worked_minutes, d.night_minutes, d.regular_minutes),
        (420, 420, 420)
    );
    assert_eq!(week(&records, "E1", "2026-03-23").worked_minutes, 420);
}

#[test]
fn a_night_shift_from_a_holiday_eve_counts_its_minutes_after_midnight_as_holiday() {
    let mut config = berlin();
    config.overtime.holidays = vec![date("2026-11-01")];
    let mut depot = Depot::new(&config, 1);
    depot.shift("E1", "2026-10-31 20:00", "2026-11-01 06:30");
    depot.punch("E1", "break_start", local("2026-11-01 01:00"));
    depot.punch("E1", "break_end", local("2026-11-01 01:30"));
    let records = Depot::latest(&depot.records());
    let d = day(&records, "E1", "2026-10-31");
    // 10 h 30 worked minus a 30-minute break = 600 minutes; night 22:00-06:00 minus the
    // break = 450; holiday from midnight to 06:30 minus the break = 360.
    assert_eq!(
        (d.worked_minutes, d.night_minutes, d.holiday_minutes),
        (600, 450, 360)
    );
    assert_eq!(
        (d.regular_minutes, d.ot_150_minutes, d.ot_200_minutes),
        (480, 120, 0)
    );
}

#[test]
fn late_punches_inside_the_grace_update_the_window_and_beyond_it_go_to_the_dlq() {
    let mut depot = Depot::new(&berlin(), 3);
    depot.punch("E1", "clock_in", local("2026-10-19 06:00"));
    depot.shift("E2", "2026-10-22 06:00", "2026-10-22 14:00");
    // E1's clock-out arrives three days late: still within the 7-day grace.
    depot.punch("E1", "clock_out", local("2026-10-19 16:00"));
    let records = depot.records();
    let last = Depot::latest(&records);
    let d = day(&last, "E1", "2026-10-19");
    assert_eq!(
        (d.worked_minutes, d.ot_150_minutes, d.ot_200_minutes, d.is_final),
        (600, 120, 0, false)
    );
    // Time passes the day's end plus grace: the day closes with a final record.
    depot.shift("E2", "2026-10-27 06:00", "2026-10-27 14:00");
    let closed = Depot::latest(&depot.records());
    let d = day(&closed, "E1", "2026-10-19");
    assert!(d.is_final, "closed at 2026-10-27 00:00 local");
    assert_eq!(d.worked_minutes, 600);
    assert_eq!(d.version, 2, "versions: after the clock-out, then final");
    // A correction for the closed day is refused with the reason, and nothing changes.
    depot.punch("E1", "break_start", local("2026-10-19 10:00"));
    assert!(depot.records().is_empty());
    let dlq = depot.driver.read_dead_letters(topics::TIMESHEET_PUNCHES);
    assert_eq!(dlq.len(), 1);
    let reason = dlq[0]["error"]["message"].as_str().unwrap();
    assert!(
        reason.contains("late punch") && reason.contains("2026-10-19") && reason.contains("grace"),
        "{reason}"
    );
    assert_eq!(dlq[0]["error"]["field"], "ts");
}

#[test]
fn duplicates_are_ignored() {
    let mut depot = Depot::new(&berlin(), 2);
    depot.punch_with_id("E1", "a", "clock_in", local("2026-10-20 06:00"));
    depot.punch_with_id("E1", "b", "clock_out", local("2026-10-20 14:00"));
    let first = depot.records().len();
    depot.punch_with_id("E1", "b", "clock_out", local("2026-10-20 14:00"));
    depot.punch_with_id("E1", "a", "clock_in", local("2026-10-20 06:00"));
    assert!(depot.records().is_empty(), "no new version for a duplicate");
    assert_eq!(first, 2, "one day and one week record");
}

#[test]
fn out_of_order_punches_give_the_same_result_as_in_order() {
    let punches = [
        ("clock_in", "2026-10-20 06:00"),
        ("break_start", "2026-10-20 09:00"),
        ("break_end", "2026-10-20 09:45"),
        ("clock_out", "2026-10-20 17:00"),
        ("clock_in", "2026-10-21 02:00"),
        ("clock_out", "2026-10-21 09:00"),
    ];
    let mut in_order = Depot::new(&berlin(), 1);
    for (i, (kind, at)) in punches.iter().enumerate() {
        in_order.punch_with_id("E1", &i.to_string(), kind, local(at));
    }
    let mut shuffled = Depot::new(&berlin(), 1);
    for i in [3, 0, 5, 2, 1, 4] {
        let (kind, at) = punches[i];
        shuffled.punch_with_id("E1", &i.to_string(), kind, local(at));
    }
    let a = Depot::latest(&in_order.records());
    let b = Depot::latest(&shuffled.records());
    let figures = |r: &OvertimeRecord| {
        (
            r.worked_minutes,
            r.night_minutes,
            r.ot_150_minutes,
            r.flags.clone(),
        )
    };
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        assert_eq!(figures(v), figures(&b[k]), "{k:?}");
    }
    let d21 = day(&a, "E1", "2026-10-21");
    assert_eq!(
        d21.flags,
        vec![fleetstream_schemas::OvertimeFlag::ShortRest],
        "9 h rest after 17:00"
    );
}

#[test]
fn malformed_sequences_are_flagged_at_close_and_the_rest_stays_correct() {
    let mut depot = Depot::new(&berlin(), 2);
    depot.punch("E1", "clock_out", local("2026-10-19 05:00")); // without clock-in
    depot.shift("E1", "2026-10-19 06:00", "2026-10-19 14:00");
    depot.punch("E1", "clock_in", local("2026-10-20 06:00")); // two clock-ins
    depot.shift("E1", "2026-10-20 07:00", "2026-10-20 15:00");
    depot.punch("E1", "clock_in", local("2026-10-21 06:00")); // break never ended
    depot.punch("E1", "break_start", local("2026-10-21 10:00"));
    depot.punch("E1", "clock_out", local("2026-10-21 14:00"));
    depot.punch("E1", "clock_in", local("2026-10-22 06:00")); // never clocked out
    // Close everything.
    depot.driver.advance_time(local("2026-11-05 00:00"));
    let last = Depot::latest(&depot.records());
    use fleetstream_schemas::OvertimeFlag::*;
    let d19 = day(&last, "E1", "2026-10-19");
    assert!(d19.is_final && d19.flags == vec![MissingClockIn], "{d19:?}");
    assert_eq!(d19.worked_minutes, 480, "the good shift still counts");
    let d20 = day(&last, "E1", "2026-10-20");
    assert_eq!(
        (d20.worked_minutes, d20.flags.clone()),
        (480, vec![MissingClockOut])
    );
    let d21 = day(&last, "E1", "2026-10-21");
    assert_eq!((d21.worked_minutes, d21.flags.clone()), (240, vec![OpenBreak]));
    let d22 = day(&last, "E1", "2026-10-22");
    assert_eq!(
        (d22.worked_minutes, d22.flags.clone(), d22.is_final),
        (0, vec![OpenShift], true)
    );
    let w = week(&last, "E1", "2026-10-19");
    assert!(w.is_final);
    assert_eq!(w.worked_minutes, 1200);
    assert_eq!(
        w.flags,
        vec![MissingClockIn, MissingClockOut, OpenBreak, OpenShift]
    );
}

#[test]
fn weekly_overtime_and_the_48_hour_flag() {
    let mut depot = Depot::new(&berlin(), 1);
    for d in 19..=24 {
        depot.shift("E1", &format!("2026-10-{d} 06:00"), &format!("2026-10-{d} 15:30"));
    }
    let last = Depot::latest(&depot.records());
    let w = week(&last, "E1", "2026-10-19");
    // Six days of 570 minutes: 90 daily overtime each (at 150 %), 480 regular each.
    assert_eq!(
        (
            w.worked_minutes,
            w.ot_150_minutes,
            w.weekly_ot_minutes,
            w.regular_minutes
        ),
        (3420, 540, 480, 2400)
    );
    assert_eq!(w.flags, vec![fleetstream_schemas::OvertimeFlag::WeekOver48h]);
}

// --- against the reference --------------------------------------------------------------

fn check_against_reference(seed: u64, employees: usize, partitions: u32, forgotten: f64) {
    let config = berlin();
    let mut params = DepotParams::new(seed, employees, date("2026-10-12"), 24);
    params.max_delay_ms = 2 * 86_400_000;
    params.duplicates = 0.05;
    params.forgotten_clock_outs = forgotten;
    let records = generate_depot(&params, &config.overtime);
    let punches: Vec<Punch> = records
        .iter()
        .map(|r| serde_json::from_value(r.value.clone()).unwrap())
        .collect();
    let want = compute(&punches, &config.overtime);
    let mut depot = Depot::new(&config, partitions);
    for r in &records {
        depot.driver.pipe(r.topic, &r.key, r.value_bytes(), r.ts);
    }
    depot.driver.advance_time(local("2026-12-01 00:00"));
    let got = Depot::latest(&depot.records());
    assert!(
        depot
            .driver
            .read_dead_letters(topics::TIMESHEET_PUNCHES)
            .is_empty()
    );
    let got: BTreeMap<(String, Period, NaiveDate), Totals> = got
        .into_iter()
        .map(|(k, r)| {
            assert!(r.is_final, "{k:?} closed");
            let mut flags: Vec<String> = r.flags.iter().map(|f| f.as_str().to_string()).collect();
            flags.sort();
            let t = Totals {
                worked: r.worked_minutes,
                regular: r.regular_minutes,
                ot_150: r.ot_150_minutes,
                ot_200: r.ot_200_minutes,
                weekly_ot: r.weekly_ot_minutes,
                night: r.night_minutes,
                holiday: r.holiday_minutes,
                flags,
            };
            (k, t)
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_depot_around_the_end_of_summer_time_matches_the_reference() {
    check_against_reference(7, 12, 3, 0.03);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_arrival_order_and_duplicates_give_the_reference(seed in any::<u64>(), employees in 1usize..6, partitions in 1u32..5) {
        check_against_reference(seed, employees, partitions, 0.05);
    }
}
