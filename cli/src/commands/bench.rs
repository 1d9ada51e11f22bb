//! `fleetstream bench SCENARIO [--quick] [--json]`: how fast fleetstream is, each figure beside
//! the limit of the part it stands on, measured in the same run on the same data:
//!
//! - `gps-ingest`: pings through the location index (RocksDB store + changelog) on the embedded
//!   log, at-least-once and exactly-once; limits: a bare read loop over the same log segments, a
//!   bare decode loop over the same JSON, a bare RocksDB write loop with the same keys.
//!   With `--kafka BROKERS` also on Kafka (at-least-once), beside a bare `rdkafka` consumer
//!   over the same topic; the topic is left for `bench/peer/run.sh` to run Quix Streams over.
//! - `matching`: online drivers pinging every 4 s and trip requests at a set rate, each offer
//!   accepted as soon as it is seen: request -> matched latency (processing time), matches/s,
//!   and ping -> `driver.positions` latency under that load.
//! - `settlement`: completed trips' postings (the fare rules' split) applied to the wallets
//!   and the ledger store; limits: bare decode, bare RocksDB write.
//! - `overtime`: punches through the day and week windows; limit: the bare decode loop.
//! - `restore`: a store of many keys restored from its changelog, with and without a local
//!   checkpoint.
//! - `sql`: an aggregate over ledger rows in Parquet, and a point lookup on a store.
//! - `api`: pings accepted through `POST /v1/gps` batches over loopback.
//!
//! Benchmarks report; they never fail on a figure. Build with `--release` for figures worth
//! comparing (`cargo run --release -p fleetstream -- bench all`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chrono::{TimeZone as _, Utc};
use fleetstream_schemas::{GpsPing, Punch, PunchKind, topics};
use fleetstream_topology::log::kafka::KafkaLog;
use fleetstream_topology::log::{Log, Membership};
use fleetstream_topology::{Engine, Guarantee, ProducerRecord, RunningEngine, TopicPartition, partition_for};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use crate::config::AppConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    GpsIngest,
    Matching,
    Settlement,
    Overtime,
    Restore,
    Sql,
    Api,
    All,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// A smoke run: small data, under a minute for everything.
    #[arg(long)]
    pub quick: bool,
    /// Also print one JSON object (figures, machine, git revision).
    #[arg(long)]
    pub json: bool,
    /// Also run gps-ingest on this Kafka cluster (host:port), e.g. the test broker.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Stream threads per instance (default: one per core). gps-ingest also runs one thread to
    /// show how it scales.
    #[arg(long)]
    pub threads: Option<u32>,
    /// A configuration file to bench (its `[processing]`, `[kafka.properties]`, job settings...).
    /// The bench still sets the data directory, the guarantee, the threads, the brokers (none
    /// but `--kafka`'s) and, on Kafka, a fresh app id and topic prefix of its own.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

impl BenchArgs {
    fn threads(&self) -> u32 {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
            .max(1)
    }
}

/// What a scenario leaves for the JSON report besides its figures.
type Extras = serde_json::Map<String, serde_json::Value>;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// The limit it stands on, measured in the same run.
    pub limit: Option<Limit>,
    pub target: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub name: String,
    pub value: f64,
}

impl Figure {
    fn ratio(&self) -> Option<f64> {
        self.limit
            .as_ref()
            .filter(|l| l.value > 0.0)
            .map(|l| self.value / l.value)
    }
}

fn figure(
    scenario: &'static str,
    name: impl Into<String>,
    value: f64,
    unit: &'static str,
    limit: Option<Limit>,
    target: Option<&'static str>,
) -> Figure {
    Figure {
        scenario,
        name: name.into(),
        value,
        unit,
        limit,
        target,
    }
}

fn limit(name: &str, value: f64) -> Option<Limit> {
    Some(Limit {
        name: name.to_string(),
        value,
    })
}

/// The lowest of several limits: the one a figure stands on.
fn tightest(limits: &[(&str, f64)]) -> Option<Limit> {
    limits
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .and_then(|(name, value)| limit(name, *value))
}

/// A fresh embedded instance in `dir`.
struct Instance {
    config: AppConfig,
    log: Arc<dyn Log>,
    engine: Engine,
    stores: fleetstream_operators::topology::Stores,
}

fn instance(args: &BenchArgs, dir: &Path, guarantee: Guarantee) -> Result<Instance> {
    instance_with(args, args.threads(), dir, guarantee, |_| {})
}

/// A fresh instance in `dir` with `args`' configuration file, its configuration adjusted by
/// `adjust` (e.g. a Kafka cluster).
fn instance_with(
    args: &BenchArgs,
    threads: u32,
    dir: &Path,
    guarantee: Guarantee,
    adjust: impl FnOnce(&mut AppConfig),
) -> Result<Instance> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    // The embedded log unless `adjust` names a cluster (`--kafka`).
    config.kafka.brokers = String::new();
    config.data_dir = dir.to_path_buf();
    config.processing.guarantee = guarantee;
    config.processing.threads = threads;
    config.api.addr = String::new();
    adjust(&mut config);
    let backend = crate::backend::open(&config)?;
    let (engine, stores) = crate::backend::engine(&config, &backend)?;
    Ok(Instance {
        log: backend.log.clone(),
        config,
        engine,
        stores,
    })
}

/// Appends `(key, value, ts)` records to a topic, partitioned by key.
fn append(log: &dyn Log, topic: &str, records: impl Iterator<Item = (String, Vec<u8>, i64)>) -> Result<u64> {
    let partitions = log.partitions(topic)?;
    let mut producer = log.producer(None, None)?;
    let mut n = 0u64;
    let topic: std::sync::Arc<str> = topic.into();
    for (key, value, ts) in records {
        producer.send(ProducerRecord {
            topic: topic.clone(),
            partition: partition_for(key.as_bytes(), partitions),
            ts,
            key: key.into(),
            value: Some(value.into()),
        })?;
        n += 1;
        if n.is_multiple_of(50_000) {
            producer.commit(None)?;
        }
    }
    producer.commit(None)?;
    Ok(n)
}

/// What a drain took.
#[derive(Debug, Clone)]
struct Drained {
    /// Wall-clock time until every input record was processed.
    took: Duration,
    /// CPU time the process spent meanwhile, every thread (stream threads, RocksDB's) together.
    cpu: Duration,
    /// CPU time of each stream thread (started by the drain, so all of theirs).
    stream_threads: Vec<Duration>,
}

