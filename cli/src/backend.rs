//! Where a command's log and state live: the embedded log and RocksDB under the data
//! directory, or a Kafka cluster.

use std::path::Path;

use std::sync::Arc;

use anyhow::{Context as _, Result};
use fleetstream_topology::log::Log;
use fleetstream_topology::log::embedded::{EmbeddedLog, EmbeddedOptions};
use fleetstream_topology::store::StateFactory;
use fleetstream_topology::store::rocks::RocksState;

use crate::config::AppConfig;

pub struct Backend {
    pub log: Arc<dyn Log>,
    /// Set when the log is the embedded one.
    pub embedded: Option<EmbeddedLog>,
    pub state: Arc<dyn StateFactory>,
}

/// The embedded log and RocksDB state in `dir`.
pub fn embedded(config: &AppConfig, dir: &Path) -> Result<Backend> {
    let options = EmbeddedOptions {
        fsync: config.log.fsync,
        segment_bytes: config.log.segment_bytes,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.join("log"), options)
        .with_context(|| format!("opening the embedded log in {}", dir.join("log").display()))?;
    let state = RocksState::open(dir.join("state"))
        .with_context(|| format!("opening state in {}", dir.join("state").display()))?;
    Ok(Backend {
        log: Arc::new(log.clone()),
        embedded: Some(log),
        state: Arc::new(state),
    })
}

/// The backend the configuration names.
pub fn open(config: &AppConfig) -> Result<Backend> {
    config.ensure_data_dir()?;
    embedded(config, &config.data_dir)
}
