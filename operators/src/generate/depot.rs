//! A synthetic depot: metro drivers on early, late and night shifts with breaks, in the
//! depot's time zone, delivered a little out of order, with duplicates, the odd forgotten
//! clock-out and some punches later than the grace period.

use chrono::{Days, NaiveDate, NaiveTime};
use fleetstream_schemas::{Punch, PunchKind, time, topics};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::Generated;
use crate::config::OvertimeConfig;
use crate::overtime::calendar;

#[derive(Debug, Clone)]
pub struct DepotParams {
    pub seed: u64,
    pub employees: usize,
    pub first_day: NaiveDate,
    pub days: u64,
    /// Punches delivered up to this late (ms), shuffled within it.
    pub max_delay_ms: i64,
    /// Share of punches sent twice.
    pub duplicates: f64,
    /// Share of shifts whose clock-out is forgotten.
    pub forgotten_clock_outs: f64,
    /// Share of punches delivered beyond the grace period.
    pub too_late: f64,
}

impl DepotParams {
    pub fn new(seed: u64, employees: usize, first_day: NaiveDate, days: u64) -> Self {
        DepotParams {
            seed,
            employees,
            first_day,
            days,
            max_delay_ms: 6 * 3_600_000,
            duplicates: 0.02,
            forgotten_clock_outs: 0.005,
            too_late: 0.0,
        }
    }
}

/// The punches, in delivery order (each record's `ts` is the punch's event time).
pub fn generate_depot(params: &DepotParams, config: &OvertimeConfig) -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(params.seed);
    let tz = config.timezone;
    let starts = [(5, 0), (5, 30), (6, 0), (13, 0), (14, 0), (21, 0), (22, 0)];
    let mut punches: Vec<(i64, Punch)> = Vec::new();
    for e in 0..params.employees {
        let employee = format!("E{e:04}");
        let mut n = 0;
        let punch = |kind: PunchKind, ts: i64, n: &mut u32| {
            *n += 1;
            (
                ts,
                Punch {
                    punch_id: format!("{employee}-{n}"),
                    employee_id: employee.clone(),
                    kind,
                    ts: time::from_millis(ts),
                },
            )
        };
        let mut previous_end = i64::MIN;
        for d in 0..params.days {
            if !rng.gen_bool(0.78) {
                continue;
            }
            let day = params.first_day.checked_add_days(Days::new(d)).expect("a date");
            let (h, m) = starts[rng.gen_range(0..starts.len())];
            let local = day.and_time(NaiveTime::from_hms_opt(h, m, 0).expect("a time"))
                + chrono::Duration::minutes(rng.gen_range(-20..20));
            let start = calendar::instant(tz, local);
            if start <= previous_end {
                continue;
            }
            let worked = rng.gen_range(6 * 60..11 * 60 + 30) as i64 * 60_000;
            let end = start + worked;
            previous_end = end;
            punches.push(punch(PunchKind::ClockIn, start, &mut n));
            if rng.gen_bool(0.9) {
                let break_start = start + rng.gen_range(120..300) as i64 * 60_000;
                let break_end = break_start + rng.gen_range(20..50) as i64 * 60_000;
                if break_end < end {
                    punches.push(punch(PunchKind::BreakStart, break_start, &mut n));
                    punches.push(punch(PunchKind::BreakEnd, break_end, &mut n));
                }
            }
            if !rng.gen_bool(params.forgotten_clock_outs) {
                punches.push(punch(PunchKind::ClockOut, end, &mut n));
            }
        }
    }
    // Delivery: each punch shortly after it happened, some duplicated, some far too late.
    let grace = config.grace.as_millis() as i64;
    let mut deliveries: Vec<(i64, u64, Punch)> = Vec::new();
    for (ts, punch) in punches {
        let delay = if rng.gen_bool(params.too_late) {
            grace + rng.gen_range(2..5) * 86_400_000
        } else {
            rng.gen_range(0..=params.max_delay_ms)
        };
        deliveries.push((ts + delay, rng.r#gen(), punch.clone()));
        if rng.gen_bool(params.duplicates) {
            deliveries.push((ts + delay + rng.gen_range(0..600_000), rng.r#gen(), punch));
        }
    }
    deliveries.sort_by_key(|(at, tie, _)| (*at, *tie));
    let mut out: Vec<Generated> = deliveries
        .into_iter()
        .map(|(_, _, p)| {
            Generated::new(
                topics::TIMESHEET_PUNCHES,
                &p.employee_id,
                &p,
                time::to_millis(&p.ts),
            )
        })
        .collect();
    // Keep the delivery order stable but shuffle equal-time deliveries a little further.
    out.chunks_mut(3).for_each(|c| {
        if rng.gen_bool(0.1) {
            c.shuffle(&mut rng);
        }
    });
    out
}
