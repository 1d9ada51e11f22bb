//! The runtime end to end with the test driver and live engines: repartitioning, restore,
//! windows and grace, timers, dead letters, timestamp order, restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetstream_topology::log::embedded::{EmbeddedLog, EmbeddedOptions};
use fleetstream_topology::log::{Log, Membership};
use fleetstream_topology::store::memory::MemoryState;
use fleetstream_topology::store::rocks::RocksState;
use fleetstream_topology::window::TumblingWindows;
use fleetstream_topology::{
    Context, DecodeError, Engine, EngineConfig, ProcessError, Processor, ProducerRecord, Record, Timer,
    TopicPartition, TopologyBuilder, TopologyTestDriver, codec, partition_for,
};
use serde::{Deserialize, Serialize};

/// Counts records per key in a store and emits the running count.
#[derive(Clone)]
struct Counter {
    store: fleetstream_topology::store::KvStore<String, u64>,
}

impl Processor for Counter {
    type InKey = String;
    type InValue = String;
    type OutKey = String;
    type OutValue = u64;

    fn process(
        &mut self,
        ctx: &mut Context<'_, String, u64>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        let count = ctx.kv(&self.store).get(&record.key)?.unwrap_or(0) + 1;
        ctx.kv(&self.store).put(&record.key, &count);
        ctx.forward(Record::new(record.key, count, record.ts))
    }
}

fn text(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::new("$", "not UTF-8"))
}

fn u64_codec() -> codec::Codec<u64> {
    codec::postcard()
}

/// lines -> words (repartitioned by word) -> counts
fn word_count() -> (
    fleetstream_topology::Topology,
    fleetstream_topology::store::KvStore<String, u64>,
) {
    let builder = TopologyBuilder::new("wc");
    let counts = builder.kv_store("counts", codec::string(), u64_codec());
    let lines = builder
        .source::<String, String>("lines")
        .topic("lines", codec::string(), text)
        .build();
    let words = lines
        .flat_map(|r| {
            r.value
                .split_whitespace()
                .map(|w| Record::new(w.to_string(), w.to_string(), r.ts))
                .collect()
        })
        .repartition("words", codec::string(), codec::string());
    let store = counts.clone();
    words
        .process("count", move || Counter { store: store.clone() }, &[counts.id()])
        .map_values(|n| n.to_string())
        .to("word-counts", codec::string(), codec::string());
    (builder.build().unwrap(), counts)
}

#[test]
fn repartitioning_brings_each_key_to_one_task() {
    let (topology, counts) = word_count();
    let mut driver = TopologyTestDriver::new(topology, 4);
    driver.pipe("lines", "l1", "apple pear apple", 1_000);
    driver.pipe("lines", "l2", "pear fig", 2_000);
    driver.pipe("lines", "l3", "apple", 3_000);
    let out = driver.read_output("word-counts");
    let last: std::collections::BTreeMap<String, String> =
        out.iter().map(|o| (o.key_str(), o.value_str())).collect();
    assert_eq!(last["apple"], "3");
    assert_eq!(last["pear"], "2");
    assert_eq!(last["fig"], "1");
    // Every record of a word went through the internal topic partition of that word.
    for o in &out {
        assert_eq!(o.partition, partition_for(o.key_str().as_bytes(), 4));
    }
    let mut stored = driver.all(&counts);
    stored.sort();
    assert_eq!(
        stored,
        vec![("apple".into(), 3), ("fig".into(), 1), ("pear".into(), 2)]
    );
    let internal = driver
        .log()
        .topics()
        .into_iter()
        .find(|(t, _)| t == "wc-words")
        .expect("internal topic");
    assert_eq!(internal.1, 4);
}

#[test]
fn stores_are_restored_from_the_changelog_after_a_restart() {
    let (topology, counts) = word_count();
    let mut driver = TopologyTestDriver::new(topology, 3);
    for i in 0..50 {
        driver.pipe(
            "lines",
            format!("l{i}"),
            format!("w{} w{} shared", i % 7, i % 11),
            i * 10,
        );
    }
    let mut before = driver.all(&counts);
    before.sort();
    driver.restart_with_empty_disk();
    let mut after = driver.all(&counts);
    after.sort();
    assert_eq!(before, after, "state equal before and after a full restore");
    // And processing continues from the restored state.
    driver.read_output("word-counts");
    driver.pipe("lines", "more", "shared", 10_000);
    let out = driver.read_output("word-counts");
    assert_eq!(out.last().unwrap().value_str(), "51");
}

