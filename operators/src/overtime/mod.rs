//! Overtime windows (DESIGN.md §6), keyed by employee.
//!
//! Each employee's punches (deduplicated by `punch_id`, truncated to the minute) are kept for
//! as long as a window they belong to may still change. Every accepted punch recomputes the
//! employee's shifts and the figures of their days and ISO weeks from the punches in
//! event-time order ([`figures`]) — so late and out-of-order punches give exactly the result
//! of processing in order. Only the windows the punch can change are recomputed, from the
//! punches they depend on ([`figures::figures_from`]). Every window whose figures changed is
//! emitted again with a higher `version`. A day or week closes when stream time passes its
//! local end plus the grace period: its record is emitted once more with `final: true`
//! (flagged `open_shift` if a shift of it never clocked out) and never changes again. A punch
//! that would change a closed window goes to the DLQ with the reason.

pub mod calendar;
pub mod figures;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use fleetstream_schemas::{OvertimeFlag, OvertimeRecord, Period, Punch, encode, time, topics};
use fleetstream_topology::store::{KvStore, StoreId};
use fleetstream_topology::{
    Context, DeadLetter, ProcessError, Processor, Record, Timer, TopologyBuilder, codec,
};
use serde::{Deserialize, Serialize};

use self::figures::{Figures, Stage, StoredPunch, WindowKey, figures_from, first_changed_day, sort_punches};
use crate::config::{JobConfig, OvertimeConfig};

/// An employee's punches still needed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timesheet {
    /// Sorted by [`sort_punches`].
    pub punches: Vec<StoredPunch>,
}

/// The overtime job's stores.
#[derive(Debug, Clone)]
pub struct OvertimeStores {
    pub timesheets: KvStore<String, Timesheet>,
    /// The latest record of every window: `<employee>/<day|week>/<YYYY-MM-DD>`.
    pub records: KvStore<String, OvertimeRecord>,
}

impl OvertimeStores {
    pub fn declare(builder: &TopologyBuilder) -> Self {
        OvertimeStores {
            timesheets: builder.kv_store("timesheets", codec::string(), codec::postcard()),
            records: builder.kv_store("overtime", codec::string(), codec::postcard()),
        }
    }

    pub fn ids(&self) -> Vec<StoreId> {
        vec![self.timesheets.id(), self.records.id()]
    }
}

/// The store key of a window's record.
pub fn record_key(employee: &str, period: Period, start: NaiveDate) -> String {
    format!("{employee}/{}/{start}", period.as_str())
}

/// When a window closes: its local end plus the grace period.
pub fn closes_at(config: &OvertimeConfig, (period, start): WindowKey) -> i64 {
    let end = match period {
        Period::Day => calendar::day_end(config.timezone, start),
        Period::Week => calendar::week_end(config.timezone, start),
    };
    end + config.grace.as_millis() as i64
}

#[derive(Clone)]
pub struct OvertimeStep {
    config: Arc<JobConfig>,
    stores: OvertimeStores,
}

type Ctx<'a> = Context<'a, String, OvertimeRecord>;

fn timer_key(employee: &str, (period, start): WindowKey) -> Vec<u8> {
    let p = match period {
        Period::Day => 'd',
        Period::Week => 'w',
    };
    format!("{employee}\0{p}{start}").into_bytes()
}

fn parse_timer_key(key: &[u8]) -> Option<(String, WindowKey)> {
    let text = std::str::from_utf8(key).ok()?;
    let (employee, rest) = text.split_once('\0')?;
    let period = match rest.chars().next()? {
        'd' => Period::Day,
        'w' => Period::Week,
        _ => return None,
    };
    Some((employee.to_string(), (period, rest[1..].parse().ok()?)))
}

impl OvertimeStep {
    pub fn new(config: Arc<JobConfig>, stores: OvertimeStores) -> Self {
        OvertimeStep { config, stores }
    }

    fn rules(&self) -> &OvertimeConfig {
        &self.config.overtime
    }

    /// The version of the window's last record (0: none yet).
    fn last_version(
        &self,
        ctx: &mut Ctx<'_>,
        employee: &str,
        window: WindowKey,
    ) -> Result<u32, ProcessError> {
        let key = record_key(employee, window.0, window.1);
        Ok(ctx.kv(&self.stores.records).get(&key)?.map_or(0, |r| r.version))
    }

