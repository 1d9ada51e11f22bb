//! The operators' state stores as SQL tables: `drivers`, `trips`, `wallets`, `ledger`, `overtime`.
//!
//! A scan reads the committed state of the stores' partitions (see
//! `StateRegistry::read_cut` for the consistency a query gets). Filters on a table's key
//! (`driver_id = 'd1'`, `trip_id IN (...)`, `employee_id = 'e1'` for overtime) are pushed into the
//! scan and become point lookups (prefix scans for overtime), so a key lookup reads one entry
//! per partition instead of the whole store; `EXPLAIN` shows them on the `StoreScanExec` line.
//! Partitions this instance does not run are read from the instances that do, through a
//! [`RemoteScan`] (the edge API provides one); without one, a scan covers the local partitions
//! and says so.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use datafusion::scalar::ScalarValue;
use fleetstream_operators::topology::Stores;
use fleetstream_schemas::{LedgerEntry, OvertimeRecord};
use fleetstream_sinks::Row;
use fleetstream_sinks::batches::record_batch;
use fleetstream_topology::store::KvStore;
use fleetstream_topology::store::StateRegistry;
use rust_decimal::Decimal;

/// A table over a state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreTable {
    Drivers,
    Trips,
    Wallets,
    Ledger,
    Overtime,
}

impl StoreTable {
    pub const ALL: [StoreTable; 5] = [
        StoreTable::Drivers,
        StoreTable::Trips,
        StoreTable::Wallets,
        StoreTable::Ledger,
        StoreTable::Overtime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StoreTable::Drivers => "drivers",
            StoreTable::Trips => "trips",
            StoreTable::Wallets => "wallets",
            StoreTable::Ledger => "ledger",
            StoreTable::Overtime => "overtime",
        }
    }

    pub fn from_name(name: &str) -> Option<StoreTable> {
        StoreTable::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The column whose equality filters become lookups.
    pub fn key_column(self) -> &'static str {
        match self {
            StoreTable::Drivers => "driver_id",
            StoreTable::Trips => "trip_id",
            StoreTable::Wallets => "account_id",
            StoreTable::Ledger => "entry_id",
            StoreTable::Overtime => "employee_id",
        }
    }

    /// The store behind the table.
    pub fn store_name(self, stores: &Stores) -> String {
        match self {
            StoreTable::Drivers => stores.drivers.name().to_string(),
            StoreTable::Trips => stores.trips.name().to_string(),
            StoreTable::Wallets => stores.wallets.name().to_string(),
            StoreTable::Ledger => stores.ledger.name().to_string(),
            StoreTable::Overtime => stores.overtime.records.name().to_string(),
        }
    }

    pub fn schema(self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let money = DataType::Decimal128(18, 2);
        match self {
            StoreTable::Drivers => Arc::new(Schema::new(vec![
                Field::new("driver_id", DataType::Utf8, false),
                Field::new("online", DataType::Boolean, false),
                Field::new("available", DataType::Boolean, false),
                Field::new("vehicle_class", DataType::Utf8, true),
                Field::new("lat", DataType::Float64, true),
                Field::new("lng", DataType::Float64, true),
                Field::new("cell", DataType::Utf8, true),
                Field::new("position_ts", ts(), true),
                Field::new("status_ts", ts(), true),
                Field::new("trip_id", DataType::Utf8, true),
                Field::new("on_trip", DataType::Boolean, false),
            ])),
            StoreTable::Trips => Arc::new(Schema::new(vec![
                Field::new("trip_id", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("rider_id", DataType::Utf8, true),
                Field::new("driver_id", DataType::Utf8, true),
                Field::new("vehicle_class", DataType::Utf8, true),
                Field::new("pickup_lat", DataType::Float64, true),
                Field::new("pickup_lng", DataType::Float64, true),
                Field::new("dropoff_lat", DataType::Float64, true),
                Field::new("dropoff_lng", DataType::Float64, true),
                Field::new("surge", DataType::Decimal128(4, 1), true),
                Field::new("fare", money.clone(), true),
                Field::new("distance_km", DataType::Float64, true),
                Field::new("duration_s", DataType::Float64, true),
                Field::new("offers", DataType::UInt32, false),
                Field::new("requested_at", ts(), true),
                Field::new("matched_at", ts(), true),
                Field::new("started_at", ts(), true),
                Field::new("completed_at", ts(), true),
                Field::new("cancelled_at", ts(), true),
                Field::new("cancelled_by", DataType::Utf8, true),
                Field::new("updated_at", ts(), false),
                Field::new("last_event_id", DataType::Utf8, true),
            ])),
            StoreTable::Wallets => Arc::new(Schema::new(vec![
                Field::new("account_id", DataType::Utf8, false),
                Field::new("balance", money, false),
                Field::new("postings", DataType::UInt64, false),
                Field::new("updated_at", ts(), true),
            ])),
            StoreTable::Ledger => fleetstream_schemas::ledger_entry_schema(),
            StoreTable::Overtime => fleetstream_schemas::overtime_record_schema(),
        }
    }
}

