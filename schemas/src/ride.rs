//! Ride-hailing records: GPS pings, driver status, trip commands and trip events.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::time::{Timestamp, rfc3339};
use crate::{GeoPoint, SchemaError, Validate, money, validate};

/// A vehicle class such as `economy`: lower-case letters, digits and `_`, at most 32 bytes.
/// Which classes exist is configuration (one tariff per class), checked by the operators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VehicleClass(pub String);

impl VehicleClass {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(&self, field: &str) -> Result<(), SchemaError> {
        let s = &self.0;
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(())
        } else {
            Err(SchemaError::invalid(
                field,
                format!("{s:?} is not a vehicle class (lower-case identifier)"),
            ))
        }
    }
}

impl std::fmt::Display for VehicleClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `gps.pings`, keyed by `driver_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsPing {
    pub event_id: String,
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}

impl Validate for GpsPing {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("event_id", &self.event_id)?;
        validate::id("driver_id", &self.driver_id)?;
        validate::latitude("lat", self.lat)?;
        validate::longitude("lng", self.lng)?;
        validate::optional_range("speed_kmh", self.speed_kmh, 0.0, 400.0)?;
        validate::optional_range("heading", self.heading, 0.0, 360.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverStatusKind {
    Online,
    Offline,
}

/// `driver.status`, keyed by `driver_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverStatus {
    pub driver_id: String,
    pub status: DriverStatusKind,
    pub vehicle_class: VehicleClass,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}

impl Validate for DriverStatus {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("driver_id", &self.driver_id)?;
        self.vehicle_class.check("vehicle_class")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    Rider,
    Driver,
}

