//! `fleetstream sql "SELECT ..."`: SQL over the state stores and result tables — of a data
//! directory no instance is running on (its stores are restored and read), or of a running
//! instance through its API (`--url`).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use fleetstream_queries::format::{Format, render};
use fleetstream_queries::{QueryEngine, QueryError, StoreSource};
use fleetstream_topology::Engine;

use crate::backend;
use crate::config::AppConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// One read-only statement (SELECT, EXPLAIN, SHOW TABLES, DESCRIBE ...).
    pub query: String,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data directory to read (default from the configuration).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Ask a running instance instead, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token for `--url` (role analyst).
    #[arg(long, env = "FLEETSTREAM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Rows to return at most (default from `[sql] max_rows`).
    #[arg(long)]
    pub max_rows: Option<usize>,
    /// Longest the query may run, e.g. 30s (default from `[sql] timeout`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// A query error as the terminal shows it: where it points, then what is wrong.
pub fn describe(e: &QueryError) -> String {
    match e {
        QueryError::Invalid {
            message,
            position: Some(p),
        } => format!("at line {}, column {}: {message}", p.line, p.column),
        other => other.to_string(),
    }
}

pub async fn sql(args: SqlArgs) -> Result<()> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let mut limits = config.sql.limits();
    if let Some(rows) = args.max_rows {
        limits.max_rows = rows.max(1);
    }
    if let Some(timeout) = args.timeout {
        limits.timeout = timeout;
    }
    if let Some(url) = &args.url {
        return remote(
            url,
            args.token.as_deref(),
            &args.query,
            args.format,
            limits.max_rows,
        )
        .await;
    }
    let local = LocalQueries::open(&config, limits)?;
    let result = local.queries.query(&args.query).await;
    local.close()?;
    let output = result.map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    let bytes = render(&output, args.format).context("formatting the result")?;
    std::io::stdout().lock().write_all(&bytes)?;
    if output.truncated {
        eprintln!(
            "(the first {} rows; more matched — raise --max-rows)",
            output.num_rows()
        );
    }
    Ok(())
}

/// Runs the query on an instance: `POST <url>/v1/sql`.
async fn remote(url: &str, token: Option<&str>, query: &str, format: Format, max_rows: usize) -> Result<()> {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/v1/sql", url.trim_end_matches('/')))
        .json(&serde_json::json!({"sql": query, "format": format, "max_rows": max_rows}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("asking {url}"))?;
    let status = response.status();
    let truncated = response.headers().get("x-fleetstream-truncated").is_some();
    let body = response.bytes().await?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let message = v["error"].as_str()?.to_string();
                Some(
                    match (v["position"]["line"].as_u64(), v["position"]["column"].as_u64()) {
                        (Some(line), Some(column)) => format!("at line {line}, column {column}: {message}"),
                        _ => message,
                    },
                )
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{url} answered {status}: {detail}");
    }
    std::io::stdout().lock().write_all(&body)?;
    if truncated {
        eprintln!("(the first {max_rows} rows; more matched — raise --max-rows)");
    }
    Ok(())
}

/// The query engine over a data directory no instance is running on: its stores restored from
/// their changelogs and held still while it is open.
pub struct LocalQueries {
    pub queries: QueryEngine,
    lockstep: fleetstream_topology::Lockstep,
    _engine: Engine,
}

impl LocalQueries {
    pub fn open(config: &AppConfig, limits: fleetstream_queries::Limits) -> Result<LocalQueries> {
        let backend = backend::open(config).map_err(|e| {
            if format!("{e:#}").contains("lock") {
                anyhow::anyhow!(
                    "the data directory {} is in use by a running fleetstream; ask it with --url http://{}",
                    config.data_dir.display(),
                    config.api.addr
                )
            } else {
                e
            }
        })?;
        let (engine, stores) = backend::engine(config, &backend)?;
        // Opening every task restores its stores from the changelogs (from the local checkpoint).
        let lockstep = tokio::task::block_in_place(|| engine.lockstep())?;
        let mut sources = config.query_sources();
        sources.stores = Some(StoreSource {
            registry: engine.registry(),
            stores,
            remote: None,
        });
        let queries = QueryEngine::new(sources, limits).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(LocalQueries {
            queries,
            lockstep,
            _engine: engine,
        })
    }

    /// Releases the stores (and the data directory's lock).
    pub fn close(self) -> Result<()> {
        tokio::task::block_in_place(|| self.lockstep.close())?;
        Ok(())
    }
}

/// Builds a query engine over an already running engine's stores (the API's).
pub fn engine_for(
    config: &AppConfig,
    engine: &Engine,
    stores: fleetstream_operators::topology::Stores,
    remote: Option<Arc<dyn fleetstream_queries::RemoteScan>>,
) -> Result<QueryEngine> {
    let mut sources = config.query_sources();
    sources.stores = Some(StoreSource {
        registry: engine.registry(),
        stores,
        remote,
    });
    QueryEngine::new(sources, config.sql.limits()).map_err(|e| anyhow::anyhow!("{e}"))
}
