//! Metric names, in one place, and the functions that record them. Processors never touch
//! metrics: tasks count as they go and publish at commit.

/// Records processed, by task.
pub const RECORDS_PROCESSED: &str = "fleetstream_records_processed_total";
/// Records sent to a DLQ, by task.
pub const DEAD_LETTERS: &str = "fleetstream_dead_letters_total";
/// Records written per topic.
pub const RECORDS_OUT: &str = "fleetstream_records_out_total";
/// Commits and their duration.
pub const COMMITS: &str = "fleetstream_commits_total";
pub const COMMIT_SECONDS: &str = "fleetstream_commit_seconds";
/// Changelog records applied while restoring, by task.
pub const RESTORED: &str = "fleetstream_restored_records_total";
/// Tasks being restored (1) or running (0).
pub const RESTORING: &str = "fleetstream_task_restoring";
/// Records fetched but not processed, by thread.
pub const BUFFERED: &str = "fleetstream_buffered_records";
/// Entries per store partition (estimate).
pub const STORE_ENTRIES: &str = "fleetstream_store_entries";
/// Consumer lag per topic partition.
pub const LAG: &str = "fleetstream_consumer_lag";

pub(crate) fn task_progress(task: &str, processed: u64, dead_letters: u64) {
    if processed > 0 {
        metrics::counter!(RECORDS_PROCESSED, "task" => task.to_string()).increment(processed);
    }
    if dead_letters > 0 {
        metrics::counter!(DEAD_LETTERS, "task" => task.to_string()).increment(dead_letters);
    }
}

pub(crate) fn records_out(topic: &str, count: u64) {
    metrics::counter!(RECORDS_OUT, "topic" => topic.to_string()).increment(count);
}

pub(crate) fn commit(seconds: f64) {
    metrics::counter!(COMMITS).increment(1);
    metrics::histogram!(COMMIT_SECONDS).record(seconds);
}

pub(crate) fn restored(task: &str, records: u64) {
    metrics::counter!(RESTORED, "task" => task.to_string()).increment(records);
}

pub(crate) fn restoring(task: &str, active: bool) {
    metrics::gauge!(RESTORING, "task" => task.to_string()).set(if active { 1.0 } else { 0.0 });
}

pub(crate) fn store_entries(store: &str, partition: u32, entries: u64) {
    metrics::gauge!(STORE_ENTRIES, "store" => store.to_string(), "partition" => partition.to_string())
        .set(entries as f64);
}

pub(crate) fn lag(topic: &str, partition: u32, lag: u64) {
    metrics::gauge!(LAG, "topic" => topic.to_string(), "partition" => partition.to_string()).set(lag as f64);
}
