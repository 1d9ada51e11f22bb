//! Running a sink: its own consumer of the output topics, batching by size and time, writing
//! through a [`SinkTarget`] with retries and exponential backoff, dead-lettering rows the
//! target refuses, and exporting its lag.
//!
//! A target stores the positions it has written up to together with the rows (in the same
//! database transaction, or idempotently), and the runner starts reading from those positions.
//! So a crash at any point neither loses nor duplicates a row, and a database that was down is
//! caught up with from where it stopped. A slow or unavailable database only slows its own
//! sink: processing goes on, and the sink's lag grows.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetstream_topology::log::{Log, Membership, RebalanceListener, TopicSpec};
use fleetstream_topology::{ProducerRecord, TopicPartition, partition_for};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::SinkError;
use crate::rows::{Row, Table};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One record to write.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    pub tp: TopicPartition,
    pub offset: u64,
    pub key: Bytes,
    /// The record's JSON, for the DLQ.
    pub raw: Bytes,
    pub row: Row,
}

/// Rows to write, and the positions to record with them (the next offset per partition).
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<SinkRecord>,
    pub positions: BTreeMap<TopicPartition, u64>,
}

/// A place rows land: PostgreSQL, ClickHouse, Parquet files.
pub trait SinkTarget: Send {
    fn name(&self) -> &str;
    /// Connects and creates or migrates tables. Retried until it succeeds.
    fn prepare(&mut self) -> BoxFuture<'_, Result<(), SinkError>>;
    /// How far the target has written, per partition (absent: from the start).
    fn positions(
        &mut self,
        tps: Vec<TopicPartition>,
    ) -> BoxFuture<'_, Result<BTreeMap<TopicPartition, u64>, SinkError>>;
    /// Writes the rows and records the positions, atomically where the target can, and
    /// idempotently: writing a row again changes nothing.
    fn write<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// How a sink runs.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub batch_records: usize,
    pub batch_interval: Duration,
    pub max_backoff: Duration,
    /// The sink's consumer group on Kafka (`None`: read every partition, one instance).
    pub group: Option<String>,
    /// Topic name per table (the configured prefix applied).
    pub topics: BTreeMap<Table, String>,
    /// Where refused rows go.
    pub dlq_topic: String,
    /// Write a partial batch as soon as there is nothing more to read (low latency), instead
    /// of waiting for `batch_interval` (fewer, larger writes: Parquet files).
    pub flush_when_idle: bool,
}

impl SinkOptions {
    pub fn new(app_id: &str, sink: &str, topic_prefix: &str) -> Self {
        SinkOptions {
            batch_records: 5_000,
            batch_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            group: None,
            topics: Table::ALL
                .iter()
                .map(|t| (*t, format!("{topic_prefix}{}", t.topic())))
                .collect(),
            dlq_topic: format!("{topic_prefix}{app_id}-sink-{sink}.dlq"),
            flush_when_idle: true,
        }
    }
}

/// The target, shared with the rebalance listener (which reads positions).
type SharedTarget = Arc<tokio::sync::Mutex<Box<dyn SinkTarget>>>;

/// A sink running on its own thread.
pub struct RunningSink {
    stop: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), SinkError>>>,
    name: String,
}

impl std::fmt::Debug for RunningSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunningSink({})", self.name)
    }
}

