//! The ClickHouse sink (crate `clickhouse`, RowBinary inserts over HTTP with LZ4).
//!
//! ClickHouse has no transactions, so exactly-once comes from idempotence: every table is a
//! `ReplacingMergeTree` whose sorting key holds the row's id (overtime rows keep their highest
//! `version`), and the sink's positions are inserted after the rows. A crash between the two
//! writes the rows again on restart; the copies share a key and collapse at the next merge or
//! under `FINAL`, so queries that must count exactly read `... FINAL`.
//!
//! Works with ClickHouse 18.16 (Debian's) and newer: the server cannot describe a table to the
//! client there (no `RowBinaryWithNamesAndTypes`), so the client runs with validation off and
//! the row structs below must list the columns in the table's order — the tests insert and read
//! back every table to hold them to it. `DateTime64` does not exist in 18.16: instants are a
//! `DateTime` (seconds, for partitioning and the usual filters) plus `ts_ms` (milliseconds).
//! Money is `Decimal(18, 2)`, written as a scaled `i64`.

use std::collections::BTreeMap;

use clickhouse::Client;
use fleetstream_schemas::{DriverPosition, LedgerEntry, OvertimeRecord};
use fleetstream_topology::TopicPartition;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::SinkError;
use crate::batches::status_name;
use crate::rows::{FlatTripEvent, Row};
use crate::runner::{Batch, BoxFuture, SinkTarget};

/// The tables, in the order they are created. `{db}` is the configured database.
pub const SCHEMA: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS {db}",
    "CREATE TABLE IF NOT EXISTS {db}.fleetstream_sink_offsets (
        sink String, topic String, part UInt32, next_offset UInt64
    ) ENGINE = ReplacingMergeTree(next_offset) ORDER BY (sink, topic, part)",
    // By time, then trip: the analysts' funnel and revenue queries filter on time.
    "CREATE TABLE IF NOT EXISTS {db}.trip_events (
        event_id String, trip_id String, type String, ts DateTime, ts_ms Int64,
        driver_id Nullable(String), rider_id Nullable(String), vehicle_class Nullable(String),
        pickup_lat Nullable(Float64), pickup_lng Nullable(Float64),
        dropoff_lat Nullable(Float64), dropoff_lng Nullable(Float64),
        surge Nullable(Decimal(4, 1)), fare Nullable(Decimal(18, 2)),
        distance_km Nullable(Float64), duration_s Nullable(Float64), attempt Nullable(UInt32),
        cancelled_by Nullable(String), reason Nullable(String), fee Nullable(Decimal(18, 2))
    ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (ts, trip_id, event_id)",
    // By account, then time: statements and balances.
    "CREATE TABLE IF NOT EXISTS {db}.ledger_entries (
        entry_id String, txn_id String, account_id String, amount Decimal(18, 2), kind String,
        trip_id Nullable(String), ts DateTime, ts_ms Int64
    ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (account_id, ts, entry_id)",
    // One row per window; the highest version wins.
    "CREATE TABLE IF NOT EXISTS {db}.overtime_records (
        employee_id String, period String, period_start Date,
        worked_minutes Int64, regular_minutes Int64, ot_150_minutes Int64, ot_200_minutes Int64,
        weekly_ot_minutes Int64, night_minutes Int64, holiday_minutes Int64,
        flags Array(String), version UInt32, final UInt8, event_id String
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(period_start)
      ORDER BY (employee_id, period, period_start)",
    // By H3 cell, then time: heat maps and supply per area.
    "CREATE TABLE IF NOT EXISTS {db}.driver_positions (
        event_id String, driver_id String, lat Float64, lng Float64, cell String,
        status Nullable(String), vehicle_class Nullable(String), ts DateTime, ts_ms Int64
    ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (cell, ts, driver_id, event_id)",
];

fn cents(d: Decimal, scale: u32) -> i64 {
    let mut d = d.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    d.rescale(scale);
    d.mantissa() as i64
}

fn seconds(ts: chrono::DateTime<chrono::Utc>) -> u32 {
    u32::try_from(ts.timestamp()).unwrap_or(0)
}

#[derive(Debug, clickhouse::Row, Serialize)]
struct TripEventRow {
    event_id: String,
    trip_id: String,
    r#type: String,
    ts: u32,
    ts_ms: i64,
    driver_id: Option<String>,
    rider_id: Option<String>,
    vehicle_class: Option<String>,
    pickup_lat: Option<f64>,
    pickup_lng: Option<f64>,
    dropoff_lat: Option<f64>,
    dropoff_lng: Option<f64>,
    surge: Option<i32>,
    fare: Option<i64>,
    distance_km: Option<f64>,
    duration_s: Option<f64>,
    attempt: Option<u32>,
    cancelled_by: Option<String>,
    reason: Option<String>,
    fee: Option<i64>,
}