impl Drained {
    fn rate(&self, records: u64) -> f64 {
        records as f64 / self.took.as_secs_f64()
    }

    /// Microseconds of CPU per record: what a record costs whatever the cores the machine lends
    /// the run, which moves less from run to run than a rate does on a shared machine.
    fn cpu_us(&self, records: u64) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / records.max(1) as f64
    }

    /// The busiest and the idlest stream thread over the drain, in cores (its CPU time over the
    /// drain's): how evenly the tasks spread the work. A thread that finished its partitions
    /// early idles while the other works on alone (a hot key, one busier partition). None with
    /// one thread.
    fn balance(&self, scenario: &'static str, label: &str) -> Vec<Figure> {
        if self.stream_threads.len() < 2 {
            return Vec::new();
        }
        let cores = |cpu: &Duration| cpu.as_secs_f64() / self.took.as_secs_f64().max(1e-9);
        let busiest = self.stream_threads.iter().map(cores).fold(0.0, f64::max);
        let idlest = self
            .stream_threads
            .iter()
            .map(cores)
            .fold(f64::INFINITY, f64::min);
        vec![
            figure(
                scenario,
                format!("{label}busiest stream thread, in cores"),
                busiest,
                "cores",
                None,
                None,
            ),
            figure(
                scenario,
                format!("{label}idlest stream thread, in cores"),
                idlest,
                "cores",
                None,
                None,
            ),
        ]
    }
}

/// Runs the engine until every input record is processed.
fn drain(engine: &Engine) -> Result<Drained> {
    let started = Instant::now();
    let cpu_before = process_cpu();
    let running = engine.start()?;
    wait_caught_up(&running, Duration::from_secs(1800), "not caught up")?;
    let took = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let stream_threads = each_thread_cpu("stream-");
    running.shutdown()?;
    Ok(Drained {
        took,
        cpu,
        stream_threads,
    })
}

/// CPU time of this process so far (user and system, every thread), from `/proc/self/stat`.
fn process_cpu() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_cpu(&stat))
        .unwrap_or_default()
}

/// CPU time so far of this process's threads whose name starts with `prefix` (the stream
/// threads are `stream-N`), from `/proc/self/task/*/stat`.
fn threads_cpu(prefix: &str) -> Duration {
    each_thread_cpu(prefix).into_iter().sum()
}

/// CPU time so far of each of this process's threads whose name starts with `prefix`.
fn each_thread_cpu(prefix: &str) -> Vec<Duration> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat.split_once('(')?.1.rsplit_once(')')?.0;
            if name.starts_with(prefix) {
                stat_cpu(&stat)
            } else {
                None
            }
        })
        .collect()
}

