//! The PostgreSQL sink (`tokio-postgres`): migrations shipped with the binary and applied on
//! start, bulk loads through binary COPY into staging tables, and every batch — rows, folded
//! trips, wallet balances and the sink's positions — in one transaction. Rows that exist are
//! left alone (`ON CONFLICT`), overtime rows are only replaced by a higher version, so a batch
//! written twice changes nothing.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use fleetstream_operators::trips::router::TripView;
use fleetstream_schemas::{LedgerEntry, OvertimeRecord};
use fleetstream_topology::TopicPartition;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};
use tracing::info;

use crate::SinkError;
use crate::batches::status_name;
use crate::rows::{FlatTripEvent, Row};
use crate::runner::{Batch, BoxFuture, SinkTarget};

/// Migrations in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))];

const STAGING: &str = "
    CREATE TEMP TABLE IF NOT EXISTS staging_trip_events (LIKE trip_events) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS staging_ledger_entries (LIKE ledger_entries) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS staging_overtime_records (LIKE overtime_records) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS staging_driver_locations (LIKE driver_locations) ON COMMIT DELETE ROWS;
";

pub struct PostgresSink {
    url: String,
    name: String,
    client: Option<Client>,
    /// The tables exist (the staging tables copy them).
    migrated: bool,
}

impl PostgresSink {
    /// A sink writing to the database at `url`; `name` keys its positions (one per
    /// application and sink).
    pub fn new(url: &str, name: &str) -> Self {
        PostgresSink {
            url: url.to_string(),
            name: name.to_string(),
            client: None,
            migrated: false,
        }
    }

    async fn client(&mut self) -> Result<&mut Client, SinkError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(|e| self.error(e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection ended");
                }
            });
            if self.migrated {
                client.batch_execute(STAGING).await.map_err(|e| self.error(e))?;
            }
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected"))
    }

    fn error(&self, e: tokio_postgres::Error) -> SinkError {
        classify(&self.name, e)
    }
}

/// Data errors (class 22) and constraint violations (class 23) are the rows' fault: the runner
/// isolates and dead-letters them. Anything else is the database being unavailable.
pub fn classify(sink: &str, e: tokio_postgres::Error) -> SinkError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") || db.code().code().starts_with("23") => {
            SinkError::Rejected {
                sink: sink.to_string(),
                detail: format!("{} ({})", db.message(), db.code().code()),
            }
        }
        _ => SinkError::Unavailable {
            sink: sink.to_string(),
            detail: e.to_string(),
        },
    }
}

/// Applies the migrations not applied yet, one transaction, under an advisory lock so that
/// instances starting together do not race.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS fleetstream_migrations (version integer PRIMARY KEY, name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(724301)", &[]).await?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM fleetstream_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if !applied.contains(version) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO fleetstream_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            done.push(*version);
        }
    }
    tx.commit().await?;
    Ok(done)
}

async fn copy_in(
    tx: &Transaction<'_>,
    statement: &str,
    types: &[Type],
    rows: Vec<Vec<Box<dyn ToSql + Sync + Send>>>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in(statement).await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    tokio::pin!(writer);
    for row in &rows {
        let values: Vec<&(dyn ToSql + Sync)> =
            row.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await
}

type Values = Vec<Box<dyn ToSql + Sync + Send>>;

fn trip_event_values(e: &FlatTripEvent) -> Values {
    vec![
        Box::new(e.event_id.clone()),
        Box::new(e.trip_id.clone()),
        Box::new(e.kind.to_string()),
        Box::new(e.ts),
        Box::new(e.driver_id.clone()),
        Box::new(e.rider_id.clone()),
        Box::new(e.vehicle_class.clone()),
        Box::new(e.pickup.map(|p| p.0)),
        Box::new(e.pickup.map(|p| p.1)),
        Box::new(e.dropoff.map(|p| p.0)),
        Box::new(e.dropoff.map(|p| p.1)),
        Box::new(e.surge),
        Box::new(e.fare),
        Box::new(e.distance_km),
        Box::new(e.duration_s),
        Box::new(e.attempt.map(|a| a as i32)),
        Box::new(e.cancelled_by.map(str::to_string)),
        Box::new(e.reason.clone()),
        Box::new(e.fee),
    ]
}

const TRIP_EVENT_TYPES: [Type; 19] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::NUMERIC,
];

