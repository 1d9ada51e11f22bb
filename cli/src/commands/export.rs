//! `fleetstream export overtime`: one row per employee and period for HR and accounting, as
//! CSV (hours with two decimals) or Parquet, from the latest version of every window.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chrono::NaiveDate;
use fleetstream_schemas::{OvertimeRecord, Period, topics};
use fleetstream_sinks::export::{ExportFormat, write_overtime};
use fleetstream_topology::TopicPartition;
use fleetstream_topology::log::Membership;

use crate::backend;
use crate::config::AppConfig;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ExportWhat {
    /// Overtime per employee, day and week.
    Overtime(OvertimeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct OvertimeArgs {
    /// First day of periods to include (YYYY-MM-DD).
    #[arg(long)]
    pub from: NaiveDate,
    /// Last day of periods to include (YYYY-MM-DD).
    #[arg(long)]
    pub to: NaiveDate,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// File to write; standard output when absent (CSV only).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn export(what: &ExportWhat) -> Result<()> {
    let ExportWhat::Overtime(args) = what;
    if args.from > args.to {
        bail!("--from {} is after --to {}", args.from, args.to);
    }
    let mut config = AppConfig::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if !config.data_dir.join("log").exists() {
        bail!(
            "no fleetstream data in {} (use --data-dir)",
            config.data_dir.display()
        );
    }
    let backend = backend::open(&config)?;
    let records = latest_records(&*backend.log, args.from, args.to)?;
    match (&args.out, args.format) {
        (Some(path), format) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            write_overtime(&records, format, file)?;
            eprintln!("{} rows written to {}", records.len(), path.display());
        }
        (None, ExportFormat::Csv) => write_overtime(&records, ExportFormat::Csv, std::io::stdout())?,
        (None, ExportFormat::Parquet) => bail!("Parquet is binary: give a file with --out"),
    }
    Ok(())
}

/// The latest version of every window starting within `[from, to]`, in key order.
pub fn latest_records(
    log: &dyn fleetstream_topology::log::Log,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<OvertimeRecord>> {
    let topic = topics::OVERTIME_RECORDS;
    let partitions = match log.partitions(topic) {
        Ok(n) => n,
        Err(fleetstream_topology::LogError::UnknownTopic { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut latest: BTreeMap<(String, Period, NaiveDate), OvertimeRecord> = BTreeMap::new();
    for partition in 0..partitions {
        let tp = TopicPartition::new(topic, partition);
        let end = log.end_offset(&tp)?;
        let mut consumer = log.consumer(Membership::Manual)?;
        consumer.assign(&[(tp.clone(), 0)])?;
        let mut position = 0;
        while position < end {
            let fetched = consumer.poll(10_000, Duration::from_millis(200))?;
            if fetched.is_empty() {
                break;
            }
            for record in fetched.into_iter().flat_map(|f| f.records) {
                position = record.offset + 1;
                let Some(value) = record.value else { continue };
                let r: OvertimeRecord = serde_json::from_slice(&value).context("an overtime record")?;
                if r.period_start < from || r.period_start > to {
                    continue;
                }
                let key = (r.employee_id.clone(), r.period, r.period_start);
                if latest.get(&key).is_none_or(|old| old.version < r.version) {
                    latest.insert(key, r);
                }
            }
        }
    }
    Ok(latest.into_values().collect())
}
