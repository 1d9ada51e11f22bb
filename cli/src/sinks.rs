//! The sinks a configuration names, started beside the stream threads.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use fleetstream_sinks::clickhouse::{ClickHouseOptions, ClickHouseSink};
use fleetstream_sinks::parquet::ParquetSink;
use fleetstream_sinks::postgres::PostgresSink;
use fleetstream_sinks::{RunningSink, SinkOptions, SinkTarget};
use fleetstream_topology::log::Log;
use tracing::info;

use crate::config::AppConfig;

/// One configured sink, not started yet.
pub struct Planned {
    pub target: Box<dyn SinkTarget>,
    pub options: SinkOptions,
}

/// Which sinks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The configured ones, or the Parquet default of an embedded run.
    ConfiguredOrDefault,
    /// Only those the configuration names (replays).
    Configured,
}

/// The sinks of a configuration, each with its consumer options.
pub fn plan(config: &AppConfig, which: Which) -> Vec<Planned> {
    let options = |kind: &str| {
        let name = format!("{}-{kind}", config.app_id);
        let mut options = SinkOptions::new(&config.app_id, kind, &config.topic_prefix);
        options.batch_records = config.sinks.batch_records.max(1);
        options.batch_interval = config.sinks.batch_interval;
        options.max_backoff = config.sinks.max_backoff;
        // On Kafka every instance runs the sink for the partitions the sink's group gives it.
        options.group = config.uses_kafka().then(|| format!("{name}-sink"));
        (name, options)
    };
    let mut planned = Vec::new();
    if let Some(pg) = &config.sinks.postgres {
        let (name, options) = options("postgres");
        planned.push(Planned {
            target: Box::new(PostgresSink::new(&pg.url, &name)),
            options,
        });
    }
    if let Some(ch) = &config.sinks.clickhouse {
        let (name, options) = options("clickhouse");
        let ch = ClickHouseOptions {
            url: ch.url.clone(),
            database: ch.database.clone(),
            user: ch.user.clone(),
            password: ch.password.clone(),
        };
        planned.push(Planned {
            target: Box::new(ClickHouseSink::new(ch, &name)),
            options,
        });
    }
    let parquet = match which {
        Which::ConfiguredOrDefault => config.parquet_sink(),
        Which::Configured => config.sinks.parquet.clone(),
    };
    if let Some(parquet) = parquet {
        let (name, mut options) = options("parquet");
        options.batch_interval = parquet.flush_interval;
        options.batch_records = options.batch_records.max(100_000);
        options.flush_when_idle = false;
        planned.push(Planned {
            target: Box::new(ParquetSink::new(config.parquet_dir(), &name)),
            options,
        });
    }
    planned
}

/// Starts every configured sink on its own thread.
pub fn start(config: &AppConfig, log: &Arc<dyn Log>, which: Which) -> Result<Vec<RunningSink>> {
    let mut running = Vec::new();
    for Planned { target, options } in plan(config, which) {
        let name = target.name().to_string();
        info!(sink = %name, "starting sink");
        running.push(
            fleetstream_sinks::start(log.clone(), target, options)
                .with_context(|| format!("starting sink {name}"))?,
        );
    }
    Ok(running)
}

/// Runs the configured sinks until they have written everything on the output topics, then
/// stops them (a replay into databases). Waits through database outages.
pub fn drain(config: &AppConfig, log: &Arc<dyn Log>) -> Result<usize> {
    let sinks = start(config, log, Which::Configured)?;
    let count = sinks.len();
    if count == 0 {
        return Ok(0);
    }
    let mut settled = 0;
    loop {
        if let Some(failed) = sinks.iter().find(|s| !s.is_running()) {
            let name = failed.name().to_string();
            for sink in sinks {
                sink.stop().with_context(|| format!("sink {name}"))?;
            }
            anyhow::bail!("sink {name} stopped before writing everything");
        }
        // Caught up three checks in a row: nothing in flight between a read and a write.
        settled = if sinks.iter().all(RunningSink::is_caught_up) {
            settled + 1
        } else {
            0
        };
        if settled >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for sink in sinks {
        let name = sink.name().to_string();
        sink.stop().with_context(|| format!("stopping sink {name}"))?;
    }
    Ok(count)
}
