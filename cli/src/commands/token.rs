//! `fleetstream token`: mints a bearer token (for development, tests and scripts) with the
//! private key of the configuration, or of the data directory's generated pair.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use fleetstream_api::Role;

use crate::config::AppConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// app, driver, analyst, hr or admin.
    #[arg(long)]
    pub role: Role,
    /// The subject: a driver id for role driver, else a client name.
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// How long the token is valid, e.g. 1h, 30d.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn token(args: &TokenArgs) -> Result<String> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    let (keys, _) = crate::edge::keys(&config)?;
    Ok(keys.mint(&args.sub, args.role, args.ttl)?)
}