/// A store's entries and the partitions they were read from.
type Collected<V> = (Vec<(String, V)>, BTreeSet<u32>);

/// Which entries a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    All,
    /// Exactly these keys (for overtime: these employees).
    Keys(BTreeSet<String>),
}

impl Lookup {
    fn and(self, other: Lookup) -> Lookup {
        match (self, other) {
            (Lookup::All, x) | (x, Lookup::All) => x,
            (Lookup::Keys(a), Lookup::Keys(b)) => Lookup::Keys(a.intersection(&b).cloned().collect()),
        }
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::All => write!(f, "all"),
            Lookup::Keys(keys) => write!(f, "[{}]", keys.iter().cloned().collect::<Vec<_>>().join(", ")),
        }
    }
}

/// The keys an expression selects on `column`, if it is a lookup: `col = 'k'`, `'k' = col`,
/// `col IN ('a', 'b')`, and `OR`s of those.
pub fn key_lookup(expr: &Expr, column: &str) -> Option<BTreeSet<String>> {
    let is_key = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let literal = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_key(left) {
                literal(right).map(|k| BTreeSet::from([k]))
            } else if is_key(right) {
                literal(left).map(|k| BTreeSet::from([k]))
            } else {
                None
            }
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut keys = key_lookup(left, column)?;
            keys.extend(key_lookup(right, column)?);
            Some(keys)
        }
        Expr::InList(list) if !list.negated && is_key(&list.expr) => list.list.iter().map(literal).collect(),
        _ => None,
    }
}

/// Reads partitions of stores served by other instances.
#[async_trait]
pub trait RemoteScan: Send + Sync + fmt::Debug {
    /// The partitions of the table's store, and which of them this instance lacks.
    fn missing_partitions(&self, table: StoreTable, local: &BTreeSet<u32>) -> BTreeSet<u32>;
    /// Rows of those partitions (all columns, lookups applied), from their owners.
    async fn scan(
        &self,
        table: StoreTable,
        partitions: BTreeSet<u32>,
        lookup: Lookup,
    ) -> Result<Vec<RecordBatch>>;
}

/// What the store tables read from.
#[derive(Debug, Clone)]
pub struct StoreSource {
    pub registry: Arc<StateRegistry>,
    pub stores: Stores,
    pub remote: Option<Arc<dyn RemoteScan>>,
}