#[test]
fn a_crash_loses_only_uncommitted_work_and_reprocessing_restores_it() {
    let (topology, counts) = word_count();
    let mut driver = TopologyTestDriver::new(topology, 2);
    driver.pipe("lines", "a", "x y", 1);
    driver.commit();
    driver.pipe("lines", "b", "x", 2);
    driver.read_output("word-counts");
    driver.crash();
    // The state lost the uncommitted count, the log kept the record, and the reopened task
    // read it again from its committed position: counted exactly once.
    assert_eq!(driver.get(&counts, &"x".to_string()), Some(2));
    let again: Vec<String> = driver
        .read_output("word-counts")
        .iter()
        .map(|o| o.value_str())
        .collect();
    assert_eq!(
        again,
        vec!["2"],
        "the output is produced again, with the same content"
    );
    driver.pipe("lines", "c", "x", 3);
    assert_eq!(driver.get(&counts, &"x".to_string()), Some(3));
    assert_eq!(driver.get(&counts, &"y".to_string()), Some(1));
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Reading {
    sensor: String,
    value: i64,
    ts: i64,
}

fn decode_reading(bytes: &[u8]) -> Result<Reading, DecodeError> {
    let reading: Reading =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::new("$", format!("malformed JSON: {e}")))?;
    if reading.value < 0 {
        return Err(DecodeError::new(
            "value",
            format!("{} is negative", reading.value),
        ));
    }
    Ok(reading)
}

fn windowed_sum() -> fleetstream_topology::Topology {
    let builder = TopologyBuilder::new("win");
    let sums = builder.window_store("sums", codec::string(), codec::postcard::<i64>());
    builder
        .source::<String, Reading>("readings")
        .topic_with_time("readings", codec::string(), decode_reading, |r: &Reading| r.ts)
        .build()
        .windowed_aggregate(
            "sum",
            TumblingWindows::of(Duration::from_secs(10)),
            Duration::from_secs(5),
            &sums,
            || 0i64,
            |acc, r: &Reading| acc + r.value,
            "readings",
        )
        .map_values(|w| {
            format!(
                "{}:{}:{}",
                w.window.start,
                w.value,
                if w.is_final { "final" } else { "open" }
            )
        })
        .to("sums", codec::string(), codec::string());
    builder.build().unwrap()
}

fn reading(sensor: &str, value: i64, ts: i64) -> Reading {
    Reading {
        sensor: sensor.into(),
        value,
        ts,
    }
}

#[test]
fn windows_close_after_grace_and_late_records_go_to_the_dlq() {
    let mut driver = TopologyTestDriver::new(windowed_sum(), 2);
    driver.pipe_json("readings", "s1", &reading("s1", 5, 1_000), 1_000);
    driver.pipe_json("readings", "s1", &reading("s1", 7, 9_000), 9_000);
    // Another window: stream time 12 s; the first window [0, 10 s) is still open (grace 5 s).
    driver.pipe_json("readings", "s1", &reading("s1", 1, 12_000), 12_000);
    // A late record inside the grace period still counts.
    driver.pipe_json("readings", "s1", &reading("s1", 2, 8_000), 8_000);
    let open: Vec<String> = driver.read_output("sums").iter().map(|o| o.value_str()).collect();
    assert_eq!(open, vec!["0:5:open", "0:12:open", "10000:1:open", "0:14:open"]);
    // Stream time reaches 15 s: the first window closes with its final result.
    driver.pipe_json("readings", "s1", &reading("s1", 3, 15_000), 15_000);
    let out: Vec<String> = driver.read_output("sums").iter().map(|o| o.value_str()).collect();
    assert_eq!(out, vec!["0:14:final", "10000:4:open"]);
    // Now a record for the closed window is late beyond the grace: DLQ, with the reason.
    driver.pipe_json("readings", "s1", &reading("s1", 100, 3_000), 3_000);
    assert!(driver.read_output("sums").is_empty());
    let dlq = driver.read_dead_letters("readings");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["error"]["field"], "ts");
    assert!(
        dlq[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("late record"),
        "{}",
        dlq[0]
    );
    assert_eq!(dlq[0]["key"], "s1");
}

