//! SQL over live state and result tables, with DataFusion.
//!
//! Tables:
//! - the operators' stores ([`stores`]): `drivers`, `trips`, `wallets`, `ledger`, `overtime`;
//! - the sinks' results ([`results`]): `trip_events`, `ledger_entries`, `overtime_records`,
//!   `driver_positions` — from ClickHouse when it is configured, otherwise from the Parquet
//!   folders; both are also reachable by schema (`parquet.trip_events`, `clickhouse.trip_events`).
//!
//! Functions: DataFusion's, the domain's ([`functions`]: `h3_cell`, `haversine_km`) and UDF plugins
//! loaded from a directory ([`plugins`]).
//!
//! Queries are read-only (no DDL, no DML or `COPY`, no `SET`), return at most a configured
//! number of rows and run under a time limit. Errors carry the line and column of the SQL they
//! point at when the parser or planner knows it.
//!
//! **Consistency.** A query reads every store table of this instance under one cut: the stream
//! threads apply a commit's writes under the exclusive side of a lock that the query holds,
//! shared, while its store scans read (during planning), so it sees all stores as of the same
//! commits. Partitions owned by other instances are read from them, each under its own cut at
//! about the same time — not one global snapshot. Result tables are as fresh as their sink.

pub mod format;
pub mod functions;
pub mod plugins;
pub mod results;
pub mod stores;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{DataFrame, SessionConfig};
use fleetstream_sinks::Table;
use fleetstream_sinks::clickhouse::ClickHouseOptions;
use thiserror::Error;

pub use self::stores::{Lookup, RemoteScan, StoreSource, StoreTable};

/// Limits every query runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_rows: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 10_000,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Where the tables come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The live stores (none: no store tables).
    pub stores: Option<StoreSource>,
    /// The Parquet sink's folder.
    pub parquet_dir: Option<PathBuf>,
    pub clickhouse: Option<ClickHouseOptions>,
    /// UDF plugins (`*.so`) to load.
    pub plugins_dir: Option<PathBuf>,
}

/// A position in the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

/// Why a query failed.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The SQL does not parse or plan (a typo, an unknown table or column).
    #[error("{message}")]
    Invalid {
        message: String,
        position: Option<Position>,
    },
    /// A statement that would change something.
    #[error("only queries are allowed here: {message}")]
    Forbidden { message: String },
    #[error("the query ran longer than {0:?}")]
    Timeout(Duration),
    /// Running the query failed (a function's error, a source that could not be read).
    #[error("{0}")]
    Execution(String),
    #[error("setting up the SQL engine: {0}")]
    Setup(String),
}

impl QueryError {
    fn from_datafusion(e: DataFusionError) -> QueryError {
        Self::from_datafusion_in(e, "")
    }

    /// As [`QueryError::from_datafusion`], locating a name the planner did not place in `sql`.
    fn from_datafusion_in(e: DataFusionError, sql: &str) -> QueryError {
        let position = position(&e).or_else(|| unknown_name(&clean(&e)).and_then(|name| locate(sql, &name)));
        match e.find_root() {
            DataFusionError::SQL(..) | DataFusionError::Plan(..) | DataFusionError::SchemaError(..) => {
                QueryError::Invalid {
                    message: clean(&e),
                    position,
                }
            }
            DataFusionError::NotImplemented(m) if m.contains("not supported") => QueryError::Invalid {
                message: clean(&e),
                position,
            },
            _ if position.is_some() => QueryError::Invalid {
                message: clean(&e),
                position,
            },
            _ => QueryError::Execution(clean(&e)),
        }
    }
}

/// The error without DataFusion's wrapping ("Error during planning: ...") and without the
/// position, which is reported on its own.
fn clean(e: &DataFusionError) -> String {
    let mut text = e.find_root().to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "Execution error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest.to_string();
        }
    }
    if let Some(inner) = text
        .strip_prefix("SQL error: ParserError(\"")
        .and_then(|t| t.strip_suffix("\")"))
    {
        text = inner.replace("\\\"", "\"");
    }
    if let Some((message, _)) = text.rsplit_once(" at Line: ") {
        text = message.to_string();
    }
    text
}

