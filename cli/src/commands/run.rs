//! `fleetstream run`: the topology live, on the embedded log (one machine, data under
//! `--data-dir`) or on Kafka, until Ctrl-C or SIGTERM stop it with state committed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tracing::info;

use crate::backend;
use crate::config::AppConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (embedded log, RocksDB state, keys); default `./data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers; without them the embedded log is used.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Where the edge API listens.
    #[arg(long)]
    pub api_addr: Option<String>,
    /// Append these input records (JSON lines, as for `replay`) before starting.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Stop once every input record has been processed and committed (batch runs).
    #[arg(long)]
    pub exit_when_caught_up: bool,
}

pub fn load_config(args: &RunArgs) -> Result<AppConfig> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(brokers) = &args.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(addr) = &args.api_addr {
        config.api.addr = addr.clone();
    }
    Ok(config)
}

pub async fn run(args: RunArgs) -> Result<()> {
    let config = load_config(&args)?;
    let backend = backend::open(&config)?;
    let (engine, stores) = backend::engine(&config, &backend)?;
    if let Some(input) = &args.input {
        let count = crate::commands::topics::produce(&*backend.log, input, &config.topic_prefix)?;
        info!(records = count, file = %input.display(), "input appended");
    }
    let running = engine.start()?;
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let edge = if config.api.addr.trim().is_empty() {
        None
    } else {
        Some(crate::edge::start(&config, &engine, stores.clone(), ready.clone()).await?)
    };
    let sinks = crate::sinks::start(&config, &backend.log, crate::sinks::Which::ConfiguredOrDefault)?;
    eprintln!(
        "fleetstream {} running: {}, state in {}, {} partitions. Ctrl-C stops.",
        env!("CARGO_PKG_VERSION"),
        backend.log.describe(),
        backend.state.describe(),
        config.engine().partitions
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut caught_up_ticks = 0;
    let mut failed_sinks = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { info!("interrupted: stopping"); break; }
            _ = terminate.recv() => { info!("terminated: stopping"); break; }
            _ = ticker.tick() => {
                if !running.is_running() {
                    ready.store(false, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                for sink in sinks.iter().filter(|s| !s.is_running()) {
                    if failed_sinks.insert(sink.name().to_string()) {
                        tracing::error!(sink = sink.name(), "sink stopped; processing goes on without it (see the error above)");
                    }
                }
                let sinks_caught_up = sinks.iter().all(|s| s.is_caught_up() || !s.is_running());
                caught_up_ticks = if running.is_caught_up() && sinks_caught_up { caught_up_ticks + 1 } else { 0 };
                if caught_up_ticks == 3 {
                    eprintln!("caught up: every input record processed and committed");
                }
                if args.exit_when_caught_up && caught_up_ticks >= 3 {
                    break;
                }
            }
        }
    }
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(edge) = edge {
        edge.stop().await;
    }
    tokio::task::spawn_blocking(move || -> Result<()> {
        let engine = running.shutdown();
        for sink in sinks {
            let name = sink.name().to_string();
            if let Err(e) = sink.stop() {
                tracing::warn!(sink = %name, error = %e, "sink stopped with an error");
            }
        }
        Ok(engine?)
    })
    .await
    .context("stopping")??;
    eprintln!("fleetstream stopped cleanly: state committed");
    Ok(())
}
