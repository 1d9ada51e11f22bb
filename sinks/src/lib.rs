//! Where results land: PostgreSQL, ClickHouse and Parquet files, and HR exports.

pub mod export;

use thiserror::Error;

/// Errors of sinks and exports.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("I/O error writing {target}: {source}")]
    Io { target: String, source: std::io::Error },
    #[error("Parquet error: {detail}")]
    Parquet { detail: String },
}
