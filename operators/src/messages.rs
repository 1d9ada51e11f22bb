//! Records the ride job's steps send each other over internal topics (postcard-encoded).
//!
//! ```text
//!  gps.pings, driver.status ─► drivers (by driver) ─ DriverView ─► market-inbox (by market)
//!  trip.commands ─► trips (by trip) ─ command ─────────────────────► market-inbox
//!  market-inbox ─► markets (by market) ─ Claim/Release/... ─► driver-inbox (by driver) ─► drivers
//!  drivers ─ ClaimResult/Route ─► market-inbox
//!  markets ─► trip.events, ledger.entries
//! ```

use serde::{Deserialize, Serialize};

/// A driver as the markets that may match it see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverView {
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    /// H3 cells of the last position at resolutions 9 (index) and 7 (surge).
    pub cell9: u64,
    pub cell7: u64,
    /// Event time of the last ping.
    pub ping_ts: i64,
    pub online: bool,
    pub vehicle_class: Option<String>,
    /// The trip holding the driver (an open offer or an active trip).
    pub busy: Option<String>,
}

/// What arrives at a market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MarketMsg {
    /// The driver's current view (it is within reach of this market).
    Driver(DriverView),
    /// The driver moved out of reach of this market.
    DriverLeft { driver_id: String },
    /// A trip command (its JSON, already validated) routed to the trip's market.
    Command(Vec<u8>),
    /// The driver step's answer to a claim.
    ClaimResult {
        trip_id: String,
        driver_id: String,
        granted: bool,
    },
    /// The route length between start and completion (`None`: fewer than two pings).
    Route {
        trip_id: String,
        driver_id: String,
        distance_km: Option<f64>,
    },
}

/// What arrives at a driver from the markets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DriverMsg {
    /// Hold the driver for an offer of `trip_id`, if it holds no other trip.
    Claim { trip_id: String, market: String },
    /// The offer or trip no longer holds the driver.
    Release { trip_id: String },
    /// The offer was accepted: the trip is active.
    Matched { trip_id: String },
    /// The trip started: record the route from `started_at`.
    Started { trip_id: String, started_at: i64 },
    /// The trip completed: answer with the route length and release the driver.
    Completed {
        trip_id: String,
        completed_at: i64,
        market: String,
    },
}

impl DriverMsg {
    pub fn trip_id(&self) -> &str {
        match self {
            DriverMsg::Claim { trip_id, .. }
            | DriverMsg::Release { trip_id }
            | DriverMsg::Matched { trip_id }
            | DriverMsg::Started { trip_id, .. }
            | DriverMsg::Completed { trip_id, .. } => trip_id,
        }
    }
}
