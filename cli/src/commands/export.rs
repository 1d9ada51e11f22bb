//! `fleetstream export overtime`: one row per employee and period for HR and accounting, as
//! CSV (hours with two decimals) or Parquet, from the latest version of every window.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use chrono::NaiveDate;
use fleetstream_schemas::topics;
use fleetstream_sinks::export::{ExportFormat, latest_records, write_overtime};

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
    let topic = format!("{}{}", config.topic_prefix, topics::OVERTIME_RECORDS);
    let records = latest_records(&*backend.log, &topic, args.from, args.to)?;
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