#[test]
fn malformed_json_and_schema_violations_go_to_the_dlq_and_the_task_goes_on() {
    let mut driver = TopologyTestDriver::new(windowed_sum(), 1);
    driver.pipe("readings", "s1", "{not json", 1_000);
    driver.pipe_json("readings", "s1", &reading("s1", -4, 1_000), 1_000);
    driver.pipe_json("readings", "s1", &reading("s1", 4, 1_000), 1_000);
    let dlq = driver.read_dead_letters("readings");
    assert_eq!(dlq.len(), 2);
    assert!(
        dlq[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );
    assert_eq!(dlq[0]["value"], "{not json");
    assert_eq!(dlq[0]["topic"], "readings");
    assert_eq!(dlq[0]["offset"], 0);
    assert_eq!(dlq[1]["error"]["field"], "value");
    assert!(dlq[1]["error"]["message"].as_str().unwrap().contains("negative"));
    assert_eq!(
        dlq[1]["value"]["value"], -4,
        "the original record is kept as JSON"
    );
    let sums: Vec<String> = driver.read_output("sums").iter().map(|o| o.value_str()).collect();
    assert_eq!(sums, vec!["0:4:open"]);
}

/// Emits "fired:<key>" when a timer fires, scheduled 1 s after each record.
#[derive(Clone)]
struct Reminder;

impl Processor for Reminder {
    type InKey = String;
    type InValue = String;
    type OutKey = String;
    type OutValue = String;

    fn init(&mut self, ctx: &mut Context<'_, String, String>) -> Result<(), ProcessError> {
        ctx.schedule_wall_clock(60_000);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut Context<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        ctx.schedule(record.ts + 1_000, record.key.as_bytes());
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, String, String>, timer: Timer) -> Result<(), ProcessError> {
        match timer {
            Timer::EventTime { at, key } => {
                let key = String::from_utf8_lossy(&key).into_owned();
                ctx.forward(Record::new(key.clone(), format!("fired:{key}@{at}"), at))
            }
            Timer::WallClock { now } => ctx.forward(Record::new(
                "wall".into(),
                format!("tick@{now}"),
                ctx.stream_time(),
            )),
        }
    }
}

fn reminders() -> fleetstream_topology::Topology {
    let builder = TopologyBuilder::new("rem");
    builder
        .source::<String, String>("in")
        .topic("pokes", codec::string(), text)
        .build()
        .process("remind", || Reminder, &[])
        .to("reminders", codec::string(), codec::string());
    builder.build().unwrap()
}

#[test]
fn event_time_timers_fire_in_order_and_survive_restarts() {
    let mut driver = TopologyTestDriver::new(reminders(), 2);
    driver.pipe("pokes", "a", "x", 1_000);
    driver.pipe("pokes", "b", "x", 1_500);
    assert!(driver.read_output("reminders").is_empty());
    driver.advance_time(2_200);
    let fired: Vec<String> = driver
        .read_output("reminders")
        .iter()
        .map(|o| o.value_str())
        .collect();
    assert_eq!(fired, vec!["fired:a@2000"]);
    assert_eq!(driver.pending_timers(), 1);
    // The pending timer is state: it survives losing the local disk.
    driver.restart_with_empty_disk();
    assert_eq!(driver.pending_timers(), 1);
    driver.advance_time(5_000);
    let fired: Vec<String> = driver
        .read_output("reminders")
        .iter()
        .map(|o| o.value_str())
        .collect();
    assert_eq!(fired, vec!["fired:b@2500"]);
}

#[test]
fn wall_clock_punctuation_follows_the_wall_clock() {
    let mut driver = TopologyTestDriver::new(reminders(), 1);
    driver.advance_wall_clock(59_000);
    assert!(driver.read_output("reminders").is_empty());
    driver.advance_wall_clock(1_000);
    let ticks: Vec<String> = driver
        .read_output("reminders")
        .iter()
        .map(|o| o.value_str())
        .collect();
    assert_eq!(ticks, vec!["tick@60000"]);
}

/// Records the event times it sees, in order.
#[derive(Clone)]
struct Recorder;

impl Processor for Recorder {
    type InKey = String;
    type InValue = String;
    type OutKey = String;
    type OutValue = String;

    fn process(
        &mut self,
        ctx: &mut Context<'_, String, String>,
        record: Record<String, String>,
    ) -> Result<(), ProcessError> {
        let value = format!("{}@{}", record.value, record.ts);
        ctx.forward(Record::new(record.key, value, record.ts))
    }
}

fn append(log: &EmbeddedLog, topic: &str, partition: u32, key: &str, value: &str, ts: i64) {
    log.append(vec![ProducerRecord {
        topic: topic.into(),
        partition,
        ts,
        key: key.to_string().into(),
        value: Some(value.to_string().into()),
    }])
    .unwrap();
}

/// A consumer of every partition of `topic`, from its start.
fn from_start(log: &EmbeddedLog, topic: &str) -> Box<dyn fleetstream_topology::log::Consumer> {
    let partitions = log.partitions(topic).unwrap();
    let mut consumer = log.consumer(Membership::Manual).unwrap();
    let tps: Vec<_> = (0..partitions)
        .map(|p| (TopicPartition::new(topic, p), 0))
        .collect();
    consumer.assign(&tps).unwrap();
    consumer
}

fn read_all(log: &EmbeddedLog, topic: &str) -> Vec<String> {
    let mut consumer = from_start(log, topic);
    let mut out = Vec::new();
    loop {
        let fetched = consumer.poll(1000, Duration::from_millis(20)).unwrap();
        if fetched.is_empty() {
            break;
        }
        for r in fetched.into_iter().flat_map(|f| f.records) {
            out.push(String::from_utf8_lossy(&r.value.unwrap()).into_owned());
        }
    }
    out
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_live_task_picks_the_earliest_record_among_its_input_partitions() {
    let builder = TopologyBuilder::new("merge");
    builder
        .source::<String, String>("both")
        .topic("left", codec::string(), text)
        .topic("right", codec::string(), text)
        .build()
        .process("record", || Recorder, &[])
        .to("seen", codec::string(), codec::string());
    let topology = builder.build().unwrap();
    let log = EmbeddedLog::in_memory();
    for topic in ["left", "right"] {
        log.ensure_topic(&fleetstream_topology::log::TopicSpec::new(topic, 1))
            .unwrap();
    }
    for (ts, v) in [(1, "l1"), (4, "l4"), (7, "l7")] {
        append(&log, "left", 0, "k", v, ts);
    }
    for (ts, v) in [(2, "r2"), (3, "r3"), (8, "r8")] {
        append(&log, "right", 0, "k", v, ts);
    }
    let config = EngineConfig {
        partitions: 1,
        ..EngineConfig::default()
    };
    let running = in_memory_engine(topology, &log, config).start().unwrap();
    wait_for(|| read_all(&log, "seen").len() == 6);
    running.shutdown().unwrap();
    assert_eq!(
        read_all(&log, "seen"),
        vec!["l1@1", "r2@2", "r3@3", "l4@4", "l7@7", "r8@8"]
    );
}

/// A live engine over `log` with its state in memory.
fn in_memory_engine(
    topology: fleetstream_topology::Topology,
    log: &EmbeddedLog,
    config: EngineConfig,
) -> Engine {
    Engine::new(
        topology,
        Arc::new(log.clone()),
        Arc::new(MemoryState::new()),
        config,
    )
    .unwrap()
}

/// The word count as a live engine over an embedded log and RocksDB state in `dir`, on two
/// partitions.
fn word_count_on_disk(dir: &std::path::Path, threads: u32) -> (EmbeddedLog, Engine) {
    let log = EmbeddedLog::open(dir.join("log"), EmbeddedOptions::default()).unwrap();
    let state = RocksState::open(dir.join("state")).unwrap();
    let (topology, _) = word_count();
    let config = EngineConfig {
        partitions: 2,
        threads,
        ..EngineConfig::default()
    };
    let engine = Engine::new(topology, Arc::new(log.clone()), Arc::new(state), config).unwrap();
    (log, engine)
}

#[test]
fn a_restarted_engine_continues_from_its_committed_positions_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let open = || word_count_on_disk(dir.path(), 2);
    {
        let (log, engine) = open();
        append(&log, "lines", 0, "a", "red green", 1);
        append(&log, "lines", 1, "b", "red", 2);
        let running = engine.start().unwrap();
        wait_for(|| read_all(&log, "word-counts").len() == 3);
        running.shutdown().unwrap();
    }
    let (log, engine) = open();
    append(&log, "lines", 0, "c", "red blue", 3);
    let running = engine.start().unwrap();
    wait_for(|| read_all(&log, "word-counts").len() == 5);
    // Give a wrongly restarted engine time to reprocess old records, then check it did not.
    std::thread::sleep(Duration::from_millis(300));
    running.shutdown().unwrap();
    let out = read_all(&log, "word-counts");
    assert_eq!(out.len(), 5, "old records were not processed again: {out:?}");
    let registry_engine = engine.clone();
    drop(registry_engine);
    // The count of "red" continued from the state before the restart.
    let last_red: Vec<&String> = out.iter().filter(|v| v.as_str() == "3").collect();
    assert_eq!(last_red.len(), 1);
}

/// Reads `n` records of `topic` from its start as (key, value), waiting for them to appear.
fn read_n(log: &EmbeddedLog, topic: &str, n: usize) -> Vec<(String, String)> {
    let mut consumer = from_start(log, topic);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "timed out with {} of {n}", out.len());
        for r in consumer
            .poll(10_000, Duration::from_millis(50))
            .unwrap()
            .into_iter()
            .flat_map(|f| f.records)
        {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            out.push((text(&r.key), text(&r.value.unwrap())));
        }
    }
    out
}

