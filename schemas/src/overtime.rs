//! Overtime results per employee, day and ISO week.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{SchemaError, Validate, validate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn as_str(&self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }
}

/// Something HR should look at. The first two are rules of the agreement; the others mark
/// malformed punch sequences, whose time is never silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OvertimeFlag {
    /// A shift started less than the minimum rest after the previous shift's clock-out.
    ShortRest,
    /// The week's worked minutes exceed the weekly maximum (48 h by default).
    #[serde(rename = "week_over_48h")]
    WeekOver48h,
    /// A shift had no clock-out when its day closed; its time is not counted.
    OpenShift,
    /// A clock-in followed an open shift; the earlier shift has no clock-out and is not counted.
    MissingClockOut,
    /// A clock-out without a clock-in before it; ignored.
    MissingClockIn,
    /// A break was started and never ended; it is taken to last until the clock-out.
    OpenBreak,
    /// A break end without a break start, or a break punch outside a shift; ignored.
    StrayBreakPunch,
}

impl OvertimeFlag {
    pub fn as_str(&self) -> &'static str {
        match self {
            OvertimeFlag::ShortRest => "short_rest",
            OvertimeFlag::WeekOver48h => "week_over_48h",
            OvertimeFlag::OpenShift => "open_shift",
            OvertimeFlag::MissingClockOut => "missing_clock_out",
            OvertimeFlag::MissingClockIn => "missing_clock_in",
            OvertimeFlag::OpenBreak => "open_break",
            OvertimeFlag::StrayBreakPunch => "stray_break_punch",
        }
    }
}

/// `overtime.records`, keyed by `employee_id`: the figures of one employee for one day or week,
/// emitted again with a higher `version` whenever they change, and with `final: true` once the
/// window has closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvertimeRecord {
    pub employee_id: String,
    pub period: Period,
    /// The local date the period starts on (a Monday for weeks).
    pub period_start: NaiveDate,
    pub worked_minutes: i64,
    pub regular_minutes: i64,
    pub ot_150_minutes: i64,
    pub ot_200_minutes: i64,
    pub weekly_ot_minutes: i64,
    pub night_minutes: i64,
    pub holiday_minutes: i64,
    pub flags: Vec<OvertimeFlag>,
    pub version: u32,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Deterministic: `<employee_id>:<period>:<period_start>:<version>`.
    pub event_id: String,
}

impl Validate for OvertimeRecord {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("employee_id", &self.employee_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_use_documented_names() {
        let json = serde_json::to_string(&[OvertimeFlag::ShortRest, OvertimeFlag::WeekOver48h]).unwrap();
        assert_eq!(json, r#"["short_rest","week_over_48h"]"#);
        for flag in [OvertimeFlag::OpenShift, OvertimeFlag::StrayBreakPunch] {
            assert_eq!(
                serde_json::to_string(&flag).unwrap(),
                format!("\"{}\"", flag.as_str())
            );
        }
    }
}