impl RunningSink {
    /// Stops after writing what it has read.
    pub fn stop(mut self) -> Result<(), SinkError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(SinkError::Fatal {
                sink: self.name.clone(),
                detail: "the sink thread panicked".into(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the sink has read everything on its partitions and written it (a sink that
    /// does not flush when idle writes the rest at its next interval, or when stopped).
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for RunningSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts a sink on its own thread.
pub fn start(
    log: Arc<dyn Log>,
    target: Box<dyn SinkTarget>,
    options: SinkOptions,
) -> Result<RunningSink, SinkError> {
    let name = target.name().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let caught_up = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let done = caught_up.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || {
            let result = run(
                log,
                Arc::new(tokio::sync::Mutex::new(target)),
                options,
                &flag,
                &done,
            );
            if let Err(e) = &result {
                warn!(error = %e, "sink stopped");
            }
            result
        })
        .map_err(|e| SinkError::Fatal {
            sink: name.clone(),
            detail: e.to_string(),
        })?;
    Ok(RunningSink {
        stop,
        caught_up,
        thread: Some(thread),
        name,
    })
}

struct Assignments {
    target: SharedTarget,
    runtime: Arc<tokio::runtime::Runtime>,
    revoked: Arc<Mutex<Vec<TopicPartition>>>,
    max_backoff: Duration,
}

impl RebalanceListener for Assignments {
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.revoked.lock().extend(partitions.iter().cloned());
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, u64)> {
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            let result = self
                .runtime
                .block_on(async { self.target.lock().await.positions(partitions.to_vec()).await });
            match result {
                Ok(p) => {
                    return partitions
                        .iter()
                        .map(|tp| (tp.clone(), p.get(tp).copied().unwrap_or(0)))
                        .collect();
                }
                Err(e) => {
                    warn!(error = %e, "reading the sink's positions; retrying");
                    std::thread::sleep(backoff.next());
                }
            }
        }
    }
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(100),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

fn run(
    log: Arc<dyn Log>,
    target: SharedTarget,
    options: SinkOptions,
    stop: &AtomicBool,
    caught_up: &AtomicBool,
) -> Result<(), SinkError> {
    let name = target.blocking_lock().name().to_string();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Fatal {
                sink: name.clone(),
                detail: e.to_string(),
            })?,
    );
    let mut backoff = Backoff::new(options.max_backoff);
    while !stop.load(Ordering::SeqCst) {
        match runtime.block_on(async { target.lock().await.prepare().await }) {
            Ok(()) => break,
            Err(e) if e.is_retriable() => {
                warn!(sink = %name, error = %e, "preparing the sink; retrying");
                std::thread::sleep(backoff.next());
            }
            Err(e) => return Err(e),
        }
    }
    let topics: BTreeMap<String, Table> = options
        .topics
        .iter()
        .map(|(t, name)| (name.clone(), *t))
        .collect();
    let mut partitions_of = BTreeMap::new();
    for topic in topics.keys() {
        // The topology creates its output topics; wait until it has.
        loop {
            match log.partitions(topic) {
                Ok(n) => {
                    partitions_of.insert(topic.clone(), n);
                    break;
                }
                Err(_) if !stop.load(Ordering::SeqCst) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) => {
                    return Err(SinkError::Log {
                        detail: e.to_string(),
                    });
                }
            }
        }
    }
    let dlq_partitions = 1;
    log.ensure_topic(&TopicSpec::new(&options.dlq_topic, dlq_partitions))
        .map_err(|e| SinkError::Log {
            detail: e.to_string(),
        })?;
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let mut consumer = match &options.group {
        Some(group) => {
            let mut c = log
                .consumer(Membership::Group {
                    group: group.clone(),
                    member: 0,
                    members: 1,
                })
                .map_err(|e| SinkError::Log {
                    detail: e.to_string(),
                })?;
            let listener = Assignments {
                target: target.clone(),
                runtime: runtime.clone(),
                revoked: revoked.clone(),
                max_backoff: options.max_backoff,
            };
            c.subscribe(&topics.keys().cloned().collect::<Vec<_>>(), Box::new(listener))
                .map_err(|e| SinkError::Log {
                    detail: e.to_string(),
                })?;
            c
        }
        None => {
            let mut c = log.consumer(Membership::Manual).map_err(|e| SinkError::Log {
                detail: e.to_string(),
            })?;
            let tps: Vec<TopicPartition> = partitions_of
                .iter()
                .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t.clone(), p)))
                .collect();
            let mut listener = Assignments {
                target: target.clone(),
                runtime: runtime.clone(),
                revoked: revoked.clone(),
                max_backoff: options.max_backoff,
            };
            let positions = listener.on_assigned(&tps);
            c.assign(&positions).map_err(|e| SinkError::Log {
                detail: e.to_string(),
            })?;
            c
        }
    };
    info!(sink = %name, topics = topics.len(), "sink started");
    let mut dlq = log.producer(None, None).map_err(|e| SinkError::Log {
        detail: e.to_string(),
    })?;
    let mut batch = Batch::default();
    let mut batch_started = Instant::now();
    let mut last_lag = Instant::now();
    let mut last_end_check = Instant::now();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut idle = true;
        if !stopping {
            let fetched = consumer
                .poll(
                    options.batch_records.saturating_sub(batch.records.len()),
                    Duration::from_millis(100),
                )
                .map_err(|e| SinkError::Log {
                    detail: e.to_string(),
                })?;
            for taken in revoked.lock().drain(..) {
                batch.records.retain(|r| r.tp != taken);
                batch.positions.remove(&taken);
            }
            idle = fetched.is_empty();
            for f in fetched {
                let Some(table) = topics.get(&f.tp.topic).copied() else {
                    continue;
                };
                for record in f.records {
                    batch.positions.insert(f.tp.clone(), record.offset + 1);
                    let raw = record.value.clone().unwrap_or_default();
                    match Row::decode(table, &raw) {
                        Ok(row) => batch.records.push(SinkRecord {
                            tp: f.tp.clone(),
                            offset: record.offset,
                            key: record.key,
                            raw,
                            row,
                        }),
                        Err(e) => {
                            let letter = Letter {
                                tp: &f.tp,
                                offset: record.offset,
                                key: &record.key,
                                raw: &raw,
                            };
                            dead_letter(&mut *dlq, &options.dlq_topic, table, &letter, &e.to_string())?;
                        }
                    }
                }
            }
        }
        let full = batch.records.len() >= options.batch_records;
        let due = batch_started.elapsed() >= options.batch_interval;
        let quiet = idle && options.flush_when_idle;
        if !batch.positions.is_empty() && (full || due || stopping || quiet) {
            let rows = batch.records.len();
            flush(&runtime, &target, &mut *dlq, &options, &mut batch, stop)?;
            metrics::counter!(crate::metrics::ROWS, "sink" => name.clone()).increment(rows as u64);
            batch_started = Instant::now();
        } else if batch.positions.is_empty() {
            batch_started = Instant::now();
        }
        if !batch.positions.is_empty() && options.flush_when_idle {
            caught_up.store(false, Ordering::SeqCst);
        } else if last_end_check.elapsed() >= Duration::from_millis(300) {
            last_end_check = Instant::now();
            let assignment = consumer.assignment();
            let at_end = !assignment.is_empty()
                && assignment.iter().all(|tp| {
                    let end = log.end_offset(tp).unwrap_or(u64::MAX);
                    consumer.position(tp).is_some_and(|p| p >= end)
                });
            caught_up.store(at_end, Ordering::SeqCst);
        }
        if last_lag.elapsed() >= Duration::from_secs(5) {
            last_lag = Instant::now();
            for tp in consumer.assignment() {
                if let (Ok(end), Some(position)) = (log.end_offset(&tp), consumer.position(&tp)) {
                    metrics::gauge!(crate::metrics::LAG, "sink" => name.clone(), "topic" => tp.topic.clone(), "partition" => tp.partition.to_string())
                        .set(end.saturating_sub(position) as f64);
                }
            }
        }
        if stopping {
            break;
        }
    }
    info!(sink = %name, "sink stopped");
    Ok(())
}

