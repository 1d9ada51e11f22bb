//! `fleetstream generate`: synthetic cities and depots as replay input (JSON lines).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::NaiveDate;
use fleetstream_operators::generate::Generated;
use fleetstream_operators::generate::city::{CityParams, generate_city};
use fleetstream_operators::generate::depot::{DepotParams, generate_depot};

use crate::config::AppConfig;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum GenerateWhat {
    /// Drivers, riders and trips, drivers answering the offers they get.
    City {
        #[arg(long, default_value_t = 500)]
        drivers: usize,
        #[arg(long, default_value_t = 2000)]
        trips: usize,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        ping_interval: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Metro drivers' timesheet punches.
    Depot {
        #[arg(long, default_value_t = 200)]
        employees: usize,
        /// First day (YYYY-MM-DD).
        #[arg(long, default_value = "2026-08-03")]
        first_day: NaiveDate,
        #[arg(long, default_value_t = 91)]
        days: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of shifts whose clock-out is forgotten.
        #[arg(long, default_value_t = 0.0)]
        forgotten_clock_outs: f64,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The configuration whose rules (tariffs, time zone) the generator follows.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to write; standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn generate(what: &GenerateWhat) -> Result<usize> {
    let (records, common): (Vec<Generated>, &Common) = match what {
        GenerateWhat::City {
            drivers,
            trips,
            duration,
            ping_interval,
            seed,
            common,
        } => {
            let config = AppConfig::load(common.config.as_deref())?;
            let mut params = CityParams::new(*seed, *drivers, *trips);
            params.duration_s = duration.as_secs().max(60) as i64;
            params.ping_interval_s = ping_interval.as_secs().max(1) as i64;
            (generate_city(&params, &config.jobs()), common)
        }
        GenerateWhat::Depot {
            employees,
            first_day,
            days,
            seed,
            forgotten_clock_outs,
            common,
        } => {
            let config = AppConfig::load(common.config.as_deref())?;
            let mut params = DepotParams::new(*seed, *employees, *first_day, *days);
            params.forgotten_clock_outs = *forgotten_clock_outs;
            (generate_depot(&params, &config.overtime), common)
        }
    };
    let mut text = String::new();
    for r in &records {
        text.push_str(&r.to_line());
        text.push('\n');
    }
    match &common.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(records.len())
}