fn ledger_values(e: &LedgerEntry) -> Values {
    vec![
        Box::new(e.entry_id.clone()),
        Box::new(e.txn_id.clone()),
        Box::new(e.account_id.clone()),
        Box::new(e.amount),
        Box::new(e.kind.as_str().to_string()),
        Box::new(e.trip_id.clone()),
        Box::new(e.ts),
    ]
}

const LEDGER_TYPES: [Type; 7] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::NUMERIC,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];

fn overtime_values(r: &OvertimeRecord) -> Values {
    let minutes = |m: i64| m.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    vec![
        Box::new(r.employee_id.clone()),
        Box::new(r.period.as_str().to_string()),
        Box::new(r.period_start),
        Box::new(minutes(r.worked_minutes)),
        Box::new(minutes(r.regular_minutes)),
        Box::new(minutes(r.ot_150_minutes)),
        Box::new(minutes(r.ot_200_minutes)),
        Box::new(minutes(r.weekly_ot_minutes)),
        Box::new(minutes(r.night_minutes)),
        Box::new(minutes(r.holiday_minutes)),
        Box::new(
            r.flags
                .iter()
                .map(|f| f.as_str().to_string())
                .collect::<Vec<String>>(),
        ),
        Box::new(r.version as i32),
        Box::new(r.is_final),
        Box::new(r.event_id.clone()),
    ]
}

const OVERTIME_TYPES: [Type; 14] = [
    Type::TEXT,
    Type::TEXT,
    Type::DATE,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::TEXT_ARRAY,
    Type::INT4,
    Type::BOOL,
    Type::TEXT,
];