/// Writes the batch, retrying while the target is unavailable; rows it refuses are isolated
/// and dead-lettered, the rest written.
fn flush(
    runtime: &tokio::runtime::Runtime,
    target: &SharedTarget,
    dlq: &mut dyn fleetstream_topology::log::Producer,
    options: &SinkOptions,
    batch: &mut Batch,
    stop: &AtomicBool,
) -> Result<(), SinkError> {
    let mut backoff = Backoff::new(options.max_backoff);
    loop {
        let result = runtime.block_on(async { target.lock().await.write(batch).await });
        match result {
            Ok(()) => break,
            Err(SinkError::Rejected { .. }) => {
                let mut refused = Vec::new();
                let records = std::mem::take(&mut batch.records);
                runtime.block_on(isolate(target, records, &mut refused, options.max_backoff))?;
                for (record, reason) in &refused {
                    let letter = Letter {
                        tp: &record.tp,
                        offset: record.offset,
                        key: &record.key,
                        raw: &record.raw,
                    };
                    dead_letter(dlq, &options.dlq_topic, record.row.table(), &letter, reason)?;
                }
                dlq.commit(None).map_err(|e| SinkError::Log {
                    detail: e.to_string(),
                })?;
                // Positions only: the good rows are written.
                continue;
            }
            Err(e) if e.is_retriable() => {
                let wait = backoff.next();
                metrics::counter!(crate::metrics::RETRIES, "sink" => target.blocking_lock().name().to_string())
                    .increment(1);
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "sink write failed; retrying");
                if stop.load(Ordering::SeqCst) && wait >= options.max_backoff {
                    return Err(e);
                }
                std::thread::sleep(wait);
            }
            Err(e) => return Err(e),
        }
    }
    dlq.commit(None).map_err(|e| SinkError::Log {
        detail: e.to_string(),
    })?;
    batch.records.clear();
    batch.positions.clear();
    Ok(())
}

