//! Arrow schemas of the result types, shared by the Parquet sink and the SQL engine so that a
//! table means the same thing wherever it is read. Money is `Decimal128(18, 2)`, surge
//! `Decimal128(4, 1)`, instants are UTC milliseconds.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn money() -> DataType {
    DataType::Decimal128(18, 2)
}

/// `trip.events`: one row per event; type-specific columns are null where they do not apply.
pub fn trip_event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("trip_id", DataType::Utf8, false),
        Field::new("ts", ts(), false),
        Field::new("type", DataType::Utf8, false),
        Field::new("driver_id", DataType::Utf8, true),
        Field::new("rider_id", DataType::Utf8, true),
        Field::new("vehicle_class", DataType::Utf8, true),
        Field::new("pickup_lat", DataType::Float64, true),
        Field::new("pickup_lng", DataType::Float64, true),
        Field::new("dropoff_lat", DataType::Float64, true),
        Field::new("dropoff_lng", DataType::Float64, true),
        Field::new("surge", DataType::Decimal128(4, 1), true),
        Field::new("fare", money(), true),
        Field::new("distance_km", DataType::Float64, true),
        Field::new("duration_s", DataType::Float64, true),
        Field::new("attempt", DataType::UInt32, true),
        Field::new("cancelled_by", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("fee", money(), true),
    ]))
}

/// `ledger.entries`: one row per posting.
pub fn ledger_entry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("entry_id", DataType::Utf8, false),
        Field::new("txn_id", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("amount", money(), false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("trip_id", DataType::Utf8, true),
        Field::new("ts", ts(), false),
    ]))
}

/// `overtime.records`: one row per emitted version.
pub fn overtime_record_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("employee_id", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("period_start", DataType::Date32, false),
        Field::new("worked_minutes", DataType::Int64, false),
        Field::new("regular_minutes", DataType::Int64, false),
        Field::new("ot_150_minutes", DataType::Int64, false),
        Field::new("ot_200_minutes", DataType::Int64, false),
        Field::new("weekly_ot_minutes", DataType::Int64, false),
        Field::new("night_minutes", DataType::Int64, false),
        Field::new("holiday_minutes", DataType::Int64, false),
        Field::new(
            "flags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("version", DataType::UInt32, false),
        Field::new("final", DataType::Boolean, false),
        Field::new("event_id", DataType::Utf8, false),
    ]))
}

/// `driver.positions`: one row per accepted ping.
pub fn driver_position_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("driver_id", DataType::Utf8, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lng", DataType::Float64, false),
        Field::new("cell", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("vehicle_class", DataType::Utf8, true),
        Field::new("ts", ts(), false),
    ]))
}
