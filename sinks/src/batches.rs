//! Rows as Arrow record batches, in the schemas of `fleetstream_schemas::arrow` — what the
//! Parquet sink writes and the SQL engine reads.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use chrono::NaiveDate;
use fleetstream_schemas::{DriverPosition, DriverStatusKind, LedgerEntry, OvertimeRecord};
use rust_decimal::Decimal;

use crate::rows::{FlatTripEvent, Row, Table};

/// The Arrow schema of a table.
pub fn schema(table: Table) -> SchemaRef {
    match table {
        Table::TripEvents => fleetstream_schemas::trip_event_schema(),
        Table::LedgerEntries => fleetstream_schemas::ledger_entry_schema(),
        Table::OvertimeRecords => fleetstream_schemas::overtime_record_schema(),
        Table::DriverPositions => fleetstream_schemas::driver_position_schema(),
    }
}

/// A decimal as an i128 at `scale` (rounded half away from zero where it has more places).
fn scaled(d: Decimal, scale: u32) -> i128 {
    let mut d = d.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    d.rescale(scale);
    d.mantissa()
}

fn decimals(
    values: impl Iterator<Item = Option<Decimal>>,
    precision: u8,
    scale: i8,
) -> Result<ArrayRef, ArrowError> {
    let array: Decimal128Array = values.map(|v| v.map(|d| scaled(d, scale as u32))).collect();
    Ok(Arc::new(array.with_precision_and_scale(precision, scale)?))
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn date32(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

/// The rows of one table as a record batch (rows of other tables are skipped).
pub fn record_batch<'a>(
    table: Table,
    rows: impl IntoIterator<Item = &'a Row>,
) -> Result<RecordBatch, ArrowError> {
    let rows: Vec<&Row> = rows.into_iter().filter(|r| r.table() == table).collect();
    let schema = schema(table);
    let columns = match table {
        Table::TripEvents => {
            let events: Vec<FlatTripEvent> = rows
                .iter()
                .filter_map(|r| match r {
                    Row::TripEvent(e) => Some(FlatTripEvent::from(e)),
                    _ => None,
                })
                .collect();
            trip_event_columns(&events)?
        }
        Table::LedgerEntries => ledger_columns(rows.iter().filter_map(|r| match r {
            Row::Ledger(e) => Some(e),
            _ => None,
        }))?,
        Table::OvertimeRecords => overtime_columns(rows.iter().filter_map(|r| match r {
            Row::Overtime(e) => Some(e),
            _ => None,
        })),
        Table::DriverPositions => position_columns(rows.iter().filter_map(|r| match r {
            Row::Position(p) => Some(p),
            _ => None,
        })),
    };
    RecordBatch::try_new(schema, columns)
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn trip_event_columns(e: &[FlatTripEvent]) -> Result<Vec<ArrayRef>, ArrowError> {
    Ok(vec![
        strings(e.iter().map(|e| Some(e.event_id.as_str()))),
        strings(e.iter().map(|e| Some(e.trip_id.as_str()))),
        timestamps(e.iter().map(|e| e.ts.timestamp_millis())),
        strings(e.iter().map(|e| Some(e.kind))),
        strings(e.iter().map(|e| e.driver_id.as_deref())),
        strings(e.iter().map(|e| e.rider_id.as_deref())),
        strings(e.iter().map(|e| e.vehicle_class.as_deref())),
        Arc::new(e.iter().map(|e| e.pickup.map(|p| p.0)).collect::<Float64Array>()),
        Arc::new(e.iter().map(|e| e.pickup.map(|p| p.1)).collect::<Float64Array>()),
        Arc::new(e.iter().map(|e| e.dropoff.map(|p| p.0)).collect::<Float64Array>()),
        Arc::new(e.iter().map(|e| e.dropoff.map(|p| p.1)).collect::<Float64Array>()),
        decimals(e.iter().map(|e| e.surge), 4, 1)?,
        decimals(e.iter().map(|e| e.fare), 18, 2)?,
        Arc::new(e.iter().map(|e| e.distance_km).collect::<Float64Array>()),
        Arc::new(e.iter().map(|e| e.duration_s).collect::<Float64Array>()),
        Arc::new(e.iter().map(|e| e.attempt).collect::<UInt32Array>()),
        strings(e.iter().map(|e| e.cancelled_by)),
        strings(e.iter().map(|e| e.reason.as_deref())),
        decimals(e.iter().map(|e| e.fee), 18, 2)?,
    ])
}

fn ledger_columns<'a>(entries: impl Iterator<Item = &'a LedgerEntry>) -> Result<Vec<ArrayRef>, ArrowError> {
    let e: Vec<&LedgerEntry> = entries.collect();
    Ok(vec![
        strings(e.iter().map(|e| Some(e.entry_id.as_str()))),
        strings(e.iter().map(|e| Some(e.txn_id.as_str()))),
        strings(e.iter().map(|e| Some(e.account_id.as_str()))),
        decimals(e.iter().map(|e| Some(e.amount)), 18, 2)?,
        strings(e.iter().map(|e| Some(e.kind.as_str()))),
        strings(e.iter().map(|e| e.trip_id.as_deref())),
        timestamps(e.iter().map(|e| e.ts.timestamp_millis())),
    ])
}

fn overtime_columns<'a>(records: impl Iterator<Item = &'a OvertimeRecord>) -> Vec<ArrayRef> {
    let r: Vec<&OvertimeRecord> = records.collect();
    let minutes = |f: fn(&OvertimeRecord) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(r.iter().map(|r| f(r))))
    };
    let mut flags = ListBuilder::new(StringBuilder::new());
    for record in &r {
        for flag in &record.flags {
            flags.values().append_value(flag.as_str());
        }
        flags.append(true);
    }
    vec![
        strings(r.iter().map(|r| Some(r.employee_id.as_str()))),
        strings(r.iter().map(|r| Some(r.period.as_str()))),
        Arc::new(Date32Array::from_iter_values(
            r.iter().map(|r| date32(r.period_start)),
        )),
        minutes(|r| r.worked_minutes),
        minutes(|r| r.regular_minutes),
        minutes(|r| r.ot_150_minutes),
        minutes(|r| r.ot_200_minutes),
        minutes(|r| r.weekly_ot_minutes),
        minutes(|r| r.night_minutes),
        minutes(|r| r.holiday_minutes),
        Arc::new(flags.finish()),
        Arc::new(UInt32Array::from_iter_values(r.iter().map(|r| r.version))),
        Arc::new(r.iter().map(|r| Some(r.is_final)).collect::<BooleanArray>()),
        strings(r.iter().map(|r| Some(r.event_id.as_str()))),
    ]
}

