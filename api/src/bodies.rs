//! The command bodies as the OpenAPI document describes them. The handlers read bodies as JSON
//! values and decode them into the record types themselves (so that an error names
//! `pings[3].lat`, not a serde path); these types exist to give clients and schema-driven tools
//! the exact shape, ranges and formats those handlers accept.

#![allow(dead_code)]

use serde::Deserialize;
use utoipa::ToSchema;

/// A GPS ping.
#[derive(Deserialize, ToSchema)]
pub struct PingBody {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f]+$",
        min_length = 1,
        max_length = 128,
        example = "d42"
    )]
    pub driver_id: String,
    #[schema(minimum = -90.0, maximum = 90.0, example = 52.52)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0, example = 13.405)]
    pub lng: f64,
    #[schema(minimum = 0.0, maximum = 400.0)]
    pub speed_kmh: Option<f64>,
    #[schema(minimum = 0.0, maximum = 360.0)]
    pub heading: Option<f64>,
    /// Event time, RFC 3339 with a zone; now when left out.
    #[schema(format = DateTime)]
    pub ts: Option<String>,
    /// Made from the `Idempotency-Key` (or at random) when left out.
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f]+$", min_length = 1, max_length = 128)]
    pub event_id: Option<String>,
}

/// One ping, an array of pings, or `{"pings": [...]}` (at most `[api] max_batch`).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum GpsBody {
    One(PingBody),
    Many(Vec<PingBody>),
    Wrapped {
        #[schema(min_items = 1)]
        pings: Vec<PingBody>,
    },
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriverStatusKind {
    Online,
    Offline,
}

/// A driver going online or offline.
#[derive(Deserialize, ToSchema)]
pub struct DriverStatusBody {
    pub status: DriverStatusKind,
    /// A lower-case identifier, e.g. economy, comfort, xl.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,31}$", example = "economy")]
    pub vehicle_class: String,
    #[schema(format = DateTime)]
    pub ts: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct Point {
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lng: f64,
}

/// A ride request.
#[derive(Deserialize, ToSchema)]
pub struct TripRequestBody {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f]+$",
        min_length = 1,
        max_length = 128,
        example = "r7"
    )]
    pub rider_id: String,
    pub pickup: Point,
    pub dropoff: Point,
    #[schema(pattern = "^[a-z][a-z0-9_]{0,31}$", example = "economy")]
    pub vehicle_class: String,
    /// Made from the `Idempotency-Key` (or at random) when left out; answered either way.
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f]+$", min_length = 1, max_length = 128)]
    pub trip_id: Option<String>,
    #[schema(format = DateTime)]
    pub ts: Option<String>,
}

/// What may be done to a trip.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TripAction {
    Accept,
    Decline,
    Start,
    Complete,
    Cancel,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    Rider,
    Driver,
}

/// A trip action: `{driver_id, ts?}` for accept, decline, start and complete (a driver's token
/// fills `driver_id`), `{by, reason?, ts?}` for cancel.
#[derive(Deserialize, ToSchema)]
pub struct TripActionBody {
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f]+$", min_length = 1, max_length = 128)]
    pub driver_id: Option<String>,
    pub by: Option<CancelledBy>,
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    #[schema(format = DateTime)]
    pub ts: Option<String>,
}

/// A wallet top-up.
#[derive(Deserialize, ToSchema)]
pub struct TopUpBody {
    /// A positive amount with at most two decimals, as a string.
    #[schema(pattern = r"^[0-9]{1,12}(\.[0-9]{1,2})?$", example = "20.00")]
    pub amount: String,
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f]+$", min_length = 1, max_length = 128)]
    pub command_id: Option<String>,
    #[schema(format = DateTime)]
    pub ts: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PunchKind {
    ClockIn,
    ClockOut,
    BreakStart,
    BreakEnd,
}

/// A timesheet punch.
#[derive(Deserialize, ToSchema)]
pub struct PunchBody {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f]+$",
        min_length = 1,
        max_length = 128,
        example = "E001"
    )]
    pub employee_id: String,
    pub kind: PunchKind,
    #[schema(format = DateTime)]
    pub ts: Option<String>,
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f]+$", min_length = 1, max_length = 128)]
    pub punch_id: Option<String>,
}

/// One punch, an array of punches, or `{"punches": [...]}` (at most `[api] max_batch`).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PunchesBody {
    One(PunchBody),
    Many(Vec<PunchBody>),
    Wrapped {
        #[schema(min_items = 1)]
        punches: Vec<PunchBody>,
    },
}