impl From<FlatTripEvent> for TripEventRow {
    fn from(e: FlatTripEvent) -> Self {
        TripEventRow {
            ts: seconds(e.ts),
            ts_ms: e.ts.timestamp_millis(),
            event_id: e.event_id,
            trip_id: e.trip_id,
            r#type: e.kind.to_string(),
            driver_id: e.driver_id,
            rider_id: e.rider_id,
            vehicle_class: e.vehicle_class,
            pickup_lat: e.pickup.map(|p| p.0),
            pickup_lng: e.pickup.map(|p| p.1),
            dropoff_lat: e.dropoff.map(|p| p.0),
            dropoff_lng: e.dropoff.map(|p| p.1),
            surge: e.surge.map(|s| cents(s, 1) as i32),
            fare: e.fare.map(|f| cents(f, 2)),
            distance_km: e.distance_km,
            duration_s: e.duration_s,
            attempt: e.attempt,
            cancelled_by: e.cancelled_by.map(str::to_string),
            reason: e.reason,
            fee: e.fee.map(|f| cents(f, 2)),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
struct LedgerRow {
    entry_id: String,
    txn_id: String,
    account_id: String,
    amount: i64,
    kind: String,
    trip_id: Option<String>,
    ts: u32,
    ts_ms: i64,
}

impl From<&LedgerEntry> for LedgerRow {
    fn from(e: &LedgerEntry) -> Self {
        LedgerRow {
            entry_id: e.entry_id.clone(),
            txn_id: e.txn_id.clone(),
            account_id: e.account_id.clone(),
            amount: cents(e.amount, 2),
            kind: e.kind.as_str().to_string(),
            trip_id: e.trip_id.clone(),
            ts: seconds(e.ts),
            ts_ms: e.ts.timestamp_millis(),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
struct OvertimeRow {
    employee_id: String,
    period: String,
    period_start: u16,
    worked_minutes: i64,
    regular_minutes: i64,
    ot_150_minutes: i64,
    ot_200_minutes: i64,
    weekly_ot_minutes: i64,
    night_minutes: i64,
    holiday_minutes: i64,
    flags: Vec<String>,
    version: u32,
    r#final: u8,
    event_id: String,
}

impl From<&OvertimeRecord> for OvertimeRow {
    fn from(r: &OvertimeRecord) -> Self {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        OvertimeRow {
            employee_id: r.employee_id.clone(),
            period: r.period.as_str().to_string(),
            period_start: u16::try_from((r.period_start - epoch).num_days()).unwrap_or(0),
            worked_minutes: r.worked_minutes,
            regular_minutes: r.regular_minutes,
            ot_150_minutes: r.ot_150_minutes,
            ot_200_minutes: r.ot_200_minutes,
            weekly_ot_minutes: r.weekly_ot_minutes,
            night_minutes: r.night_minutes,
            holiday_minutes: r.holiday_minutes,
            flags: r.flags.iter().map(|f| f.as_str().to_string()).collect(),
            version: r.version,
            r#final: u8::from(r.is_final),
            event_id: r.event_id.clone(),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
struct PositionRow {
    event_id: String,
    driver_id: String,
    lat: f64,
    lng: f64,
    cell: String,
    status: Option<String>,
    vehicle_class: Option<String>,
    ts: u32,
    ts_ms: i64,
}

impl From<&DriverPosition> for PositionRow {
    fn from(p: &DriverPosition) -> Self {
        PositionRow {
            event_id: p.event_id.clone(),
            driver_id: p.driver_id.clone(),
            lat: p.lat,
            lng: p.lng,
            cell: p.cell.clone(),
            status: p.status.map(|s| status_name(s).to_string()),
            vehicle_class: p.vehicle_class.as_ref().map(|c| c.0.clone()),
            ts: seconds(p.ts),
            ts_ms: p.ts.timestamp_millis(),
        }
    }
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct OffsetRow {
    sink: String,
    topic: String,
    part: u32,
    next_offset: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct PositionRead {
    topic: String,
    part: u32,
    next_offset: u64,
}

/// How to reach ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseOptions {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl ClickHouseOptions {
    pub fn client(&self) -> Client {
        let mut client = Client::default()
            .with_url(self.url.trim_end_matches('/'))
            .with_validation(false);
        if let Some(user) = &self.user {
            client = client.with_user(user);
        }
        if let Some(password) = &self.password {
            client = client.with_password(password);
        }
        client
    }
}

pub struct ClickHouseSink {
    options: ClickHouseOptions,
    name: String,
    client: Client,
}

impl ClickHouseSink {
    pub fn new(options: ClickHouseOptions, name: &str) -> Self {
        let client = options.client();
        ClickHouseSink {
            options,
            name: name.to_string(),
            client,
        }
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.options.database)
    }

    async fn insert<T>(&self, table: &str, rows: impl IntoIterator<Item = T>) -> Result<(), SinkError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        // The client quotes the table name whole, so the database is the client's.
        let client = self.client.clone().with_database(&self.options.database);
        let mut insert = client
            .insert::<T>(table)
            .await
            .map_err(|e| classify(&self.name, e))?;
        for row in rows {
            insert.write(&row).await.map_err(|e| classify(&self.name, e))?;
        }
        insert.end().await.map_err(|e| classify(&self.name, e))
    }
}

/// Errors ClickHouse reports about the data (a value it cannot parse or convert, a type
/// mismatch, a value out of range) are the rows' fault; anything else is the server's.
pub fn classify(sink: &str, e: clickhouse::error::Error) -> SinkError {
    // CANNOT_PARSE_*, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, TOO_LARGE_STRING_SIZE,
    // CANNOT_READ_ALL_DATA, DECIMAL_OVERFLOW, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE.
    const DATA_ERRORS: [u32; 14] = [6, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 131, 407, 321];
    let text = e.to_string();
    let code = text
        .split("Code: ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|c| c.parse::<u32>().ok());
    match (&e, code) {
        (clickhouse::error::Error::BadResponse(_), Some(code)) if DATA_ERRORS.contains(&code) => {
            SinkError::Rejected {
                sink: sink.to_string(),
                detail: text,
            }
        }
        (clickhouse::error::Error::Custom(_) | clickhouse::error::Error::SequenceMustHaveLength, _) => {
            SinkError::Rejected {
                sink: sink.to_string(),
                detail: text,
            }
        }
        _ => SinkError::Unavailable {
            sink: sink.to_string(),
            detail: text,
        },
    }
}

impl SinkTarget for ClickHouseSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            for statement in SCHEMA {
                let sql = statement.replace("{db}", &self.options.database);
                self.client
                    .query(&sql)
                    .execute()
                    .await
                    .map_err(|e| classify(&self.name, e))?;
            }
            info!(sink = %self.name, database = %self.options.database, "ClickHouse tables ready");
            Ok(())
        })
    }

    fn positions(
        &mut self,
        tps: Vec<TopicPartition>,
    ) -> BoxFuture<'_, Result<BTreeMap<TopicPartition, u64>, SinkError>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT topic, part, max(next_offset) AS next_offset FROM {} WHERE sink = ? GROUP BY topic, part",
                self.table("fleetstream_sink_offsets")
            );
            let rows = self
                .client
                .query(&sql)
                .bind(&self.name)
                .fetch_all::<PositionRead>()
                .await
                .map_err(|e| classify(&self.name, e))?;
            let stored: BTreeMap<TopicPartition, u64> = rows
                .into_iter()
                .map(|r| (TopicPartition::new(r.topic, r.part), r.next_offset))
                .collect();
            Ok(tps
                .into_iter()
                .filter_map(|tp| stored.get(&tp).map(|o| (tp, *o)))
                .collect())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut events = Vec::new();
            let mut ledger = Vec::new();
            let mut overtime = Vec::new();
            let mut positions = Vec::new();
            for record in &batch.records {
                match &record.row {
                    Row::TripEvent(e) => events.push(TripEventRow::from(FlatTripEvent::from(e))),
                    Row::Ledger(e) => ledger.push(LedgerRow::from(e)),
                    Row::Overtime(r) => overtime.push(OvertimeRow::from(r)),
                    Row::Position(p) => positions.push(PositionRow::from(p)),
                }
            }
            self.insert("trip_events", events).await?;
            self.insert("ledger_entries", ledger).await?;
            self.insert("overtime_records", overtime).await?;
            self.insert("driver_positions", positions).await?;
            let offsets = batch.positions.iter().map(|(tp, next)| OffsetRow {
                sink: self.name.clone(),
                topic: tp.topic.clone(),
                part: tp.partition,
                next_offset: *next,
            });
            self.insert("fleetstream_sink_offsets", offsets.collect::<Vec<_>>())
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_the_rows_fault() {
        let refused = classify(
            "ch",
            clickhouse::error::Error::BadResponse(
                "Code: 27, e.displayText() = DB::Exception: Cannot parse input".into(),
            ),
        );
        assert!(matches!(refused, SinkError::Rejected { .. }));
        let down = classify(
            "ch",
            clickhouse::error::Error::BadResponse(
                "Code: 241, e.displayText() = DB::Exception: Memory limit".into(),
            ),
        );
        assert!(matches!(down, SinkError::Unavailable { .. }));
        assert!(matches!(
            classify("ch", clickhouse::error::Error::TimedOut),
            SinkError::Unavailable { .. }
        ));
    }

    #[test]
    fn money_is_written_in_cents() {
        assert_eq!(cents(Decimal::new(1999, 2), 2), 1999);
        assert_eq!(cents(Decimal::new(15, 1), 1), 15);
        assert_eq!(cents(Decimal::new(-5, 0), 2), -500);
    }
}