/// A driver status as the tables spell it.
pub fn status_name(s: DriverStatusKind) -> &'static str {
    match s {
        DriverStatusKind::Online => "online",
        DriverStatusKind::Offline => "offline",
    }
}

fn position_columns<'a>(positions: impl Iterator<Item = &'a DriverPosition>) -> Vec<ArrayRef> {
    let p: Vec<&DriverPosition> = positions.collect();
    vec![
        strings(p.iter().map(|p| Some(p.event_id.as_str()))),
        strings(p.iter().map(|p| Some(p.driver_id.as_str()))),
        Arc::new(Float64Array::from_iter_values(p.iter().map(|p| p.lat))),
        Arc::new(Float64Array::from_iter_values(p.iter().map(|p| p.lng))),
        strings(p.iter().map(|p| Some(p.cell.as_str()))),
        strings(p.iter().map(|p| p.status.map(status_name))),
        strings(p.iter().map(|p| p.vehicle_class.as_ref().map(|c| c.0.as_str()))),
        timestamps(p.iter().map(|p| p.ts.timestamp_millis())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_its_cents() {
        assert_eq!(scaled(Decimal::new(1234, 2), 2), 1234);
        assert_eq!(scaled(Decimal::new(12, 0), 2), 1200);
        assert_eq!(scaled(Decimal::new(12345, 3), 2), 1235);
        assert_eq!(scaled(Decimal::new(-12345, 3), 2), -1235);
    }
}