impl StoreSource {
    /// The rows of the given local partitions (all, when `only` is `None`), and which partitions
    /// were read.
    pub fn read_local(
        &self,
        table: StoreTable,
        only: Option<&BTreeSet<u32>>,
        lookup: &Lookup,
    ) -> Result<(RecordBatch, BTreeSet<u32>)> {
        let s = &self.stores;
        let (batch, partitions) = match table {
            StoreTable::Drivers => {
                let (rows, parts) = self.collect(&s.drivers, only, lookup, false)?;
                (drivers_batch(&rows)?, parts)
            }
            StoreTable::Trips => {
                let (rows, parts) = self.collect(&s.trips, only, lookup, false)?;
                (trips_batch(&rows)?, parts)
            }
            StoreTable::Wallets => {
                let (rows, parts) = self.collect(&s.wallets, only, lookup, false)?;
                (wallets_batch(&rows)?, parts)
            }
            StoreTable::Ledger => {
                let (rows, parts) = self.collect(&s.ledger, only, lookup, false)?;
                let rows: Vec<Row> = rows
                    .into_iter()
                    .map(|(_, e): (String, LedgerEntry)| Row::Ledger(e))
                    .collect();
                (
                    record_batch(fleetstream_sinks::Table::LedgerEntries, &rows)?,
                    parts,
                )
            }
            StoreTable::Overtime => {
                let (rows, parts) = self.collect(&s.overtime.records, only, lookup, true)?;
                let rows: Vec<Row> = rows
                    .into_iter()
                    .map(|(_, r): (String, OvertimeRecord)| Row::Overtime(r))
                    .collect();
                (
                    record_batch(fleetstream_sinks::Table::OvertimeRecords, &rows)?,
                    parts,
                )
            }
        };
        Ok((batch, partitions))
    }

    /// Entries of one store: lookups as point reads (or `<key>/` prefix scans), else everything;
    /// with the partitions that were read.
    fn collect<V>(
        &self,
        store: &KvStore<String, V>,
        only: Option<&BTreeSet<u32>>,
        lookup: &Lookup,
        by_prefix: bool,
    ) -> Result<Collected<V>> {
        let mut rows = Vec::new();
        let mut read = BTreeSet::new();
        let err = |e: fleetstream_topology::StoreError| DataFusionError::External(Box::new(e));
        for (partition, backend) in self.registry.partitions(store.name()) {
            if only.is_some_and(|o| !o.contains(&partition)) {
                continue;
            }
            read.insert(partition);
            match lookup {
                Lookup::All => store.scan_committed(&*backend, b"", &mut |k, v| {
                    rows.push((k, v));
                    true
                }),
                Lookup::Keys(keys) if by_prefix => keys.iter().try_for_each(|key| {
                    store.scan_committed(&*backend, format!("{key}/").as_bytes(), &mut |k, v| {
                        rows.push((k, v));
                        true
                    })
                }),
                Lookup::Keys(keys) => keys.iter().try_for_each(|key| {
                    if let Some(v) = store.read(&*backend, key)? {
                        rows.push((key.clone(), v));
                    }
                    Ok(())
                }),
            }
            .map_err(err)?;
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((rows, read))
    }
}

fn ts(ms: Option<i64>) -> Option<i64> {
    ms
}

fn timestamps(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<TimestampMillisecondArray>().with_timezone("UTC"))
}

fn decimals(values: impl Iterator<Item = Option<Decimal>>, precision: u8, scale: u32) -> Result<ArrayRef> {
    let array: Decimal128Array = values
        .map(|v| {
            v.map(|d| {
                let mut d = d.round_dp(scale);
                d.rescale(scale);
                d.mantissa()
            })
        })
        .collect();
    Ok(Arc::new(array.with_precision_and_scale(precision, scale as i8)?))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn drivers_batch(rows: &[(String, fleetstream_operators::location::DriverState)]) -> Result<RecordBatch> {
    let position = |i: usize| rows[i].1.position.as_ref();
    let n = rows.len();
    let cells: Vec<Option<String>> = (0..n)
        .map(|i| {
            position(i)
                .and_then(|p| h3o::CellIndex::try_from(p.cell9).ok())
                .map(|c| c.to_string())
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(k, _)| Some(k.as_str()))),
        Arc::new(rows.iter().map(|(_, d)| Some(d.online)).collect::<BooleanArray>()),
        Arc::new(
            rows.iter()
                .map(|(_, d)| Some(d.online && d.hold.is_none()))
                .collect::<BooleanArray>(),
        ),
        strings(rows.iter().map(|(_, d)| d.vehicle_class.as_deref())),
        Arc::new(
            (0..n)
                .map(|i| position(i).map(|p| p.lat))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            (0..n)
                .map(|i| position(i).map(|p| p.lng))
                .collect::<Float64Array>(),
        ),
        strings(cells.iter().map(|c| c.as_deref())),
        timestamps((0..n).map(|i| position(i).map(|p| p.ts))),
        timestamps(rows.iter().map(|(_, d)| ts(d.status_ts))),
        strings(
            rows.iter()
                .map(|(_, d)| d.hold.as_ref().map(|h| h.trip_id.as_str())),
        ),
        Arc::new(
            rows.iter()
                .map(|(_, d)| Some(d.hold.as_ref().is_some_and(|h| h.active)))
                .collect::<BooleanArray>(),
        ),
    ];
    Ok(RecordBatch::try_new(StoreTable::Drivers.schema(), columns)?)
}