/// Merges the fold of a batch's new events for one trip (a [`TripView`] started empty, so
/// that what the batch did not touch is null) into the stored row.
const UPSERT_TRIP: &str = "
    INSERT INTO trips (trip_id, status, rider_id, driver_id, vehicle_class, pickup_lat, pickup_lng, dropoff_lat,
                       dropoff_lng, requested_at, matched_at, started_at, completed_at, cancelled_at, cancelled_by,
                       surge, fare, distance_km, duration_s, offers, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
    ON CONFLICT (trip_id) DO UPDATE SET
        status = CASE WHEN EXCLUDED.updated_at >= trips.updated_at THEN EXCLUDED.status ELSE trips.status END,
        rider_id = COALESCE(EXCLUDED.rider_id, trips.rider_id),
        driver_id = CASE WHEN EXCLUDED.status = 'no_driver' AND trips.matched_at IS NULL THEN NULL
                         ELSE COALESCE(EXCLUDED.driver_id, trips.driver_id) END,
        vehicle_class = COALESCE(EXCLUDED.vehicle_class, trips.vehicle_class),
        pickup_lat = COALESCE(EXCLUDED.pickup_lat, trips.pickup_lat),
        pickup_lng = COALESCE(EXCLUDED.pickup_lng, trips.pickup_lng),
        dropoff_lat = COALESCE(EXCLUDED.dropoff_lat, trips.dropoff_lat),
        dropoff_lng = COALESCE(EXCLUDED.dropoff_lng, trips.dropoff_lng),
        requested_at = COALESCE(EXCLUDED.requested_at, trips.requested_at),
        matched_at = COALESCE(EXCLUDED.matched_at, trips.matched_at),
        started_at = COALESCE(EXCLUDED.started_at, trips.started_at),
        completed_at = COALESCE(EXCLUDED.completed_at, trips.completed_at),
        cancelled_at = COALESCE(EXCLUDED.cancelled_at, trips.cancelled_at),
        cancelled_by = COALESCE(EXCLUDED.cancelled_by, trips.cancelled_by),
        surge = COALESCE(EXCLUDED.surge, trips.surge),
        fare = COALESCE(EXCLUDED.fare, trips.fare),
        distance_km = COALESCE(EXCLUDED.distance_km, trips.distance_km),
        duration_s = COALESCE(EXCLUDED.duration_s, trips.duration_s),
        offers = GREATEST(trips.offers, EXCLUDED.offers),
        updated_at = GREATEST(trips.updated_at, EXCLUDED.updated_at)";

fn instant(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

async fn write_batch(tx: &Transaction<'_>, sink: &str, batch: &Batch) -> Result<(), tokio_postgres::Error> {
    let mut events = Vec::new();
    let mut trip_events = Vec::new();
    let mut ledger = Vec::new();
    let mut overtime = Vec::new();
    let mut positions = Vec::new();
    for record in &batch.records {
        match &record.row {
            Row::TripEvent(e) => {
                events.push(FlatTripEvent::from(e));
                trip_events.push(e);
            }
            Row::Ledger(e) => ledger.push(ledger_values(e)),
            Row::Overtime(r) => overtime.push(overtime_values(r)),
            Row::Position(p) => positions.push(p.clone()),
        }
    }
    if !events.is_empty() {
        let values = events.iter().map(trip_event_values).collect();
        copy_in(
            tx,
            "COPY staging_trip_events FROM STDIN (FORMAT binary)",
            &TRIP_EVENT_TYPES,
            values,
        )
        .await?;
        let new: HashSet<String> = tx
            .query("INSERT INTO trip_events SELECT * FROM staging_trip_events ON CONFLICT (event_id) DO NOTHING RETURNING event_id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut folds: BTreeMap<&str, TripView> = BTreeMap::new();
        for (flat, event) in events
            .iter()
            .zip(&trip_events)
            .filter(|(f, _)| new.contains(&f.event_id))
        {
            folds.entry(&flat.trip_id).or_default().apply(event);
        }
        let upsert = tx.prepare(UPSERT_TRIP).await?;
        for (trip, v) in folds {
            let offers = v.offers as i32;
            tx.execute(
                &upsert,
                &[
                    &trip,
                    &v.status,
                    &v.rider_id,
                    &v.driver_id,
                    &v.vehicle_class,
                    &v.pickup.map(|p| p.0),
                    &v.pickup.map(|p| p.1),
                    &v.dropoff.map(|p| p.0),
                    &v.dropoff.map(|p| p.1),
                    &instant(v.requested_at),
                    &instant(v.matched_at),
                    &instant(v.started_at),
                    &instant(v.completed_at),
                    &instant(v.cancelled_at),
                    &v.cancelled_by,
                    &v.surge,
                    &v.fare,
                    &v.distance_km,
                    &v.duration_s,
                    &offers,
                    &instant(Some(v.updated_at)),
                ],
            )
            .await?;
        }
    }
    if !ledger.is_empty() {
        copy_in(
            tx,
            "COPY staging_ledger_entries FROM STDIN (FORMAT binary)",
            &LEDGER_TYPES,
            ledger,
        )
        .await?;
        tx.execute(
            "WITH new AS (
                 INSERT INTO ledger_entries SELECT * FROM staging_ledger_entries
                 ON CONFLICT (entry_id) DO NOTHING RETURNING account_id, amount, ts)
             INSERT INTO wallet_balances (account_id, balance, postings, updated_at)
             SELECT account_id, sum(amount), count(*), max(ts) FROM new GROUP BY account_id
             ON CONFLICT (account_id) DO UPDATE SET
                 balance = wallet_balances.balance + EXCLUDED.balance,
                 postings = wallet_balances.postings + EXCLUDED.postings,
                 updated_at = GREATEST(wallet_balances.updated_at, EXCLUDED.updated_at)",
            &[],
        )
        .await?;
    }
    if !overtime.is_empty() {
        copy_in(
            tx,
            "COPY staging_overtime_records FROM STDIN (FORMAT binary)",
            &OVERTIME_TYPES,
            overtime,
        )
        .await?;
        tx.execute(
            "INSERT INTO overtime_records
             SELECT DISTINCT ON (employee_id, period, period_start) * FROM staging_overtime_records
             ORDER BY employee_id, period, period_start, version DESC
             ON CONFLICT (employee_id, period, period_start) DO UPDATE SET
                 worked_minutes = EXCLUDED.worked_minutes, regular_minutes = EXCLUDED.regular_minutes,
                 ot_150_minutes = EXCLUDED.ot_150_minutes, ot_200_minutes = EXCLUDED.ot_200_minutes,
                 weekly_ot_minutes = EXCLUDED.weekly_ot_minutes, night_minutes = EXCLUDED.night_minutes,
                 holiday_minutes = EXCLUDED.holiday_minutes, flags = EXCLUDED.flags, version = EXCLUDED.version,
                 final = EXCLUDED.final, event_id = EXCLUDED.event_id
             WHERE EXCLUDED.version > overtime_records.version",
            &[],
        )
        .await?;
    }
    if !positions.is_empty() {
        let values = positions
            .iter()
            .map(|p| -> Values {
                vec![
                    Box::new(p.driver_id.clone()),
                    Box::new(p.lat),
                    Box::new(p.lng),
                    Box::new(p.cell.clone()),
                    Box::new(p.status.map(|s| status_name(s).to_string())),
                    Box::new(p.vehicle_class.as_ref().map(|c| c.0.clone())),
                    Box::new(p.ts),
                    Box::new(p.event_id.clone()),
                ]
            })
            .collect();
        let types = [
            Type::TEXT,
            Type::FLOAT8,
            Type::FLOAT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
        ];
        copy_in(
            tx,
            "COPY staging_driver_locations FROM STDIN (FORMAT binary)",
            &types,
            values,
        )
        .await?;
        tx.execute(
            "INSERT INTO driver_locations
             SELECT DISTINCT ON (driver_id) * FROM staging_driver_locations ORDER BY driver_id, ts DESC
             ON CONFLICT (driver_id) DO UPDATE SET lat = EXCLUDED.lat, lng = EXCLUDED.lng, cell = EXCLUDED.cell,
                 status = EXCLUDED.status, vehicle_class = EXCLUDED.vehicle_class, ts = EXCLUDED.ts,
                 event_id = EXCLUDED.event_id
             WHERE EXCLUDED.ts > driver_locations.ts",
            &[],
        )
        .await?;
    }
    if !batch.positions.is_empty() {
        let upsert = tx
            .prepare(
                "INSERT INTO fleetstream_sink_offsets (sink, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            )
            .await?;
        for (tp, next) in &batch.positions {
            tx.execute(
                &upsert,
                &[&sink, &tp.topic, &(tp.partition as i32), &(*next as i64)],
            )
            .await?;
        }
    }
    Ok(())
}

impl SinkTarget for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let name = self.name.clone();
            let client = self.client().await?;
            let applied = migrate(client).await.map_err(|e| classify(&name, e))?;
            // Staging tables copy the migrated tables.
            client
                .batch_execute(STAGING)
                .await
                .map_err(|e| classify(&name, e))?;
            self.migrated = true;
            info!(sink = %name, applied = ?applied, "PostgreSQL schema up to date");
            Ok(())
        })
    }

    fn positions(
        &mut self,
        tps: Vec<TopicPartition>,
    ) -> BoxFuture<'_, Result<BTreeMap<TopicPartition, u64>, SinkError>> {
        Box::pin(async move {
            let name = self.name.clone();
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT topic, partition, next_offset FROM fleetstream_sink_offsets WHERE sink = $1",
                    &[&name],
                )
                .await
                .map_err(|e| classify(&name, e))?;
            let stored: BTreeMap<TopicPartition, u64> = rows
                .iter()
                .map(|r| {
                    (
                        TopicPartition::new(r.get::<_, String>(0), r.get::<_, i32>(1) as u32),
                        r.get::<_, i64>(2) as u64,
                    )
                })
                .collect();
            Ok(tps
                .into_iter()
                .filter_map(|tp| stored.get(&tp).map(|o| (tp, *o)))
                .collect())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let name = self.name.clone();
            let client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| classify(&name, e))?;
            write_batch(&tx, &name, batch)
                .await
                .map_err(|e| classify(&name, e))?;
            tx.commit().await.map_err(|e| classify(&name, e))
        })
    }
}