/// User and system time from a `stat` line of `/proc`.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // The fields after the command name (which may hold spaces): utime and stime are the 14th
    // and 15th of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks of USER_HZ, 100 Hz on the platforms we build for (x86-64, arm64).
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Waits until the engine has processed every input record, failing once `limit` has passed.
fn wait_caught_up(running: &RunningEngine, limit: Duration, what: &str) -> Result<()> {
    let started = Instant::now();
    while !running.is_caught_up() {
        anyhow::ensure!(running.is_running(), "the engine stopped");
        anyhow::ensure!(started.elapsed() < limit, "{what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn base_ts() -> i64 {
    Utc.with_ymd_and_hms(2026, 11, 2, 6, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn pings(n: u64, drivers: u64) -> impl Iterator<Item = (String, Vec<u8>, i64)> {
    let t0 = base_ts();
    (0..n).map(move |i| {
        let d = i % drivers;
        let ts = t0 + (i / drivers) as i64 * 4_000 + (d % 4_000) as i64;
        let ping = GpsPing {
            event_id: format!("p{i}"),
            driver_id: format!("d{d:07}"),
            lat: 52.40 + (d % 1000) as f64 * 0.0003 + (i % 7) as f64 * 0.00001,
            lng: 13.20 + (d / 1000 % 1000) as f64 * 0.0004,
            speed_kmh: Some(30.0),
            heading: Some(90.0),
            ts: fleetstream_schemas::time::from_millis(ts),
        };
        (
            ping.driver_id.clone(),
            serde_json::to_vec(&ping).expect("JSON"),
            ts,
        )
    })
}

/// Records per second of a bare read loop over a topic (every partition, from the start).
fn bare_read(log: &dyn Log, topic: &str, expect: u64) -> Result<f64> {
    let partitions = log.partitions(topic)?;
    let positions: Vec<_> = (0..partitions)
        .map(|p| (TopicPartition::new(topic, p), 0))
        .collect();
    let started = Instant::now();
    let mut consumer = log.consumer(Membership::Manual)?;
    consumer.assign(&positions)?;
    let mut read = 0u64;
    let mut bytes = 0usize;
    while read < expect {
        let fetched = consumer.poll(10_000, Duration::from_millis(100))?;
        anyhow::ensure!(
            !fetched.is_empty() || started.elapsed() < Duration::from_secs(60),
            "the bare read stalled at {read}"
        );
        for f in fetched {
            read += f.records.len() as u64;
            bytes += f
                .records
                .iter()
                .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>();
        }
    }
    std::hint::black_box(bytes);
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

/// Records per second of decoding (and validating) the same JSON.
fn bare_decode<T: fleetstream_schemas::Validate>(values: &[Vec<u8>]) -> f64 {
    let started = Instant::now();
    let mut ok = 0usize;
    for v in values {
        ok += usize::from(fleetstream_schemas::decode::<T>(v).is_ok());
    }
    std::hint::black_box(ok);
    values.len() as f64 / started.elapsed().as_secs_f64()
}

/// Writes per second of a bare RocksDB loop: the same keys, values of the same size, write
/// batches of 1,000.
fn bare_rocksdb(dir: &Path, keys: &[String], value_len: usize) -> Result<f64> {
    let db = rocksdb::DB::open_default(dir)?;
    let value = vec![7u8; value_len];
    let started = Instant::now();
    for chunk in keys.chunks(1_000) {
        let mut batch = rocksdb::WriteBatch::default();
        for k in chunk {
            batch.put(k.as_bytes(), &value);
        }
        db.write(batch)?;
    }
    Ok(keys.len() as f64 / started.elapsed().as_secs_f64())
}

fn gps_ingest(args: &BenchArgs, extras: &mut Extras) -> Result<Vec<Figure>> {
    let quick = args.quick;
    let (n, drivers) = if quick {
        (100_000, 5_000)
    } else {
        (2_000_000, 50_000)
    };
    let mut out = Vec::new();
    let sample: Vec<(String, Vec<u8>, i64)> = pings(n.min(200_000), drivers).collect();
    let values: Vec<Vec<u8>> = sample.iter().map(|(_, v, _)| v.clone()).collect();
    let decode = bare_decode::<GpsPing>(&values);
    let keys: Vec<String> = sample.iter().map(|(k, _, _)| k.clone()).collect();
    let rocks_dir = tempfile::tempdir()?;
    let rocks = bare_rocksdb(rocks_dir.path(), &keys, 120)?;
    let mut bare_reads = Vec::new();
    let mut cpu = Vec::new();
    let threads = args.threads();
    let mut runs = vec![
        (threads, Guarantee::AtLeastOnce, "at-least-once", ">= 1,000,000/s"),
        (
            threads,
            Guarantee::ExactlyOnce,
            "exactly-once",
            ">= 70 % of at-least-once",
        ),
    ];
    if threads > 1 {
        runs.push((1, Guarantee::AtLeastOnce, "at-least-once", ""));
    }
    for (threads, guarantee, label, target) in runs {
        let dir = tempfile::tempdir()?;
        let i = instance_with(args, threads, dir.path(), guarantee, |_| {})?;
        let topic = format!("{}{}", i.config.topic_prefix, topics::GPS_PINGS);
        append(&*i.log, &topic, pings(n, drivers))?;
        let read = bare_read(&*i.log, &topic, n)?;
        bare_reads.push(read);
        let drained = drain(&i.engine)?;
        let rate = drained.rate(n);
        let plural = if threads == 1 { "" } else { "s" };
        cpu.push(figure(
            "gps-ingest",
            format!("embedded, {label}, {threads} thread{plural}: CPU per ping"),
            drained.cpu_us(n),
            "µs",
            None,
            None,
        ));
        cpu.extend(drained.balance("gps-ingest", &format!("embedded, {label}, {threads} threads: ")));
        out.push(figure(
            "gps-ingest",
            format!("embedded, {label}, {threads} thread{plural}: pings/s"),
            rate,
            "/s",
            tightest(&[
                ("bare read", read),
                ("bare decode", decode),
                ("bare RocksDB write", rocks),
            ]),
            (!target.is_empty()).then_some(target),
        ));
    }
    out.extend(cpu);
    if let Some(brokers) = &args.kafka {
        out.extend(gps_ingest_kafka(
            args, brokers, n, drivers, decode, rocks, extras,
        )?);
    }
    out.push(figure(
        "gps-ingest",
        "bare read loop (embedded log segments)",
        bare_reads.iter().sum::<f64>() / bare_reads.len() as f64,
        "/s",
        None,
        None,
    ));
    out.push(figure("gps-ingest", "bare decode loop", decode, "/s", None, None));
    out.push(figure(
        "gps-ingest",
        "bare RocksDB write loop",
        rocks,
        "/s",
        None,
        None,
    ));
    out.push(figure(
        "gps-ingest",
        "peak RSS of this process",
        peak_rss_mib(),
        "MiB",
        None,
        Some("< 1 GiB"),
    ));
    Ok(out)
}

/// gps-ingest on Kafka, at-least-once, beside a bare `rdkafka` consumer over the same topic.
fn gps_ingest_kafka(
    args: &BenchArgs,
    brokers: &str,
    n: u64,
    drivers: u64,
    decode: f64,
    rocks: f64,
    extras: &mut Extras,
) -> Result<Vec<Figure>> {
    let run = format!(
        "bench-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let dir = tempfile::tempdir()?;
    let i = instance_with(args, args.threads(), dir.path(), Guarantee::AtLeastOnce, |c| {
        c.kafka.brokers = brokers.to_string();
        c.app_id = run.clone();
        c.topic_prefix = format!("{run}.");
    })?;
    let topic = format!("{}{}", i.config.topic_prefix, topics::GPS_PINGS);
    let started = Instant::now();
    append(&*i.log, &topic, pings(n, drivers))?;
    let produced = n as f64 / started.elapsed().as_secs_f64();
    let partitions = i.log.partitions(&topic)?;
    let bare = bare_rdkafka(brokers, &topic, partitions, n)?;
    let took = drain(&i.engine)?.took;
    // The figure counts only if the job really got through its input.
    for p in 0..partitions {
        let tp = TopicPartition::new(&topic, p);
        let (committed, end) = (i.log.committed(&run, &tp)?, i.log.end_offset(&tp)?);
        anyhow::ensure!(
            committed == Some(end),
            "the job stopped short of the end of {tp}: committed {committed:?}, end {end}"
        );
    }
    // What the job writes through the broker per ping: outputs, repartitions, changelogs.
    let kafka = KafkaLog::connect(i.config.kafka_options())?;
    let mut written = 0u64;
    for (name, count) in kafka.topics()? {
        if name.starts_with(&run) && name != topic {
            for p in 0..count {
                written += kafka.end_offset(&TopicPartition::new(&name, p))?;
            }
        }
    }
    extras.insert(
        "kafka_input".into(),
        serde_json::json!({"topic": topic, "pings": n, "partitions": partitions, "drivers": drivers}),
    );
    Ok(vec![
        figure(
            "gps-ingest",
            "kafka, at-least-once: pings/s",
            n as f64 / took.as_secs_f64(),
            "/s",
            tightest(&[
                ("bare rdkafka consumer", bare),
                ("bare decode", decode),
                ("bare RocksDB write", rocks),
            ]),
            Some(">= 70 % of the bare rdkafka consumer"),
        ),
        figure(
            "gps-ingest",
            "bare rdkafka consumer (same topic)",
            bare,
            "/s",
            None,
            None,
        ),
        figure(
            "gps-ingest",
            "kafka: pings produced into the input (idempotent producer, acks=all)",
            produced,
            "/s",
            None,
            None,
        ),
        figure(
            "gps-ingest",
            "kafka: records the job writes to the broker per ping",
            written as f64 / n as f64,
            "records",
            None,
            None,
        ),
    ])
}

/// Records per second of a bare `rdkafka` consumer reading a topic from the start.
fn bare_rdkafka(brokers: &str, topic: &str, partitions: u32, expect: u64) -> Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.bare"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating the bare consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let (mut read, mut bytes) = (0u64, 0usize);
    while read < expect {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the bare consumer stalled at {read} of {expect}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            bytes += message.payload().map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

/// Follows a topic from its end on a thread, handing each record to `seen`, until `stop`.
fn tail(
    log: Arc<dyn Log>,
    topic: String,
    stop: Arc<AtomicBool>,
    mut seen: impl FnMut(&fleetstream_topology::LogRecord) + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let mut consumer = fleetstream_topology::log::consumer_at_end(&*log, &topic)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for fetched in consumer.poll(10_000, Duration::from_millis(5))? {
                fetched.records.iter().for_each(&mut seen);
            }
        }
        Ok(())
    }))
}

/// Milliseconds of a histogram's quantile (recorded in microseconds).
fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn matching(args: &BenchArgs, _: &mut Extras) -> Result<Vec<Figure>> {
    use fleetstream_schemas::{DriverStatus, DriverStatusKind, GeoPoint, TripCommand, VehicleClass};
    let (drivers, rate, secs) = if args.quick {
        (2_000u64, 100.0, 3.0)
    } else {
        (50_000, 2_000.0, 20.0)
    };
    let dir = tempfile::tempdir()?;
    let i = instance(args, dir.path(), Guarantee::AtLeastOnce)?;
    let topic = |t: &str| format!("{}{}", i.config.topic_prefix, t);
    let now = || Utc::now().timestamp_millis();
    let position = |d: u64| {
        (
            52.40 + (d % 1000) as f64 * 0.0003,
            13.20 + (d / 1000 % 1000) as f64 * 0.0004,
        )
    };
    let ping = move |d: u64, seq: u64, ts: i64| {
        let (lat, lng) = position(d);
        let p = GpsPing {
            event_id: format!("p{d}-{seq}"),
            driver_id: format!("d{d:07}"),
            lat,
            lng,
            speed_kmh: Some(20.0),
            heading: Some(90.0),
            ts: fleetstream_schemas::time::from_millis(ts),
        };
        (p.driver_id.clone(), serde_json::to_vec(&p).expect("JSON"), ts)
    };
    // Every driver online with a first position before the clock starts.
    let t0 = now();
    append(
        &*i.log,
        &topic(topics::DRIVER_STATUS),
        (0..drivers).map(|d| {
            let s = DriverStatus {
                driver_id: format!("d{d:07}"),
                status: DriverStatusKind::Online,
                vehicle_class: VehicleClass("economy".into()),
                ts: fleetstream_schemas::time::from_millis(t0),
            };
            (s.driver_id.clone(), serde_json::to_vec(&s).expect("JSON"), t0)
        }),
    )?;
    append(
        &*i.log,
        &topic(topics::GPS_PINGS),
        (0..drivers).map(|d| ping(d, 0, t0)),
    )?;
    let running = i.engine.start()?;
    wait_caught_up(&running, Duration::from_secs(600), "drivers not online")?;

    // Offers are accepted as soon as they are seen; matches and positions are timed.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pinged: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let new_histogram = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let matched = Arc::new(Mutex::new(new_histogram()));
    let offered = Arc::new(Mutex::new(new_histogram()));
    let positions = Arc::new(Mutex::new(new_histogram()));
    let no_driver = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let commands: std::sync::Arc<str> = topic(topics::TRIP_COMMANDS).into();
    let trip_partitions = i.log.partitions(&commands)?;
    let events = tail(i.log.clone(), topic(topics::TRIP_EVENTS), stop.clone(), {
        let (sent, matched, offered, no_driver) =
            (sent.clone(), matched.clone(), offered.clone(), no_driver.clone());
        let mut producer = i.log.producer(None, None)?;
        move |record| {
            let Some(value) = &record.value else { return };
            let Ok(event) = serde_json::from_slice::<fleetstream_schemas::TripEvent>(value) else {
                return;
            };
            let at = sent.lock().expect("sent").get(&event.trip_id).copied();
            let elapsed = at.map(|t| t.elapsed().as_micros() as u64);
            match event.kind {
                fleetstream_schemas::TripEventKind::Offered { driver_id, .. } => {
                    if let Some(e) = elapsed {
                        let _ = offered.lock().expect("offered").record(e.max(1));
                    }
                    let ts = Utc::now().timestamp_millis();
                    let accept = TripCommand::Accept {
                        trip_id: event.trip_id.clone(),
                        driver_id,
                        ts: fleetstream_schemas::time::from_millis(ts),
                    };
                    let sent = producer.send(ProducerRecord {
                        topic: commands.clone(),
                        partition: partition_for(event.trip_id.as_bytes(), trip_partitions),
                        ts,
                        key: event.trip_id.clone().into_bytes().into(),
                        value: Some(serde_json::to_vec(&accept).expect("JSON").into()),
                    });
                    if sent.and_then(|_| producer.commit(None)).is_err() {
                        tracing::warn!("an accept could not be appended");
                    }
                }
                fleetstream_schemas::TripEventKind::Matched { .. } => {
                    if let Some(e) = elapsed {
                        let _ = matched.lock().expect("matched").record(e.max(1));
                    }
                }
                fleetstream_schemas::TripEventKind::NoDriver { .. } => {
                    no_driver.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    })?;
    let moves = tail(i.log.clone(), topic(topics::DRIVER_POSITIONS), stop.clone(), {
        let (pinged, positions) = (pinged.clone(), positions.clone());
        move |record| {
            let key = String::from_utf8_lossy(&record.key).into_owned();
            if let Some(at) = pinged.lock().expect("pinged").remove(&key) {
                let _ = positions
                    .lock()
                    .expect("positions")
                    .record((at.elapsed().as_micros() as u64).max(1));
            }
        }
    })?;

    // Requests at `rate` per second and every driver's ping every 4 s, for `secs` seconds.
    let mut producer = i.log.producer(None, None)?;
    let pings_topic: std::sync::Arc<str> = topic(topics::GPS_PINGS).into();
    let ping_partitions = i.log.partitions(&pings_topic)?;
    let mut rng = StdRng::seed_from_u64(11);
    let started = Instant::now();
    let (cpu_before, stream_cpu_before) = (process_cpu(), threads_cpu("stream-"));
    let (mut requests, mut pings_sent) = (0u64, 0u64);
    while started.elapsed().as_secs_f64() < secs {
        let elapsed = started.elapsed().as_secs_f64();
        let ts = now();
        while (requests as f64) < elapsed * rate {
            let near = rng.gen_range(0..drivers);
            let (lat, lng) = position(near);
            let trip_id = format!("t{requests:08}");
            let request = TripCommand::Request {
                trip_id: trip_id.clone(),
                rider_id: format!("r{requests:08}"),
                pickup: GeoPoint {
                    lat: lat + 0.0005,
                    lng,
                },
                dropoff: GeoPoint {
                    lat: lat + 0.02,
                    lng: lng + 0.02,
                },
                vehicle_class: VehicleClass("economy".into()),
                ts: fleetstream_schemas::time::from_millis(ts),
            };
            sent.lock().expect("sent").insert(trip_id.clone(), Instant::now());
            producer.send(ProducerRecord {
                topic: commands_topic(&i).into(),
                partition: partition_for(trip_id.as_bytes(), trip_partitions),
                ts,
                key: trip_id.into_bytes().into(),
                value: Some(serde_json::to_vec(&request)?.into()),
            })?;
            requests += 1;
        }
        while (pings_sent as f64) < elapsed * drivers as f64 / 4.0 {
            let d = pings_sent % drivers;
            let (key, value, ts) = ping(d, 1 + pings_sent / drivers, ts);
            // Every 100th ping is timed to its position.
            if pings_sent.is_multiple_of(100) {
                pinged.lock().expect("pinged").insert(key.clone(), Instant::now());
            }
            producer.send(ProducerRecord {
                topic: pings_topic.clone(),
                partition: partition_for(key.as_bytes(), ping_partitions),
                ts,
                key: key.into_bytes().into(),
                value: Some(value.into()),
            })?;
            pings_sent += 1;
        }
        producer.commit(None)?;
        anyhow::ensure!(running.is_running(), "the engine stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
    // CPU while the load was offered (not while the last matches settle).
    let phase = started.elapsed().as_secs_f64();
    let cores = |cpu: Duration| cpu.as_secs_f64() / phase;
    let (busy, stream_busy) = (
        cores(process_cpu().saturating_sub(cpu_before)),
        cores(threads_cpu("stream-").saturating_sub(stream_cpu_before)),
    );
    // The last matches.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(10)
        && (matched.lock().expect("matched").len() + no_driver.load(Ordering::Relaxed)) < requests
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    events
        .join()
        .map_err(|_| anyhow::anyhow!("the event tail panicked"))??;
    moves
        .join()
        .map_err(|_| anyhow::anyhow!("the position tail panicked"))??;
    running.shutdown()?;
    let matched = matched.lock().expect("matched");
    let offered = offered.lock().expect("offered");
    let positions = positions.lock().expect("positions");
    let label = format!("{drivers} drivers, {rate} requests/s");
    Ok(vec![
        figure(
            "matching",
            format!("{label}: request -> matched p50 (with the accept)"),
            ms(&matched, 0.50),
            "ms",
            None,
            None,
        ),
        figure(
            "matching",
            format!("{label}: request -> matched p99"),
            ms(&matched, 0.99),
            "ms",
            None,
            Some("p99 <= 10 ms at 2,000/s, 50,000 drivers"),
        ),
        figure(
            "matching",
            format!("{label}: request -> matched max"),
            matched.max() as f64 / 1000.0,
            "ms",
            None,
            None,
        ),
        figure(
            "matching",
            format!("{label}: request -> offered p99"),
            ms(&offered, 0.99),
            "ms",
            None,
            None,
        ),
        figure(
            "matching",
            format!("{label}: matches/s ({} of {requests} matched)", matched.len()),
            matched.len() as f64 / secs,
            "/s",
            None,
            None,
        ),
        figure(
            "matching",
            format!("{label}: CPU in cores, stream threads"),
            stream_busy,
            "cores",
            None,
            None,
        ),
        figure(
            "matching",
            format!("{label}: CPU in cores, whole process (with load and tails)"),
            busy,
            "cores",
            None,
            None,
        ),
        figure(
            "gps-ingest",
            format!("{label}: ping -> driver.positions p50"),
            ms(&positions, 0.50),
            "ms",
            None,
            None,
        ),
        figure(
            "gps-ingest",
            format!("{label}: ping -> driver.positions p99"),
            ms(&positions, 0.99),
            "ms",
            None,
            None,
        ),
    ])
}

fn commands_topic(i: &Instance) -> String {
    format!("{}{}", i.config.topic_prefix, topics::TRIP_COMMANDS)
}

fn settlement(args: &BenchArgs, _: &mut Extras) -> Result<Vec<Figure>> {
    use fleetstream_operators::settlement::{fare, trip_postings};
    use fleetstream_schemas::LedgerEntry;
    let trips: u64 = if args.quick { 30_000 } else { 500_000 };
    let dir = tempfile::tempdir()?;
    let i = instance(args, dir.path(), Guarantee::ExactlyOnce)?;
    let jobs = i.config.jobs();
    let tariff = jobs.tariff.get("economy").context("no economy tariff")?.clone();
    let t0 = base_ts();
    let postings = move || {
        let tariff = tariff.clone();
        (0..trips).flat_map(move |t| {
            let priced = fare(
                &tariff,
                1.0 + (t % 200) as f64 * 0.05,
                300_000 + (t % 900) as i64 * 1_000,
                rust_decimal::Decimal::ONE,
            );
            let ts = t0 + t as i64 * 10;
            trip_postings(
                &format!("t{t:08}"),
                &format!("r{:06}", t % 200_000),
                &format!("d{:06}", t % 50_000),
                &priced,
                &tariff,
                ts,
            )
            .into_iter()
            .map(move |e| (e.account_id.clone(), serde_json::to_vec(&e).expect("JSON"), ts))
        })
    };
    let sample: Vec<(String, Vec<u8>, i64)> = postings().take(300_000).collect();
    let values: Vec<Vec<u8>> = sample.iter().map(|(_, v, _)| v.clone()).collect();
    let decode = bare_decode::<LedgerEntry>(&values) / 3.0;
    let keys: Vec<String> = sample.iter().map(|(k, _, _)| k.clone()).collect();
    let rocks_dir = tempfile::tempdir()?;
    // A posting writes its wallet and its ledger entry.
    let rocks = bare_rocksdb(rocks_dir.path(), &keys, 120)? / 2.0 / 3.0;
    append(
        &*i.log,
        &format!("{}{}", i.config.topic_prefix, topics::LEDGER_ENTRIES),
        postings(),
    )?;
    let drained = drain(&i.engine)?;
    let mut out = vec![
        figure(
            "settlement",
            "completed trips/s: postings to wallets and ledger (exactly-once)",
            drained.rate(trips),
            "/s",
            tightest(&[("bare decode", decode), ("bare RocksDB write", rocks)]),
            Some(">= 200,000/s"),
        ),
        figure(
            "settlement",
            "CPU per completed trip (three postings)",
            drained.cpu_us(trips),
            "µs",
            None,
            None,
        ),
    ];
    out.extend(drained.balance("settlement", ""));
    Ok(out)
}

fn overtime(args: &BenchArgs, _: &mut Extras) -> Result<Vec<Figure>> {
    let quick = args.quick;
    let (employees, days) = if quick { (200u64, 20u64) } else { (5_000, 60) };
    let t0 = base_ts();
    let punches = move || {
        (0..days).flat_map(move |day| {
            (0..employees).flat_map(move |e| {
                let start = t0 + day as i64 * 86_400_000 + (e % 120) as i64 * 60_000;
                [
                    (PunchKind::ClockIn, start),
                    (
                        PunchKind::ClockOut,
                        start + 9 * 3_600_000 + (e % 90) as i64 * 60_000,
                    ),
                ]
                .into_iter()
                .map(move |(kind, ts)| {
                    let p = Punch {
                        punch_id: format!("p{e}-{day}-{kind:?}"),
                        employee_id: format!("E{e:05}"),
                        kind,
                        ts: fleetstream_schemas::time::from_millis(ts),
                    };
                    (p.employee_id.clone(), serde_json::to_vec(&p).expect("JSON"), ts)
                })
            })
        })
    };
    let values: Vec<Vec<u8>> = punches().map(|(_, v, _)| v).collect();
    let n = values.len() as u64;
    let decode = bare_decode::<Punch>(&values);
    let dir = tempfile::tempdir()?;
    let i = instance(args, dir.path(), Guarantee::ExactlyOnce)?;
    let topic = format!("{}{}", i.config.topic_prefix, topics::TIMESHEET_PUNCHES);
    append(&*i.log, &topic, punches())?;
    let drained = drain(&i.engine)?;
    let mut out = vec![
        figure(
            "overtime",
            "punches/s through day and week windows (exactly-once)",
            drained.rate(n),
            "/s",
            limit("bare decode", decode),
            Some(">= 500,000/s"),
        ),
        figure("overtime", "CPU per punch", drained.cpu_us(n), "µs", None, None),
    ];
    out.extend(drained.balance("overtime", ""));
    Ok(out)
}

fn restore(args: &BenchArgs, _: &mut Extras) -> Result<Vec<Figure>> {
    let quick = args.quick;
    let keys = if quick { 50_000 } else { 1_000_000 };
    let dir = tempfile::tempdir()?;
    {
        let i = instance(args, dir.path(), Guarantee::ExactlyOnce)?;
        let topic = format!("{}{}", i.config.topic_prefix, topics::GPS_PINGS);
        append(&*i.log, &topic, pings(keys, keys))?;
        drain(&i.engine)?;
    }
    // With the local checkpoint: only what the checkpoint lacks is replayed.
    let with_checkpoint = {
        let i = instance(args, dir.path(), Guarantee::ExactlyOnce)?;
        drain(&i.engine)?.took
    };
    // Without local state: every store is rebuilt from its changelog.
    std::fs::remove_dir_all(dir.path().join("state")).context("removing the local state")?;
    let without = {
        let i = instance(args, dir.path(), Guarantee::ExactlyOnce)?;
        drain(&i.engine)?.took
    };
    Ok(vec![
        figure(
            "restore",
            format!("{keys} keys, with checkpoint"),
            with_checkpoint.as_secs_f64(),
            "s",
            None,
            Some("< 10 s for 1 M keys"),
        ),
        figure(
            "restore",
            format!("{keys} keys, from the changelog only"),
            without.as_secs_f64(),
            "s",
            None,
            Some("< 10 s for 1 M keys"),
        ),
    ])
}

fn sql(args: &BenchArgs, _: &mut Extras) -> Result<Vec<Figure>> {
    let quick = args.quick;
    use fleetstream_schemas::{LedgerEntry, PostingKind};
    use fleetstream_sinks::Table;
    use fleetstream_sinks::rows::Row;
    let rows_n: usize = if quick { 200_000 } else { 10_000_000 };
    let dir = tempfile::tempdir()?;
    let folder = dir
        .path()
        .join("tables")
        .join(Table::LedgerEntries.name())
        .join("dt=2026-11-02");
    std::fs::create_dir_all(&folder)?;
    let mut written = 0usize;
    let mut file_no = 0;
    while written < rows_n {
        let chunk = (rows_n - written).min(1_000_000);
        let rows: Vec<Row> = (written..written + chunk)
            .map(|i| {
                Row::Ledger(LedgerEntry {
                    entry_id: format!("t{i}/driver:d{}", i % 50_000),
                    txn_id: format!("t{i}"),
                    account_id: format!("driver:d{}", i % 50_000),
                    amount: rust_decimal::Decimal::new((i % 5_000) as i64 + 100, 2),
                    kind: PostingKind::DriverEarnings,
                    trip_id: Some(format!("t{i}")),
                    ts: fleetstream_schemas::time::from_millis(base_ts() + i as i64),
                })
            })
            .collect();
        let batch = fleetstream_sinks::batches::record_batch(Table::LedgerEntries, &rows)?;
        let file = std::fs::File::create(folder.join(format!("part-{file_no}.parquet")))?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
        written += chunk;
        file_no += 1;
    }
    let mut sources = fleetstream_queries::Sources {
        stores: None,
        parquet_dir: Some(dir.path().join("tables")),
        clickhouse: None,
        plugins_dir: None,
    };
    // A store to look up in: drivers after some pings.
    let store_dir = tempfile::tempdir()?;
    let i = instance(args, store_dir.path(), Guarantee::ExactlyOnce)?;
    let topic = format!("{}{}", i.config.topic_prefix, topics::GPS_PINGS);
    append(&*i.log, &topic, pings(50_000, 50_000))?;
    drain(&i.engine)?;
    let lockstep = i.engine.lockstep()?;
    sources.stores = Some(fleetstream_queries::StoreSource {
        registry: i.engine.registry(),
        stores: i.stores.clone(),
        remote: None,
    });
    let engine = fleetstream_queries::QueryEngine::new(
        sources,
        fleetstream_queries::Limits {
            max_rows: 100_000,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (aggregate, lookup) = rt.block_on(async {
        let started = Instant::now();
        let out = engine.query("SELECT account_id, SUM(amount) AS total, COUNT(*) AS postings FROM ledger_entries GROUP BY account_id").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(out.num_rows() > 0, "the aggregate found no rows");
        let aggregate = started.elapsed();
        engine.query("SELECT * FROM drivers WHERE driver_id = 'd0000042'").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut times = Vec::new();
        for k in 0..200 {
            let started = Instant::now();
            let out = engine.query(&format!("SELECT lat, lng FROM drivers WHERE driver_id = 'd{:07}'", k * 97 % 50_000)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(out.num_rows() == 1, "the lookup found {} rows", out.num_rows());
            times.push(started.elapsed());
        }
        times.sort();
        Ok::<_, anyhow::Error>((aggregate, times[times.len() / 2]))
    })?;
    lockstep.close()?;
    Ok(vec![
        figure(
            "sql",
            format!("aggregate over {rows_n} ledger rows (Parquet)"),
            aggregate.as_secs_f64() * 1000.0,
            "ms",
            None,
            Some("< 1 s for 10 M rows"),
        ),
        figure(
            "sql",
            "store point lookup through SQL, median",
            lookup.as_secs_f64() * 1000.0,
            "ms",
            None,
            Some("< 1 ms"),
        ),
    ])
}

/// The stream threads' `processing.thread_nice` in the api scenario's second run.
const API_THREAD_NICE: u8 = 5;

fn api(args: &BenchArgs, _: &mut Extras) -> Result<Vec<Figure>> {
    let default = api_run(args, crate::config::DEFAULT_THREAD_NICE)?;
    let nicer = api_run(args, API_THREAD_NICE)?;
    let paced = &default.paced;
    let nicer_note = format!("thread_nice {API_THREAD_NICE}");
    Ok(vec![
        figure(
            "api",
            format!("pings accepted/s ({})", default.saturated),
            default.rate,
            "/s",
            None,
            Some(">= 150,000/s"),
        ),
        figure(
            "api",
            format!("batch latency p99 at saturation ({})", default.saturated),
            default.saturated_p99,
            "ms",
            None,
            None,
        ),
        figure(
            "api",
            format!("batch latency p50, {paced}"),
            default.paced_p50,
            "ms",
            None,
            None,
        ),
        figure(
            "api",
            format!("batch latency p99, {paced}"),
            default.paced_p99,
            "ms",
            None,
            Some("< 20 ms"),
        ),
        figure(
            "api",
            format!("pings accepted/s ({}), {nicer_note}", nicer.saturated),
            nicer.rate,
            "/s",
            None,
            Some(">= 150,000/s"),
        ),
        figure(
            "api",
            format!("batch latency p99, {paced}, {nicer_note}"),
            nicer.paced_p99,
            "ms",
            None,
            Some("< 20 ms"),
        ),
    ])
}

/// What one run of the api scenario measured; latencies in milliseconds.
struct ApiRun {
    /// How the saturating phase sent its batches.
    saturated: String,
    rate: f64,
    saturated_p99: f64,
    /// How the paced phase sent its batches.
    paced: String,
    paced_p50: f64,
    paced_p99: f64,
}

/// The edge of a fresh instance whose stream threads run `thread_nice` nicer: first saturated,
/// then at a steady rate while the threads still work through what the first phase sent.
fn api_run(args: &BenchArgs, thread_nice: u8) -> Result<ApiRun> {
    let quick = args.quick;
    // Throughput: as many batches in flight as there are connections (a closed loop), so the
    // edge is saturated and its latency there is queueing. Latency: batches sent on a fixed
    // schedule at the target rate (an open loop), timed from when each was due, so a slow
    // answer also counts against the batches it delayed.
    let (batches, batch, concurrency) = if quick {
        (100usize, 500usize, 8usize)
    } else {
        (1_000, 1_000, 32)
    };
    let (paced_rate, paced_secs, paced_batch) = if quick {
        (20_000.0, 2.0, 500usize)
    } else {
        (150_000.0, 10.0, 1_000)
    };
    let dir = tempfile::tempdir()?;
    let mut i = instance_with(args, args.threads(), dir.path(), Guarantee::ExactlyOnce, |c| {
        c.processing.thread_nice = thread_nice;
    })?;
    i.config.api.addr = "127.0.0.1:0".into();
    i.config.api.rate_limit = 1_000_000;
    i.config.api.burst = 1_000_000;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let running = i.engine.start()?;
    let result = rt.block_on(async {
        let (keys, _) = crate::edge::keys(&i.config)?;
        let token = keys.mint("bench", fleetstream_api::Role::App, Duration::from_secs(3600))?;
        let edge = crate::edge::start(&i.config, &i.engine, i.stores.clone(), Arc::new(AtomicBool::new(true))).await?;
        let url = format!("http://{}/v1/gps", edge.addr);
        let client = reqwest::Client::new();
        let body = |b: usize, batch: usize| {
            let rows: Vec<serde_json::Value> = (0..batch).map(|k| serde_json::json!({"driver_id": format!("d{:05}", (b * batch + k) % 20_000), "lat": 52.5, "lng": 13.4, "event_id": format!("e{b}-{k}"), "ts": "2026-11-02T06:00:00Z"})).collect();
            bytes::Bytes::from(serde_json::to_vec(&rows).expect("JSON"))
        };
        let post = {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            move |body: bytes::Bytes| {
                let request = client.post(&url).bearer_auth(&token).header("content-type", "application/json").body(body);
                async move { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
            }
        };

        let bodies: Vec<bytes::Bytes> = (0..batches).map(|b| body(b, batch)).collect();
        let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for body in bodies {
            let (gate, post) = (gate.clone(), post.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire().await.expect("open");
                let t = Instant::now();
                (post(body).await, t.elapsed())
            });
        }
        let mut saturated = Vec::new();
        let mut failed = 0;
        while let Some(done) = tasks.join_next().await {
            let (status, took) = done?;
            failed += usize::from(status != 202);
            saturated.push(took);
        }
        let elapsed = started.elapsed();
        anyhow::ensure!(failed == 0, "{failed} batches were not accepted");
        saturated.sort();
        let saturated_p99 = saturated[(saturated.len() * 99 / 100).min(saturated.len() - 1)];

        let every = Duration::from_secs_f64(paced_batch as f64 / paced_rate);
        let count = (paced_secs * paced_rate / paced_batch as f64) as usize;
        let bodies: Vec<bytes::Bytes> = (0..count).map(|b| body(batches + b, paced_batch)).collect();
        let mut tasks = tokio::task::JoinSet::new();
        let start = tokio::time::Instant::now();
        for (n, body) in bodies.into_iter().enumerate() {
            let due = start + every * n as u32;
            tokio::time::sleep_until(due).await;
            let post = post.clone();
            tasks.spawn(async move { (post(body).await, due.elapsed()) });
        }
        let mut paced = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (status, took) = done?;
            failed += usize::from(status != 202);
            paced.push(took);
        }
        edge.stop().await;
        anyhow::ensure!(failed == 0, "{failed} paced batches were not accepted");
        paced.sort();
        let paced_p50 = paced[paced.len() / 2];
        let paced_p99 = paced[(paced.len() * 99 / 100).min(paced.len() - 1)];
        Ok::<_, anyhow::Error>((
            (batches * batch) as f64 / elapsed.as_secs_f64(),
            saturated_p99,
            paced_p50,
            paced_p99,
        ))
    });
    running.shutdown()?;
    let (rate, saturated_p99, paced_p50, paced_p99) = result?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(ApiRun {
        saturated: format!("{batch}-ping batches, {concurrency} connections"),
        rate,
        saturated_p99: ms(saturated_p99),
        paced: format!("{paced_batch}-ping batches at {} pings/s", paced_rate as u64),
        paced_p50: ms(paced_p50),
        paced_p99: ms(paced_p99),
    })
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn human(v: f64, unit: &str) -> String {
    match unit {
        "/s" if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        "/s" if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        "/s" => format!("{v:.0} /s"),
        other => format!("{v:.2} {other}"),
    }
}

/// A scenario: its figures, and what it leaves for the JSON report.
type Run = fn(&BenchArgs, &mut Extras) -> Result<Vec<Figure>>;

pub fn bench(args: &BenchArgs) -> Result<Vec<Figure>> {
    let all = args.scenario == Scenario::All;
    let mut figures = Vec::new();
    let mut extras = Extras::new();
    let runs: [(Scenario, Run); 7] = [
        (Scenario::GpsIngest, gps_ingest),
        (Scenario::Matching, matching),
        (Scenario::Settlement, settlement),
        (Scenario::Overtime, overtime),
        (Scenario::Restore, restore),
        (Scenario::Sql, sql),
        (Scenario::Api, api),
    ];
    for (scenario, run) in runs {
        if all || args.scenario == scenario {
            eprintln!("running {scenario:?}{}", if args.quick { " (quick)" } else { "" });
            figures.extend(run(args, &mut extras).with_context(|| format!("scenario {scenario:?}"))?);
        }
    }
    println!(
        "{:<12} {:<62} {:>14} {:>32} {:>7}  target",
        "scenario", "figure", "value", "limit", "ratio"
    );
    for f in &figures {
        let limit = f.limit.as_ref().map_or(String::new(), |l| {
            format!("{} {}", l.name, human(l.value, f.unit))
        });
        let ratio = f.ratio().map_or(String::new(), |r| format!("{:.0} %", r * 100.0));
        println!(
            "{:<12} {:<62} {:>14} {:>32} {:>7}  {}",
            f.scenario,
            f.name,
            human(f.value, f.unit),
            limit,
            ratio,
            f.target.unwrap_or("")
        );
    }
    if args.json {
        let mut json = serde_json::json!({
            "figures": figures,
            "quick": args.quick,
            "threads": args.threads(),
            "build": if cfg!(debug_assertions) { "debug" } else { "release" },
            "git": git_revision(),
            "config": args.config.as_ref().map(|p| p.display().to_string()),
            "machine": {"cpus": std::thread::available_parallelism().map_or(0, |n| n.get()), "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
        });
        json.as_object_mut().expect("an object").extend(extras);
        println!("{json}");
    }
    if cfg!(debug_assertions) {
        eprintln!("(a debug build: figures are not representative; build with --release)");
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<std::path::PathBuf>) -> BenchArgs {
        BenchArgs {
            scenario: Scenario::GpsIngest,
            quick: true,
            json: false,
            kafka: None,
            threads: Some(1),
            config,
        }
    }

    /// A busy thread's CPU is counted under its name's prefix, and only there.
    #[test]
    fn thread_cpu_is_read_by_name() {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinning = std::thread::Builder::new()
            .name("spin-for-test".into())
            .spawn({
                let done = done.clone();
                move || {
                    let mut x = 0u64;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
            })
            .unwrap();
        let started = Instant::now();
        while threads_cpu("spin-for") < Duration::from_millis(200) {
            assert!(started.elapsed() < Duration::from_secs(60), "no CPU counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        let spun = threads_cpu("spin-for");
        assert!(process_cpu() >= spun, "the process includes its threads");
        assert_eq!(threads_cpu("no-such-thread"), Duration::ZERO);
        let each = each_thread_cpu("spin-for");
        assert_eq!(each.len(), 1, "one thread of that name");
        assert!(each[0] >= spun, "its own time, which only grows");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        spinning.join().unwrap();
    }

    #[test]
    fn a_bench_runs_the_configuration_it_is_given_on_the_embedded_log() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bench.toml");
        std::fs::write(
            &file,
            "partitions = 3\n[kafka]\nbrokers = \"kafka:9092\"\n[kafka.properties]\n\"linger.ms\" = \"20\"\n[processing]\ncommit_interval = \"250ms\"\n",
        )
        .unwrap();
        let i = instance_with(
            &args(Some(file)),
            1,
            &dir.path().join("data"),
            Guarantee::AtLeastOnce,
            |_| {},
        )
        .unwrap();
        assert_eq!(i.config.partitions, 3);
        assert_eq!(i.config.processing.commit_interval, Duration::from_millis(250));
        assert_eq!(i.config.kafka.properties["linger.ms"], "20");
        assert!(
            i.config.kafka.brokers.is_empty(),
            "the bench picks the log, not the file"
        );
        assert_eq!(i.log.partitions("gps.pings").unwrap(), 3);

        let missing = dir.path().join("missing.toml");
        let error = instance_with(
            &args(Some(missing)),
            1,
            dir.path(),
            Guarantee::AtLeastOnce,
            |_| {},
        )
        .err()
        .expect("a missing file is an error");
        assert!(error.to_string().contains("missing.toml"), "{error}");
    }
}