fn trips_batch(rows: &[(String, fleetstream_operators::trips::router::TripView)]) -> Result<RecordBatch> {
    let v = |f: fn(&fleetstream_operators::trips::router::TripView) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(|(_, t)| f(t)).collect::<Float64Array>())
    };
    let t = |f: fn(&fleetstream_operators::trips::router::TripView) -> Option<i64>| {
        timestamps(rows.iter().map(|(_, trip)| f(trip)))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(k, _)| Some(k.as_str()))),
        strings(rows.iter().map(|(_, t)| Some(t.status.as_str()))),
        strings(rows.iter().map(|(_, t)| t.rider_id.as_deref())),
        strings(rows.iter().map(|(_, t)| t.driver_id.as_deref())),
        strings(rows.iter().map(|(_, t)| t.vehicle_class.as_deref())),
        v(|t| t.pickup.map(|p| p.0)),
        v(|t| t.pickup.map(|p| p.1)),
        v(|t| t.dropoff.map(|p| p.0)),
        v(|t| t.dropoff.map(|p| p.1)),
        decimals(rows.iter().map(|(_, t)| t.surge), 4, 1)?,
        decimals(rows.iter().map(|(_, t)| t.fare), 18, 2)?,
        v(|t| t.distance_km),
        v(|t| t.duration_s),
        Arc::new(rows.iter().map(|(_, t)| Some(t.offers)).collect::<UInt32Array>()),
        t(|t| t.requested_at),
        t(|t| t.matched_at),
        t(|t| t.started_at),
        t(|t| t.completed_at),
        t(|t| t.cancelled_at),
        strings(rows.iter().map(|(_, t)| t.cancelled_by.as_deref())),
        t(|t| Some(t.updated_at)),
        strings(rows.iter().map(|(_, t)| t.last_event_id.as_deref())),
    ];
    Ok(RecordBatch::try_new(StoreTable::Trips.schema(), columns)?)
}

fn wallets_batch(
    rows: &[(String, fleetstream_operators::settlement::wallet::Wallet)],
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(k, _)| Some(k.as_str()))),
        decimals(rows.iter().map(|(_, w)| Some(w.balance)), 18, 2)?,
        Arc::new(
            rows.iter()
                .map(|(_, w)| Some(w.postings))
                .collect::<UInt64Array>(),
        ),
        timestamps(rows.iter().map(|(_, w)| w.updated_at)),
    ];
    Ok(RecordBatch::try_new(StoreTable::Wallets.schema(), columns)?)
}

/// A store table for DataFusion.
#[derive(Debug)]
pub struct StoreTableProvider {
    table: StoreTable,
    source: Arc<StoreSource>,
}

impl StoreTableProvider {
    pub fn new(table: StoreTable, source: Arc<StoreSource>) -> Self {
        StoreTableProvider { table, source }
    }
}

