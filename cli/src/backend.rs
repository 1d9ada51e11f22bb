//! Where a command's log and state live: the embedded log and RocksDB under the data
//! directory, or a Kafka cluster (state still in local RocksDB, restored from changelogs).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use fleetstream_operators::topology::{self, Stores};
use fleetstream_topology::Engine;
use fleetstream_topology::log::Log;
use fleetstream_topology::log::embedded::{EmbeddedLog, EmbeddedOptions};
use fleetstream_topology::log::kafka::KafkaLog;
use fleetstream_topology::store::StateFactory;
use fleetstream_topology::store::rocks::RocksState;

use crate::config::AppConfig;

pub struct Backend {
    pub log: Arc<dyn Log>,
    /// Set when the log is the embedded one.
    pub embedded: Option<EmbeddedLog>,
    /// Set when the log is Kafka.
    pub kafka: Option<KafkaLog>,
    pub state: Arc<dyn StateFactory>,
}

/// A log without state: what `fleetstream topics` reads and writes. It leaves the state
/// directory alone, so it works beside a running instance that holds it.
pub struct LogOnly {
    pub log: Arc<dyn Log>,
    /// Set when the log is the embedded one.
    pub embedded: Option<EmbeddedLog>,
    /// Set when the log is Kafka.
    pub kafka: Option<KafkaLog>,
}

fn embedded_log(config: &AppConfig, dir: &Path) -> Result<EmbeddedLog> {
    let options = EmbeddedOptions {
        fsync: config.log.fsync,
        segment_bytes: config.log.segment_bytes,
        ..EmbeddedOptions::default()
    };
    EmbeddedLog::open(dir.join("log"), options)
        .with_context(|| format!("opening the embedded log in {}", dir.join("log").display()))
}

fn kafka_log(config: &AppConfig) -> Result<KafkaLog> {
    KafkaLog::connect(config.kafka_options())
        .with_context(|| format!("connecting to Kafka at {}", config.kafka.brokers))
}

fn rocks_state(dir: &Path) -> Result<Arc<dyn StateFactory>> {
    let state = RocksState::open(dir.join("state"))
        .with_context(|| format!("opening state in {}", dir.join("state").display()))?;
    Ok(Arc::new(state))
}

/// The embedded log and RocksDB state in `dir`.
pub fn embedded(config: &AppConfig, dir: &Path) -> Result<Backend> {
    let log = embedded_log(config, dir)?;
    Ok(Backend {
        log: Arc::new(log.clone()),
        embedded: Some(log),
        kafka: None,
        state: rocks_state(dir)?,
    })
}

/// Kafka, with RocksDB state in `dir`.
pub fn kafka(config: &AppConfig, dir: &Path) -> Result<Backend> {
    let log = kafka_log(config)?;
    Ok(Backend {
        log: Arc::new(log.clone()),
        embedded: None,
        kafka: Some(log),
        state: rocks_state(dir)?,
    })
}

/// The backend the configuration names.
pub fn open(config: &AppConfig) -> Result<Backend> {
    config.ensure_data_dir()?;
    let LogOnly { log, embedded, kafka } = open_log(config)?;
    Ok(Backend {
        log,
        embedded,
        kafka,
        state: rocks_state(&config.data_dir)?,
    })
}

/// The log the configuration names, without the state: Kafka needs no data directory at all.
pub fn open_log(config: &AppConfig) -> Result<LogOnly> {
    if config.uses_kafka() {
        let log = kafka_log(config)?;
        return Ok(LogOnly {
            log: Arc::new(log.clone()),
            embedded: None,
            kafka: Some(log),
        });
    }
    config.ensure_data_dir()?;
    let log = embedded_log(config, &config.data_dir)?;
    Ok(LogOnly {
        log: Arc::new(log.clone()),
        embedded: Some(log),
        kafka: None,
    })
}

/// The configuration's jobs as a topology, and the engine that runs it over `backend` (not yet
/// started), with the jobs' stores for queries.
pub fn engine(config: &AppConfig, backend: &Backend) -> Result<(Engine, Stores)> {
    let jobs = topology::build(&config.app_id, &config.jobs()).context("building the topology")?;
    let engine = Engine::new(
        jobs.topology,
        backend.log.clone(),
        backend.state.clone(),
        config.engine(),
    )?;
    Ok((engine, jobs.stores))
}
