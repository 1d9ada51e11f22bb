//! Timesheet punches of metro drivers.

use serde::{Deserialize, Serialize};

use crate::time::{Timestamp, rfc3339};
use crate::{SchemaError, Validate, validate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PunchKind {
    ClockIn,
    ClockOut,
    BreakStart,
    BreakEnd,
}

/// `timesheet.punches`, keyed by `employee_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Punch {
    pub punch_id: String,
    pub employee_id: String,
    pub kind: PunchKind,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}

impl Validate for Punch {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("punch_id", &self.punch_id)?;
        validate::id("employee_id", &self.employee_id)
    }
}