/// The name an "unknown column" error is about.
fn unknown_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("No field named ")?;
    let token = rest.split_whitespace().next()?.trim_end_matches('.');
    let name = token.rsplit('.').next()?.trim_matches('"');
    (!name.is_empty()).then(|| name.to_string())
}

/// The first place `name` appears in `sql` as a whole word (case-insensitive).
fn locate(sql: &str, name: &str) -> Option<Position> {
    let lower = sql.to_lowercase();
    let name = name.to_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(found) = lower[from..].find(&name) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        let after = lower[at + name.len()..].chars().next();
        if !word(before) && !word(after) {
            let line = lower[..at].matches('\n').count() as u64 + 1;
            let column = lower[..at].rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
            return Some(Position { line, column });
        }
        from = at + name.len();
    }
    None
}

/// Where the error points, from the planner's diagnostic or the parser's message.
fn position(e: &DataFusionError) -> Option<Position> {
    if let Some(span) = e.diagnostic().and_then(|d| d.span)
        && span.start.line > 0
    {
        return Some(Position {
            line: span.start.line,
            column: span.start.column,
        });
    }
    let text = e.to_string();
    let after = text.rsplit_once("Line: ")?.1;
    let (line, rest) = after.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Position {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// More rows matched than the limit allows; the first `max_rows` are here.
    pub truncated: bool,
    pub elapsed: Duration,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The SQL engine of an instance (or of `fleetstream sql` over a data directory).
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    stores: Option<StoreSource>,
    limits: Limits,
    functions: Vec<String>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

impl QueryEngine {
    pub fn new(sources: Sources, limits: Limits) -> Result<QueryEngine, QueryError> {
        let setup = |e: DataFusionError| QueryError::Setup(e.to_string());
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("fleetstream", "public");
        let ctx = SessionContext::new_with_config(config);
        let catalog = ctx
            .catalog("fleetstream")
            .ok_or_else(|| QueryError::Setup("no default catalog".into()))?;
        let public = catalog
            .schema("public")
            .ok_or_else(|| QueryError::Setup("no default schema".into()))?;
        if let Some(source) = &sources.stores {
            let source = Arc::new(source.clone());
            for table in StoreTable::ALL {
                public
                    .register_table(
                        table.name().to_string(),
                        Arc::new(stores::StoreTableProvider::new(table, source.clone())),
                    )
                    .map_err(setup)?;
            }
        }
        let parquet = Arc::new(MemorySchemaProvider::new());
        if let Some(dir) = &sources.parquet_dir {
            for table in Table::ALL {
                parquet
                    .register_table(
                        table.name().to_string(),
                        results::parquet_table(dir, table).map_err(setup)?,
                    )
                    .map_err(setup)?;
            }
            catalog
                .register_schema("parquet", parquet.clone())
                .map_err(setup)?;
        }
        let clickhouse = Arc::new(MemorySchemaProvider::new());
        if let Some(options) = &sources.clickhouse {
            for table in Table::ALL {
                clickhouse
                    .register_table(
                        table.name().to_string(),
                        Arc::new(results::ClickHouseTable::new(options.clone(), table)),
                    )
                    .map_err(setup)?;
            }
            catalog
                .register_schema("clickhouse", clickhouse.clone())
                .map_err(setup)?;
        }
        // Unqualified result tables: ClickHouse's when configured, else the Parquet files.
        let results: Option<Arc<MemorySchemaProvider>> = if sources.clickhouse.is_some() {
            Some(clickhouse)
        } else if sources.parquet_dir.is_some() {
            Some(parquet)
        } else {
            None
        };
        if let Some(results) = results {
            for table in Table::ALL {
                if let Some(provider) =
                    futures::executor::block_on(results.table(table.name())).map_err(setup)?
                {
                    public
                        .register_table(table.name().to_string(), provider)
                        .map_err(setup)?;
                }
            }
        }
        let mut functions = Vec::new();
        for udf in functions::builtins() {
            functions.push(udf.name().to_string());
            ctx.register_udf(udf);
        }
        if let Some(dir) = &sources.plugins_dir {
            let plugins = plugins::load_dir(dir).map_err(|e| QueryError::Setup(e.to_string()))?;
            for plugin in plugins {
                let udf = ScalarUDF::new_from_impl(plugins::PluginUdf::new(plugin));
                functions.push(udf.name().to_string());
                ctx.register_udf(udf);
            }
        }
        Ok(QueryEngine {
            ctx,
            stores: sources.stores,
            limits,
            functions,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The same engine with a lower row limit (the configured one stays the ceiling).
    pub fn with_max_rows(mut self, max_rows: usize) -> QueryEngine {
        self.limits.max_rows = self.limits.max_rows.min(max_rows.max(1));
        self
    }

    /// The scalar functions registered beyond DataFusion's (built-ins and plugins).
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// Runs one read-only statement.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let limits = self.limits;
        let work = self.run(sql, limits);
        match tokio::time::timeout(limits.timeout, work).await {
            Ok(result) => result.map(|mut out| {
                out.elapsed = started.elapsed();
                out
            }),
            Err(_) => Err(QueryError::Timeout(limits.timeout)),
        }
    }

    async fn run(&self, sql: &str, limits: Limits) -> Result<QueryOutput, QueryError> {
        let state = self.ctx.state();
        let plan = state
            .create_logical_plan(sql)
            .await
            .map_err(|e| QueryError::from_datafusion_in(e, sql))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::Forbidden { message: clean(&e) })?;
        let describes = matches!(
            plan,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
        );
        let mut frame = DataFrame::new(state, plan);
        if !describes {
            frame = frame
                .limit(0, Some(limits.max_rows + 1))
                .map_err(QueryError::from_datafusion)?;
        }
        let task = frame.task_ctx();
        // Plan (and so read the store tables) under one read cut of this instance's stores. The
        // cut's guard must not cross an await of this task, so planning runs on a blocking
        // thread that waits for it.
        let registry = self.stores.as_ref().map(|s| s.registry.clone());
        let handle = tokio::runtime::Handle::current();
        let physical = tokio::task::spawn_blocking(move || {
            let _cut = registry.as_ref().map(|r| r.read_cut());
            handle.block_on(frame.create_physical_plan())
        })
        .await
        .map_err(|e| QueryError::Execution(format!("planning stopped: {e}")))?
        .map_err(QueryError::from_datafusion)?;
        let schema = physical.schema();
        let mut batches = datafusion::physical_plan::collect(physical, Arc::new(task))
            .await
            .map_err(QueryError::from_datafusion)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let truncated = rows > limits.max_rows;
        if truncated {
            let mut left = limits.max_rows;
            batches = batches
                .into_iter()
                .filter_map(|b| {
                    let take = left.min(b.num_rows());
                    left -= take;
                    (take > 0).then(|| b.slice(0, take))
                })
                .collect();
        }
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
            elapsed: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_column_is_located_in_the_sql() {
        assert_eq!(
            unknown_name("No field named nope.\nValid fields are a, b."),
            Some("nope".to_string())
        );
        assert_eq!(
            unknown_name("No field named t.nope. Valid fields are t.a."),
            Some("nope".to_string())
        );
        assert_eq!(
            locate("SELECT a,\n  nope FROM t", "nope"),
            Some(Position { line: 2, column: 3 })
        );
        assert_eq!(
            locate("SELECT nopes, nope FROM t", "nope"),
            Some(Position { line: 1, column: 15 })
        );
        assert_eq!(locate("SELECT a FROM t", "nope"), None);
    }
}