    /// Emits the window's record as the version after `last`.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        ctx: &mut Ctx<'_>,
        employee: &str,
        window: WindowKey,
        figures: &Figures,
        is_final: bool,
        ts: i64,
        last: u32,
    ) -> Result<(), ProcessError> {
        let key = record_key(employee, window.0, window.1);
        let version = last + 1;
        let mut flags: Vec<OvertimeFlag> = figures.flags.iter().copied().collect();
        flags.sort_by_key(|f| f.as_str());
        let record = OvertimeRecord {
            employee_id: employee.to_string(),
            period: window.0,
            period_start: window.1,
            worked_minutes: figures.worked,
            regular_minutes: figures.regular,
            ot_150_minutes: figures.ot_150,
            ot_200_minutes: figures.ot_200,
            weekly_ot_minutes: figures.weekly_ot,
            night_minutes: figures.night,
            holiday_minutes: figures.holiday,
            flags,
            version,
            is_final,
            event_id: format!("{employee}:{}:{}:{version}", window.0.as_str(), window.1),
        };
        ctx.kv(&self.stores.records).put(&key, &record);
        ctx.forward(Record::new(employee.to_string(), record, ts))
    }

    /// Forgets punches no open or closing window needs: those before the ISO week of the oldest
    /// open day, with a week more for a week closing at this very time and two days for rest
    /// periods and shifts crossing midnight.
    /// Returns whether it forgot any.
    fn prune(&self, sheet: &mut Timesheet, now: i64) -> bool {
        let rules = self.rules();
        let oldest_open = calendar::local_date(rules.timezone, now - rules.grace.as_millis() as i64);
        let cutoff = calendar::day_start(rules.timezone, calendar::week_start(oldest_open)) - 9 * 86_400_000;
        let before = sheet.punches.len();
        sheet.punches.retain(|p| p.ts >= cutoff);
        sheet.punches.len() != before
    }

    fn late(&self, ctx: &mut Ctx<'_>, punch: &Punch, ts: i64, window: WindowKey) {
        let closed = closes_at(self.rules(), window);
        ctx.dead_letter(DeadLetter {
            topic: self.config.topic(topics::TIMESHEET_PUNCHES),
            key: Bytes::from(punch.employee_id.clone()),
            value: Some(Bytes::from(encode(punch))),
            ts,
            field: Some("ts".into()),
            reason: format!(
                "late punch {} of {}: the {} of {} closed at {} (grace {})",
                punch.punch_id,
                punch.employee_id,
                window.0.as_str(),
                window.1,
                time::format(&time::from_millis(closed)),
                humantime::format_duration(self.rules().grace),
            ),
            stage: "overtime".into(),
        });
    }
}

impl Processor for OvertimeStep {
    type InKey = String;
    type InValue = Punch;
    type OutKey = String;
    type OutValue = OvertimeRecord;

    fn process(&mut self, ctx: &mut Ctx<'_>, record: Record<String, Punch>) -> Result<(), ProcessError> {
        let punch = record.value;
        let employee = punch.employee_id.clone();
        let rules = self.rules();
        let mut sheet = ctx
            .kv(&self.stores.timesheets)
            .get(&employee)?
            .unwrap_or_default();
        if sheet.punches.iter().any(|p| p.id == punch.punch_id) {
            return Ok(());
        }
        let now = ctx.stream_time();
        let ts = calendar::truncate_to_minute(record.ts);
        let own_day = (Period::Day, calendar::local_date(rules.timezone, ts));
        if now >= closes_at(rules, own_day) {
            self.late(ctx, &punch, record.ts, own_day);
            return Ok(());
        }
        let mut punches = sheet.punches.clone();
        punches.push(StoredPunch {
            id: punch.punch_id.clone(),
            kind: punch.kind,
            ts,
        });
        sort_punches(&mut punches);
        // Windows before the week of the first day the punch can change stay as they are.
        let at = punches
            .iter()
            .position(|p| p.id == punch.punch_id)
            .expect("the punch just added");
        let from = calendar::week_start(first_changed_day(&punches, at, rules));
        let before = figures_from(&sheet.punches, rules, Stage::Open, from);
        let after = figures_from(&punches, rules, Stage::Open, from);
        let changed: BTreeSet<WindowKey> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(k) != after.get(k))
            .copied()
            .collect();
        if let Some(closed) = changed.iter().find(|w| now >= closes_at(rules, **w)) {
            self.late(ctx, &punch, record.ts, *closed);
            return Ok(());
        }
        sheet.punches = punches;
        for window in &changed {
            let figures = after.get(window).cloned().unwrap_or_default();
            let last = self.last_version(ctx, &employee, *window)?;
            self.emit(ctx, &employee, *window, &figures, false, record.ts, last)?;
        }
        // Every window the punch may flag at its close gets a closing timer.
        let own_week = (Period::Week, calendar::week_start(own_day.1));
        for window in changed.into_iter().chain([own_day, own_week]) {
            ctx.schedule(closes_at(rules, window), &timer_key(&employee, window));
        }
        self.prune(&mut sheet, now);
        ctx.kv(&self.stores.timesheets).put(&employee, &sheet);
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) -> Result<(), ProcessError> {
        let Timer::EventTime { at, key } = timer else {
            return Ok(());
        };
        let Some((employee, window)) = parse_timer_key(&key) else {
            return Ok(());
        };
        let rules = self.rules();
        let last = ctx
            .kv(&self.stores.records)
            .get(&record_key(&employee, window.0, window.1))?;
        if last.as_ref().is_some_and(|r| r.is_final) {
            return Ok(());
        }
        let mut sheet = ctx
            .kv(&self.stores.timesheets)
            .get(&employee)?
            .unwrap_or_default();
        let figures = figures_from(&sheet.punches, rules, Stage::Closing, window.1).remove(&window);
        // A window that never had anything to report stays silent; one that had gets its final.
        let version = last.as_ref().map_or(0, |r| r.version);
        match (figures, last) {
            (Some(figures), _) => self.emit(ctx, &employee, window, &figures, true, at, version)?,
            (None, Some(_)) => self.emit(ctx, &employee, window, &Figures::default(), true, at, version)?,
            (None, None) => {}
        }
        if self.prune(&mut sheet, at) {
            ctx.kv(&self.stores.timesheets).put(&employee, &sheet);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_round_trip() {
        let window = (Period::Week, "2026-10-26".parse().unwrap());
        assert_eq!(
            parse_timer_key(&timer_key("E001", window)),
            Some(("E001".to_string(), window))
        );
    }
}
