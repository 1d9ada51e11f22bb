//! Where results land: PostgreSQL, ClickHouse and Parquet files, and HR exports.
//!
//! Each sink is its own consumer of the output topics ([`runner`]): it batches, writes through
//! a [`runner::SinkTarget`] that stores its positions with the rows, retries with backoff while
//! the target is down, and dead-letters rows the target refuses. Processing never waits for a
//! sink.

pub mod batches;
pub mod clickhouse;
pub mod export;
pub mod metrics;
pub mod parquet;
pub mod postgres;
pub mod rows;
pub mod runner;

use thiserror::Error;

pub use self::rows::{Row, Table};
pub use self::runner::{RunningSink, SinkOptions, SinkTarget, start};

/// Errors of sinks and exports.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("I/O error writing {target}: {source}")]
    Io { target: String, source: std::io::Error },
    #[error("Parquet error: {detail}")]
    Parquet { detail: String },
    #[error("a {table} record does not decode: {detail}")]
    Undecodable { table: &'static str, detail: String },
    /// The target refused the rows (a constraint, a type): theirs, not the target's fault.
    #[error("{sink} refused the rows: {detail}")]
    Rejected { sink: String, detail: String },
    /// The target cannot be reached or failed: retried with backoff.
    #[error("{sink} is unavailable: {detail}")]
    Unavailable { sink: String, detail: String },
    #[error("{sink} failed: {detail}")]
    Fatal { sink: String, detail: String },
    #[error("log error in a sink: {detail}")]
    Log { detail: String },
}

impl SinkError {
    /// Whether waiting and trying again may help.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            SinkError::Unavailable { .. } | SinkError::Io { .. } | SinkError::Log { .. }
        )
    }
}
