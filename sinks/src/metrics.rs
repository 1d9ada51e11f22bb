//! The metrics sinks export (through the `metrics` facade; the API serves them).

/// Rows written, by sink (counter).
pub const ROWS: &str = "fleetstream_sink_rows_total";
/// Rows dead-lettered, by sink (counter).
pub const DEAD_LETTERS: &str = "fleetstream_sink_dead_letters_total";
/// Records behind the end of each output partition, by sink (gauge).
pub const LAG: &str = "fleetstream_sink_lag_records";
/// Failed writes that will be retried, by sink (counter).
pub const RETRIES: &str = "fleetstream_sink_retries_total";