/// `trip.commands`, keyed by `trip_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TripCommand {
    Request {
        trip_id: String,
        rider_id: String,
        pickup: GeoPoint,
        dropoff: GeoPoint,
        vehicle_class: VehicleClass,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
    Accept {
        trip_id: String,
        driver_id: String,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
    Decline {
        trip_id: String,
        driver_id: String,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
    Start {
        trip_id: String,
        driver_id: String,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
    Complete {
        trip_id: String,
        driver_id: String,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
    Cancel {
        trip_id: String,
        by: CancelledBy,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(with = "rfc3339")]
        ts: Timestamp,
    },
}

impl TripCommand {
    pub fn trip_id(&self) -> &str {
        match self {
            TripCommand::Request { trip_id, .. }
            | TripCommand::Accept { trip_id, .. }
            | TripCommand::Decline { trip_id, .. }
            | TripCommand::Start { trip_id, .. }
            | TripCommand::Complete { trip_id, .. }
            | TripCommand::Cancel { trip_id, .. } => trip_id,
        }
    }

    pub fn ts(&self) -> Timestamp {
        match self {
            TripCommand::Request { ts, .. }
            | TripCommand::Accept { ts, .. }
            | TripCommand::Decline { ts, .. }
            | TripCommand::Start { ts, .. }
            | TripCommand::Complete { ts, .. }
            | TripCommand::Cancel { ts, .. } => *ts,
        }
    }

    /// The command's name as in its `type` field.
    pub fn name(&self) -> &'static str {
        match self {
            TripCommand::Request { .. } => "request",
            TripCommand::Accept { .. } => "accept",
            TripCommand::Decline { .. } => "decline",
            TripCommand::Start { .. } => "start",
            TripCommand::Complete { .. } => "complete",
            TripCommand::Cancel { .. } => "cancel",
        }
    }

    /// The driver named by the command, if it names one.
    pub fn driver_id(&self) -> Option<&str> {
        match self {
            TripCommand::Accept { driver_id, .. }
            | TripCommand::Decline { driver_id, .. }
            | TripCommand::Start { driver_id, .. }
            | TripCommand::Complete { driver_id, .. } => Some(driver_id),
            TripCommand::Request { .. } | TripCommand::Cancel { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct RequestBody {
    trip_id: String,
    rider_id: String,
    pickup: GeoPoint,
    dropoff: GeoPoint,
    vehicle_class: VehicleClass,
    #[serde(with = "rfc3339")]
    ts: Timestamp,
}

#[derive(Deserialize)]
struct DriverBody {
    trip_id: String,
    driver_id: String,
    #[serde(with = "rfc3339")]
    ts: Timestamp,
}

#[derive(Deserialize)]
struct CancelBody {
    trip_id: String,
    by: CancelledBy,
    #[serde(default)]
    reason: Option<String>,
    #[serde(with = "rfc3339")]
    ts: Timestamp,
}

impl Validate for TripCommand {
    fn from_json(bytes: &[u8]) -> Result<Self, SchemaError> {
        let variants = ["request", "accept", "decline", "start", "complete", "cancel"];
        crate::codec::decode_tagged(bytes, &variants, |tag, bytes| {
            Ok(match tag {
                "request" => {
                    let b: RequestBody = crate::codec::decode_tracked(bytes)?;
                    TripCommand::Request {
                        trip_id: b.trip_id,
                        rider_id: b.rider_id,
                        pickup: b.pickup,
                        dropoff: b.dropoff,
                        vehicle_class: b.vehicle_class,
                        ts: b.ts,
                    }
                }
                "cancel" => {
                    let b: CancelBody = crate::codec::decode_tracked(bytes)?;
                    TripCommand::Cancel {
                        trip_id: b.trip_id,
                        by: b.by,
                        reason: b.reason,
                        ts: b.ts,
                    }
                }
                other => {
                    let DriverBody {
                        trip_id,
                        driver_id,
                        ts,
                    } = crate::codec::decode_tracked(bytes)?;
                    match other {
                        "accept" => TripCommand::Accept {
                            trip_id,
                            driver_id,
                            ts,
                        },
                        "decline" => TripCommand::Decline {
                            trip_id,
                            driver_id,
                            ts,
                        },
                        "start" => TripCommand::Start {
                            trip_id,
                            driver_id,
                            ts,
                        },
                        _ => TripCommand::Complete {
                            trip_id,
                            driver_id,
                            ts,
                        },
                    }
                }
            })
        })
    }

    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("trip_id", self.trip_id())?;
        if let Some(driver_id) = self.driver_id() {
            validate::id("driver_id", driver_id)?;
        }
        match self {
            TripCommand::Request {
                rider_id,
                pickup,
                dropoff,
                vehicle_class,
                ..
            } => {
                validate::id("rider_id", rider_id)?;
                pickup.validate().map_err(|e| e.within("pickup"))?;
                dropoff.validate().map_err(|e| e.within("dropoff"))?;
                vehicle_class.check("vehicle_class")
            }
            TripCommand::Cancel {
                reason: Some(reason), ..
            } if reason.len() > 512 => Err(SchemaError::invalid("reason", "must be at most 512 bytes")),
            _ => Ok(()),
        }
    }
}

/// `trip.events`, keyed by `trip_id`: what happened to a trip, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripEvent {
    /// Deterministic: `<trip_id>:<type>:<n>`, the same for the same input.
    pub event_id: String,
    pub trip_id: String,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
    #[serde(flatten)]
    pub kind: TripEventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TripEventKind {
    Requested {
        rider_id: String,
        vehicle_class: VehicleClass,
        pickup: GeoPoint,
        dropoff: GeoPoint,
        #[serde(with = "money::tenths")]
        surge: Decimal,
    },
    Offered {
        driver_id: String,
        /// 1 for the first offer of the trip, up to the configured maximum.
        attempt: u32,
        /// Great-circle distance from the driver to the pickup.
        pickup_distance_km: f64,
    },
    Matched {
        driver_id: String,
    },
    Started {
        driver_id: String,
    },
    Completed {
        driver_id: String,
        rider_id: String,
        vehicle_class: VehicleClass,
        #[serde(with = "money::cents")]
        fare: Decimal,
        #[serde(with = "money::tenths")]
        surge: Decimal,
        distance_km: f64,
        duration_s: f64,
    },
    Cancelled {
        by: CancelledBy,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        driver_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "option_cents")]
        fee: Option<Decimal>,
    },
    NoDriver {
        /// How many offers were made before giving up.
        offers: u32,
    },
}

impl TripEventKind {
    /// The event's name as in its `type` field.
    pub fn name(&self) -> &'static str {
        match self {
            TripEventKind::Requested { .. } => "requested",
            TripEventKind::Offered { .. } => "offered",
            TripEventKind::Matched { .. } => "matched",
            TripEventKind::Started { .. } => "started",
            TripEventKind::Completed { .. } => "completed",
            TripEventKind::Cancelled { .. } => "cancelled",
            TripEventKind::NoDriver { .. } => "no_driver",
        }
    }

    /// The driver the event concerns, if any.
    pub fn driver_id(&self) -> Option<&str> {
        match self {
            TripEventKind::Offered { driver_id, .. }
            | TripEventKind::Matched { driver_id }
            | TripEventKind::Started { driver_id }
            | TripEventKind::Completed { driver_id, .. } => Some(driver_id),
            TripEventKind::Cancelled { driver_id, .. } => driver_id.as_deref(),
            TripEventKind::Requested { .. } | TripEventKind::NoDriver { .. } => None,
        }
    }
}

impl Validate for TripEvent {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("event_id", &self.event_id)?;
        validate::id("trip_id", &self.trip_id)
    }
}

mod option_cents {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => crate::money::cents::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| crate::money::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `driver.positions`, keyed by `driver_id`: every accepted ping with the driver's H3 cell
/// (resolution 9) and status, for the sinks and analysts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverPosition {
    pub event_id: String,
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    /// H3 cell at resolution 9, as its hexadecimal string.
    pub cell: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DriverStatusKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_class: Option<VehicleClass>,
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
}

impl Validate for DriverPosition {
    fn validate(&self) -> Result<(), SchemaError> {
        validate::id("driver_id", &self.driver_id)?;
        validate::latitude("lat", self.lat)?;
        validate::longitude("lng", self.lng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    #[test]
    fn request_round_trips_in_its_documented_form() {
        let json = br#"{"type":"request","trip_id":"t1","rider_id":"r1","pickup":{"lat":52.5,"lng":13.4},
            "dropoff":{"lat":52.6,"lng":13.5},"vehicle_class":"economy","ts":"2026-11-02T07:01:03.305Z"}"#;
        let cmd: TripCommand = decode(json).unwrap();
        assert_eq!(cmd.trip_id(), "t1");
        assert_eq!(cmd.name(), "request");
        let back: TripCommand = decode(&crate::encode(&cmd)).unwrap();
        assert_eq!(back, cmd);
    }

    #[test]
    fn a_type_error_inside_a_command_names_its_field() {
        let json = br#"{"type":"request","trip_id":"t1","rider_id":"r1","pickup":{"lat":"north","lng":13.4},
            "dropoff":{"lat":52.6,"lng":13.5},"vehicle_class":"economy","ts":"2026-11-02T07:01:03Z"}"#;
        assert_eq!(decode::<TripCommand>(json).unwrap_err().field(), "pickup.lat");
        let json = br#"{"type":"accept","trip_id":"t1","ts":"2026-11-02T07:01:03Z"}"#;
        assert_eq!(decode::<TripCommand>(json).unwrap_err().field(), "driver_id");
        let json = br#"{"trip_id":"t1","ts":"2026-11-02T07:01:03Z"}"#;
        assert_eq!(decode::<TripCommand>(json).unwrap_err().field(), "type");
    }

    #[test]
    fn unknown_command_type_names_type() {
        let err = decode::<TripCommand>(br#"{"type":"teleport","trip_id":"t1","ts":"2026-11-02T07:00:00Z"}"#)
            .unwrap_err();
        assert!(err.message().contains("teleport"), "{err}");
    }

    #[test]
    fn bad_pickup_names_nested_field() {
        let json = br#"{"type":"request","trip_id":"t1","rider_id":"r1","pickup":{"lat":52.5,"lng":190},
            "dropoff":{"lat":52.6,"lng":13.5},"vehicle_class":"economy","ts":"2026-11-02T07:01:03Z"}"#;
        assert_eq!(decode::<TripCommand>(json).unwrap_err().field(), "pickup.lng");
    }

    #[test]
    fn unknown_status_names_status() {
        let err = decode::<DriverStatus>(
            br#"{"driver_id":"d1","status":"napping","vehicle_class":"economy","ts":"2026-11-02T07:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "status");
    }

    #[test]
    fn ts_without_offset_names_ts() {
        let err = decode::<GpsPing>(
            br#"{"event_id":"p","driver_id":"d","lat":1,"lng":2,"ts":"2026-11-02T07:00:00"}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "ts");
        assert!(err.message().contains("offset"));
    }

    #[test]
    fn completed_event_has_decimal_strings() {
        let event = TripEvent {
            event_id: "t1:completed:1".into(),
            trip_id: "t1".into(),
            ts: crate::time::parse("2026-11-02T07:02:00.305Z").unwrap(),
            kind: TripEventKind::Completed {
                driver_id: "d1".into(),
                rider_id: "r1".into(),
                vehicle_class: VehicleClass("economy".into()),
                fare: rust_decimal::Decimal::new(651, 2),
                surge: rust_decimal::Decimal::ONE,
                distance_km: 3.1209,
                duration_s: 52.0,
            },
        };
        let json: serde_json::Value = serde_json::from_slice(&crate::encode(&event)).unwrap();
        assert_eq!(json["type"], "completed");
        assert_eq!(json["fare"], "6.51");
        assert_eq!(json["surge"], "1.0");
        assert_eq!(json["distance_km"], 3.1209);
    }
}