/// A store rebuilt from a changelog long enough that restore loads it in bulk (sorted table
/// files ingested into RocksDB) holds every key with its last value: counting goes on from it.
#[test]
fn a_store_rebuilt_in_bulk_from_its_changelog_holds_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let open = || word_count_on_disk(dir.path(), 1);
    let words: Vec<String> = (0..48_000).map(|i| format!("w{i:05}")).collect();
    let send_all = |log: &EmbeddedLog, round: i64| {
        for (n, line) in words.chunks(500).enumerate() {
            append(
                log,
                "lines",
                n as u32 % 2,
                &format!("l{n}"),
                &line.join(" "),
                round * 1_000 + n as i64,
            );
        }
    };
    {
        let (log, engine) = open();
        // Every word twice: each store partition's changelog ends with about 24,000 counts.
        send_all(&log, 1);
        send_all(&log, 2);
        let running = engine.start().unwrap();
        read_n(&log, "word-counts", 2 * words.len());
        running.shutdown().unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (log, engine) = open();
    send_all(&log, 3);
    let running = engine.start().unwrap();
    let out = read_n(&log, "word-counts", 3 * words.len());
    running.shutdown().unwrap();
    let last: std::collections::BTreeMap<&str, &str> =
        out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(last.len(), words.len());
    let wrong: Vec<_> = last.iter().filter(|(_, v)| **v != "3").take(5).collect();
    assert!(
        wrong.is_empty(),
        "counts did not go on from the restored state: {wrong:?}"
    );
    let loaded = std::fs::read_dir(dir.path().join("state/loading")).map_or(0, |d| d.count());
    assert_eq!(loaded, 0, "no table file is left behind");
}