#[async_trait]
impl TableProvider for StoreTableProvider {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match key_lookup(f, self.table.key_column()) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let lookup = filters
            .iter()
            .filter_map(|f| key_lookup(f, self.table.key_column()))
            .fold(Lookup::All, |acc, keys| acc.and(Lookup::Keys(keys)));
        let (local, served) = self.source.read_local(self.table, None, &lookup)?;
        let mut batches = vec![local];
        let mut remote_partitions = BTreeSet::new();
        if let Some(remote) = &self.source.remote {
            remote_partitions = remote.missing_partitions(self.table, &served);
            if !remote_partitions.is_empty() {
                batches.extend(
                    remote
                        .scan(self.table, remote_partitions.clone(), lookup.clone())
                        .await?,
                );
            }
        }
        let schema = self.table.schema();
        let mut batch = arrow::compute::concat_batches(&schema, &batches)?;
        if let Some(limit) = limit {
            batch = batch.slice(0, limit.min(batch.num_rows()));
        }
        if let Some(projection) = projection {
            batch = batch.project(projection)?;
        }
        Ok(Arc::new(StoreScanExec::new(
            self.table,
            batch,
            lookup,
            served.len(),
            remote_partitions.len(),
        )))
    }
}

/// The rows a store scan read, in memory (read under the query's cut while planning).
#[derive(Debug)]
pub struct StoreScanExec {
    table: StoreTable,
    batch: RecordBatch,
    lookup: Lookup,
    local_partitions: usize,
    remote_partitions: usize,
    properties: Arc<PlanProperties>,
}

impl StoreScanExec {
    fn new(
        table: StoreTable,
        batch: RecordBatch,
        lookup: Lookup,
        local_partitions: usize,
        remote_partitions: usize,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(batch.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        StoreScanExec {
            table,
            batch,
            lookup,
            local_partitions,
            remote_partitions,
            properties,
        }
    }
}

impl DisplayAs for StoreScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lookup = match &self.lookup {
            Lookup::All => "full scan".to_string(),
            Lookup::Keys(_) => format!("lookup {}={}", self.table.key_column(), self.lookup),
        };
        write!(
            f,
            "StoreScanExec: table={}, {lookup}, rows={}, partitions: local={} remote={}",
            self.table.name(),
            self.batch.num_rows(),
            self.local_partitions,
            self.remote_partitions
        )
    }
}

impl ExecutionPlan for StoreScanExec {
    fn name(&self) -> &str {
        "StoreScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("StoreScanExec has no children".into()))
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StoreScanExec has one partition, not {partition}"
            )));
        }
        Ok(Box::pin(MemoryStream::try_new(
            vec![self.batch.clone()],
            self.batch.schema(),
            None,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn key_filters_become_lookups_and_others_do_not() {
        let keys = |e: Expr| key_lookup(&e, "driver_id");
        assert_eq!(
            keys(col("driver_id").eq(lit("d1"))),
            Some(BTreeSet::from(["d1".to_string()]))
        );
        assert_eq!(
            keys(lit("d2").eq(col("driver_id"))),
            Some(BTreeSet::from(["d2".to_string()]))
        );
        assert_eq!(
            keys(col("driver_id").in_list(vec![lit("a"), lit("b")], false)),
            Some(BTreeSet::from(["a".to_string(), "b".to_string()]))
        );
        assert_eq!(
            keys(col("driver_id").eq(lit("a")).or(col("driver_id").eq(lit("b")))),
            Some(BTreeSet::from(["a".to_string(), "b".to_string()]))
        );
        assert_eq!(keys(col("driver_id").in_list(vec![lit("a")], true)), None);
        assert_eq!(keys(col("online").eq(lit(true))), None);
        assert_eq!(
            keys(col("driver_id").eq(lit("a")).or(col("online").eq(lit(true)))),
            None
        );
        assert_eq!(keys(col("driver_id").gt(lit("a"))), None);
    }

    #[test]
    fn lookups_intersect() {
        let a = Lookup::Keys(BTreeSet::from(["a".to_string(), "b".to_string()]));
        let b = Lookup::Keys(BTreeSet::from(["b".to_string(), "c".to_string()]));
        assert_eq!(a.clone().and(Lookup::All), a);
        assert_eq!(a.and(b), Lookup::Keys(BTreeSet::from(["b".to_string()])));
    }
}
