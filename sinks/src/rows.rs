//! Output records decoded into the rows sinks write, one table per output topic.

use fleetstream_schemas::{DriverPosition, LedgerEntry, OvertimeRecord, TripEvent, topics};

use crate::SinkError;

/// Which table a topic lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    TripEvents,
    LedgerEntries,
    OvertimeRecords,
    DriverPositions,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::TripEvents,
        Table::LedgerEntries,
        Table::OvertimeRecords,
        Table::DriverPositions,
    ];

    /// The table's name in every sink (and the SQL engine).
    pub fn name(&self) -> &'static str {
        match self {
            Table::TripEvents => "trip_events",
            Table::LedgerEntries => "ledger_entries",
            Table::OvertimeRecords => "overtime_records",
            Table::DriverPositions => "driver_positions",
        }
    }

    /// The default topic it is read from.
    pub fn topic(&self) -> &'static str {
        match self {
            Table::TripEvents => topics::TRIP_EVENTS,
            Table::LedgerEntries => topics::LEDGER_ENTRIES,
            Table::OvertimeRecords => topics::OVERTIME_RECORDS,
            Table::DriverPositions => topics::DRIVER_POSITIONS,
        }
    }
}

/// One decoded output record.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    TripEvent(TripEvent),
    Ledger(LedgerEntry),
    Overtime(OvertimeRecord),
    Position(DriverPosition),
}

impl Row {
    pub fn decode(table: Table, bytes: &[u8]) -> Result<Row, SinkError> {
        let bad = |e: fleetstream_schemas::SchemaError| SinkError::Undecodable {
            table: table.name(),
            detail: e.to_string(),
        };
        Ok(match table {
            Table::TripEvents => Row::TripEvent(fleetstream_schemas::decode(bytes).map_err(bad)?),
            Table::LedgerEntries => Row::Ledger(fleetstream_schemas::decode(bytes).map_err(bad)?),
            Table::OvertimeRecords => Row::Overtime(fleetstream_schemas::decode(bytes).map_err(bad)?),
            Table::DriverPositions => Row::Position(fleetstream_schemas::decode(bytes).map_err(bad)?),
        })
    }

    pub fn table(&self) -> Table {
        match self {
            Row::TripEvent(_) => Table::TripEvents,
            Row::Ledger(_) => Table::LedgerEntries,
            Row::Overtime(_) => Table::OvertimeRecords,
            Row::Position(_) => Table::DriverPositions,
        }
    }
}

/// A trip event as one flat row: the columns every sink table has, `None` where the event
/// type does not carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatTripEvent {
    pub event_id: String,
    pub trip_id: String,
    pub kind: &'static str,
    pub ts: chrono::DateTime<chrono::Utc>,
    pub driver_id: Option<String>,
    pub rider_id: Option<String>,
    pub vehicle_class: Option<String>,
    pub pickup: Option<(f64, f64)>,
    pub dropoff: Option<(f64, f64)>,
    pub surge: Option<rust_decimal::Decimal>,
    pub fare: Option<rust_decimal::Decimal>,
    pub distance_km: Option<f64>,
    pub duration_s: Option<f64>,
    pub attempt: Option<u32>,
    pub cancelled_by: Option<&'static str>,
    pub reason: Option<String>,
    pub fee: Option<rust_decimal::Decimal>,
}

impl From<&TripEvent> for FlatTripEvent {
    fn from(e: &TripEvent) -> Self {
        use fleetstream_schemas::{CancelledBy, TripEventKind as K};
        let mut row = FlatTripEvent {
            event_id: e.event_id.clone(),
            trip_id: e.trip_id.clone(),
            kind: e.kind.name(),
            ts: e.ts,
            driver_id: e.kind.driver_id().map(str::to_string),
            rider_id: None,
            vehicle_class: None,
            pickup: None,
            dropoff: None,
            surge: None,
            fare: None,
            distance_km: None,
            duration_s: None,
            attempt: None,
            cancelled_by: None,
            reason: None,
            fee: None,
        };
        match &e.kind {
            K::Requested {
                rider_id,
                vehicle_class,
                pickup,
                dropoff,
                surge,
            } => {
                row.rider_id = Some(rider_id.clone());
                row.vehicle_class = Some(vehicle_class.0.clone());
                row.pickup = Some((pickup.lat, pickup.lng));
                row.dropoff = Some((dropoff.lat, dropoff.lng));
                row.surge = Some(*surge);
            }
            K::Offered { attempt, .. } => row.attempt = Some(*attempt),
            K::Completed {
                rider_id,
                vehicle_class,
                fare,
                surge,
                distance_km,
                duration_s,
                ..
            } => {
                row.rider_id = Some(rider_id.clone());
                row.vehicle_class = Some(vehicle_class.0.clone());
                row.fare = Some(*fare);
                row.surge = Some(*surge);
                row.distance_km = Some(*distance_km);
                row.duration_s = Some(*duration_s);
            }
            K::Cancelled { by, reason, fee, .. } => {
                row.cancelled_by = Some(match by {
                    CancelledBy::Rider => "rider",
                    CancelledBy::Driver => "driver",
                });
                row.reason = reason.clone();
                row.fee = *fee;
            }
            K::NoDriver { offers } => row.attempt = Some(*offers),
            K::Matched { .. } | K::Started { .. } => {}
        }
        row
    }
}