/// The nice values of this process's threads named `stream-*`, from /proc.
fn stream_thread_nices() -> Vec<i32> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        if name.starts_with("stream-") {
            nices.push(nice_of(&stat));
        }
    }
    nices
}

/// The nice value in a /proc stat line (its 19th field; the 2nd, the name, may hold spaces).
fn nice_of(stat: &str) -> i32 {
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(16).unwrap().parse().unwrap()
}

#[test]
fn stream_threads_run_as_much_nicer_as_configured() {
    let base = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let lowered = (base + 4).min(19);
    // Other tests' stream threads share this process, at the base priority.
    let ours = || {
        stream_thread_nices()
            .into_iter()
            .filter(|n| *n == lowered)
            .count()
    };
    let before = ours();
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedOptions::default()).unwrap();
    let (topology, _) = word_count();
    let config = EngineConfig {
        partitions: 2,
        threads: 2,
        thread_nice: 4,
        ..EngineConfig::default()
    };
    let running = in_memory_engine(topology, &log, config).start().unwrap();
    append(&log, "lines", 0, "a", "red green", 1);
    wait_for(|| read_all(&log, "word-counts").len() == 2);
    let during = ours();
    running.shutdown().unwrap();
    assert_eq!(
        during - before,
        2,
        "both stream threads run at nice {lowered} (base {base})"
    );
    assert_eq!(
        base,
        nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
    );
}
