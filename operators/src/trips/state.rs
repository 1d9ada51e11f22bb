//! A trip's life: requested -> offered -> matched -> started -> completed, or cancelled, or
//! no_driver. Which command is allowed in which state, and which repeat is a harmless retry.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Where a trip stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TripStatus {
    /// Looking for a driver (a claim may be under way).
    Searching,
    /// Offered to a driver until `expires_at`.
    Offered {
        driver_id: String,
        attempt: u32,
        expires_at: i64,
    },
    Matched {
        driver_id: String,
    },
    Started {
        driver_id: String,
    },
    /// Completed by the driver; waiting for the route length to settle.
    Completing {
        driver_id: String,
    },
    Completed {
        driver_id: String,
    },
    Cancelled,
    NoDriver,
}

impl TripStatus {
    /// The name used in events, errors and queries.
    pub fn name(&self) -> &'static str {
        match self {
            TripStatus::Searching => "requested",
            TripStatus::Offered { .. } => "offered",
            TripStatus::Matched { .. } => "matched",
            TripStatus::Started { .. } => "started",
            TripStatus::Completing { .. } => "completing",
            TripStatus::Completed { .. } => "completed",
            TripStatus::Cancelled => "cancelled",
            TripStatus::NoDriver => "no_driver",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TripStatus::Completed { .. } | TripStatus::Cancelled | TripStatus::NoDriver
        )
    }

    /// The driver assigned (matched or later).
    pub fn assigned_driver(&self) -> Option<&str> {
        match self {
            TripStatus::Matched { driver_id }
            | TripStatus::Started { driver_id }
            | TripStatus::Completing { driver_id }
            | TripStatus::Completed { driver_id } => Some(driver_id),
            _ => None,
        }
    }
}

/// A claim sent to the driver step, not answered yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingClaim {
    pub driver_id: String,
    /// Event time of the decision that made the claim.
    pub at: i64,
    pub distance_km: f64,
}

/// Everything a market keeps per trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripState {
    pub trip_id: String,
    pub rider_id: String,
    pub vehicle_class: String,
    pub pickup: (f64, f64),
    pub dropoff: (f64, f64),
    pub market: String,
    pub requested_at: i64,
    /// Quoted at request and kept for the fare.
    #[serde(with = "rust_decimal::serde::str")]
    pub surge: Decimal,
    pub status: TripStatus,
    /// Drivers offered the trip, in order.
    pub offered: Vec<String>,
    /// Drivers the driver step refused for this trip since the last offer (held elsewhere).
    pub skipped: Vec<String>,
    pub pending: Option<PendingClaim>,
    pub matched_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// Cancelled while a claim was under way: release the driver when the answer comes.
    pub cancelled_during_claim: bool,
}

impl TripState {
    pub fn attempts(&self) -> u32 {
        self.offered.len() as u32
    }

    /// Whether `driver` may not be offered this trip again now.
    pub fn excludes(&self, driver: &str) -> bool {
        self.offered.iter().any(|d| d == driver) || self.skipped.iter().any(|d| d == driver)
    }
}

/// Why a command is refused: said on the DLQ with the trip.
pub fn refusal(trip: &TripState, command: &str, detail: &str) -> String {
    format!(
        "trip {}: {command} is not allowed while the trip is {}{detail}",
        trip.trip_id,
        trip.status.name()
    )
}