/// Splits rows until the refused ones are single; writes the others (without positions).
fn isolate<'a>(
    target: &'a SharedTarget,
    records: Vec<SinkRecord>,
    refused: &'a mut Vec<(SinkRecord, String)>,
    max_backoff: Duration,
) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + 'a>> {
    Box::pin(async move {
        if records.is_empty() {
            return Ok(());
        }
        let mut backoff = Backoff::new(max_backoff);
        loop {
            let attempt = Batch {
                records: records.clone(),
                positions: BTreeMap::new(),
            };
            let result = target.lock().await.write(&attempt).await;
            match result {
                Ok(()) => return Ok(()),
                Err(SinkError::Rejected { detail, .. }) if records.len() == 1 => {
                    refused.push((records.into_iter().next().expect("one record"), detail));
                    return Ok(());
                }
                Err(SinkError::Rejected { .. }) => {
                    let mut left = records;
                    let right = left.split_off(left.len() / 2);
                    isolate(target, left, refused, max_backoff).await?;
                    return isolate(target, right, refused, max_backoff).await;
                }
                Err(e) if e.is_retriable() => tokio::time::sleep(backoff.next()).await,
                Err(e) => return Err(e),
            }
        }
    })
}

/// A record refused by the sink, as read.
struct Letter<'a> {
    tp: &'a TopicPartition,
    offset: u64,
    key: &'a Bytes,
    raw: &'a Bytes,
}

fn dead_letter(
    dlq: &mut dyn fleetstream_topology::log::Producer,
    topic: &str,
    table: Table,
    record: &Letter<'_>,
    reason: &str,
) -> Result<(), SinkError> {
    let value = serde_json::json!({
        "table": table.name(),
        "topic": record.tp.topic,
        "partition": record.tp.partition,
        "offset": record.offset,
        "value": serde_json::from_slice::<serde_json::Value>(record.raw)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(record.raw).into_owned())),
        "error": {"message": reason},
    });
    warn!(
        table = table.name(),
        offset = record.offset,
        reason,
        "row refused: dead-lettered"
    );
    metrics::counter!(crate::metrics::DEAD_LETTERS, "table" => table.name()).increment(1);
    dlq.send(ProducerRecord {
        topic: topic.into(),
        partition: partition_for(record.key, 1),
        ts: 0,
        key: record.key.clone(),
        value: Some(Bytes::from(
            serde_json::to_vec(&value).expect("JSON values encode"),
        )),
    })
    .map_err(|e| SinkError::Log {
        detail: e.to_string(),
    })
}
