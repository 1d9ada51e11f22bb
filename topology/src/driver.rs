//! A deterministic topology test driver: pipe timestamped records in, move time, read what
//! came out and what the stores hold. It runs the real runtime (tasks, stores, changelogs,
//! commits) on an in-memory log and in-memory state, processing each record through every
//! sub-topology before the next (see `runtime::lockstep`).
//!
//! ```
//! use fleetstream_topology::{codec, TopologyBuilder, TopologyTestDriver};
//!
//! let builder = TopologyBuilder::new("demo");
//! builder
//!     .source::<String, String>("in")
//!     .topic("words", codec::string(), |b: &[u8]| Ok(String::from_utf8_lossy(b).into_owned()))
//!     .build()
//!     .map_values(|w| w.len().to_string())
//!     .to("lengths", codec::string(), codec::string());
//! let mut driver = TopologyTestDriver::new(builder.build().unwrap(), 2);
//! driver.pipe("words", "k", "hello", 1_000);
//! let out = driver.read_output("lengths");
//! assert_eq!(out[0].value_str(), "5");
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log::embedded::EmbeddedLog;
use crate::log::{Log, Membership};
use crate::record::{EventTime, ProducerRecord, TopicPartition, partition_for};
use crate::runtime::{Clock, Engine, EngineConfig, Lockstep};
use crate::store::memory::MemoryState;
use crate::store::{KvStore, StoreBackend, WindowStore};
use crate::topology::Topology;

/// An output record as the driver shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub topic: String,
    pub partition: u32,
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub ts: EventTime,
}

impl Output {
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    pub fn value_str(&self) -> String {
        self.value
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        self.value
            .as_ref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn parse<T: DeserializeOwned>(&self) -> T {
        let bytes = self.value.as_ref().expect("a value");
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", self.topic, self.value_str()))
    }
}

/// Drives a topology deterministically.
pub struct TopologyTestDriver {
    engine: Engine,
    log: EmbeddedLog,
    state: Arc<MemoryState>,
    lockstep: Option<Lockstep>,
    clock: Arc<AtomicI64>,
    outputs: Vec<Output>,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").finish()
    }
}

impl TopologyTestDriver {
    /// A driver with every topic at `partitions` partitions.
    pub fn new(topology: Topology, partitions: u32) -> Self {
        let log = EmbeddedLog::in_memory();
        let state = Arc::new(MemoryState::new());
        let clock = Arc::new(AtomicI64::new(0));
        let config = EngineConfig {
            partitions,
            ..EngineConfig::default()
        };
        let engine = Engine::with_clock(
            topology,
            Arc::new(log.clone()),
            state.clone(),
            config,
            Clock::Manual(clock.clone()),
        )
        .unwrap_or_else(|e| panic!("the topology does not start: {e}"));
        let lockstep = engine
            .lockstep()
            .unwrap_or_else(|e| panic!("tasks do not open: {e}"));
        TopologyTestDriver {
            engine,
            log,
            state,
            lockstep: Some(lockstep),
            clock,
            outputs: Vec::new(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn lockstep(&mut self) -> &mut Lockstep {
        self.lockstep.as_mut().expect("the driver is running")
    }

    /// Appends a record to `topic` (partitioned by key) and processes it fully.
    pub fn pipe(&mut self, topic: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, ts: EventTime) {
        self.pipe_raw(topic, key.as_ref(), Some(value.as_ref()), ts);
    }

    /// Pipes a value serialized as JSON.
    pub fn pipe_json<T: Serialize>(&mut self, topic: &str, key: &str, value: &T, ts: EventTime) {
        let bytes = serde_json::to_vec(value).expect("serializable");
        self.pipe_raw(topic, key.as_bytes(), Some(&bytes), ts);
    }

    /// Pipes records that arrive at the same moment: each is handled by its first task before
    /// any of their consequences propagate (see `Lockstep::process_concurrently`).
    pub fn pipe_concurrently(&mut self, records: &[(&str, &str, Vec<u8>, EventTime)]) {
        let mut batch = Vec::new();
        for (topic, key, value, ts) in records {
            let partitions = self
                .engine
                .partitions_of(topic)
                .unwrap_or_else(|| panic!("unknown topic {topic}"));
            let partition = partition_for(key.as_bytes(), partitions);
            let record = ProducerRecord {
                topic: (*topic).into(),
                partition,
                ts: *ts,
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Some(Bytes::copy_from_slice(value)),
            };
            let offset = self.log.append(vec![record]).expect("append")[0];
            let tp = TopicPartition::new(*topic, partition);
            batch.push((tp.clone(), self.log_record(&tp, offset)));
        }
        self.lockstep()
            .process_concurrently(&batch)
            .unwrap_or_else(|e| panic!("processing failed: {e}"));
        self.collect();
    }

    pub fn pipe_raw(&mut self, topic: &str, key: &[u8], value: Option<&[u8]>, ts: EventTime) {
        let partitions = self
            .engine
            .partitions_of(topic)
            .unwrap_or_else(|| panic!("unknown topic {topic}"));
        let partition = partition_for(key, partitions);
        let offsets = self
            .log
            .append(vec![ProducerRecord {
                topic: topic.into(),
                partition,
                ts,
                key: Bytes::copy_from_slice(key),
                value: value.map(Bytes::copy_from_slice),
            }])
            .expect("append to the in-memory log");
        let tp = TopicPartition::new(topic, partition);
        let record = self.log_record(&tp, offsets[0]);
        self.lockstep()
            .process(&tp, &record)
            .unwrap_or_else(|e| panic!("processing failed: {e}"));
        self.collect();
    }

    fn log_record(&self, tp: &TopicPartition, offset: u64) -> crate::record::LogRecord {
        let mut consumer = self.log.consumer(Membership::Manual).expect("consumer");
        consumer.assign(&[(tp.clone(), offset)]).expect("assign");
        let fetched = consumer
            .poll(1, std::time::Duration::from_millis(100))
            .expect("poll");
        fetched
            .into_iter()
            .flat_map(|f| f.records)
            .next()
            .expect("the record just appended")
    }

    /// Moves stream time forward, firing due timers.
    pub fn advance_time(&mut self, ts: EventTime) {
        self.lockstep()
            .advance_time(ts)
            .unwrap_or_else(|e| panic!("advancing time failed: {e}"));
        self.collect();
    }

    /// Moves the wall clock forward by `ms`, running due punctuations.
    pub fn advance_wall_clock(&mut self, ms: i64) {
        let now = self.clock.fetch_add(ms, Ordering::Relaxed) + ms;
        self.lockstep()
            .advance_wall_clock(now)
            .unwrap_or_else(|e| panic!("punctuation failed: {e}"));
        self.collect();
    }

    fn collect(&mut self) {
        for r in self.lockstep().take_outputs() {
            self.outputs.push(Output {
                topic: r.topic.to_string(),
                partition: r.partition,
                key: r.key,
                value: r.value,
                ts: r.ts,
            });
        }
    }

    /// The records written to `topic` since it was last read, in production order.
    pub fn read_output(&mut self, topic: &str) -> Vec<Output> {
        let (taken, kept): (Vec<Output>, Vec<Output>) =
            self.outputs.drain(..).partition(|o| o.topic == topic);
        self.outputs = kept;
        taken
    }

    /// The DLQ records of `topic` since last read, as JSON.
    pub fn read_dead_letters(&mut self, topic: &str) -> Vec<serde_json::Value> {
        self.read_output(&format!("{topic}.dlq"))
            .iter()
            .map(Output::json)
            .collect()
    }

    /// Commits, so that stores show everything processed so far.
    pub fn commit(&mut self) {
        self.lockstep()
            .commit()
            .unwrap_or_else(|e| panic!("commit failed: {e}"));
    }

    fn backend(&mut self, store: &str, partition: u32) -> Arc<dyn StoreBackend> {
        self.commit();
        self.engine
            .registry()
            .get(store, partition)
            .unwrap_or_else(|| panic!("store {store} partition {partition}"))
    }

    /// Reads a key-value store (after committing), looking in the partition of the key.
    pub fn get<K, V>(&mut self, store: &KvStore<K, V>, key: &K) -> Option<V> {
        let partitions = self.engine.registry().partitions(store.name()).len() as u32;
        let partition = partition_for(&store.encode_key(key), partitions);
        let backend = self.backend(store.name(), partition);
        store.read(&*backend, key).expect("store read")
    }

    /// Every entry of a key-value store across partitions (after committing).
    pub fn all<K, V>(&mut self, store: &KvStore<K, V>) -> Vec<(K, V)> {
        self.commit();
        let mut out = Vec::new();
        for (_, backend) in self.engine.registry().partitions(store.name()) {
            store
                .scan_committed(&*backend, &[], &mut |k, v| {
                    out.push((k, v));
                    true
                })
                .expect("store scan");
        }
        out
    }

    /// Every window of a window store across partitions (after committing).
    pub fn windows<K, V>(&mut self, store: &WindowStore<K, V>) -> Vec<(K, i64, V)> {
        self.commit();
        let mut out = Vec::new();
        for (_, backend) in self.engine.registry().partitions(store.name()) {
            store
                .scan_committed(&*backend, &mut |k, s, v| {
                    out.push((k, s, v));
                    true
                })
                .expect("window scan");
        }
        out
    }

    /// Commits, closes every task and opens them again (local state kept, like a restart).
    pub fn restart(&mut self) {
        self.lockstep
            .take()
            .expect("running")
            .close()
            .unwrap_or_else(|e| panic!("close failed: {e}"));
        self.lockstep = Some(
            self.engine
                .lockstep()
                .unwrap_or_else(|e| panic!("reopen failed: {e}")),
        );
    }

    /// Like [`TopologyTestDriver::restart`], but the local state is lost too, so every store
    /// is restored from its changelog.
    pub fn restart_with_empty_disk(&mut self) {
        self.lockstep
            .take()
            .expect("running")
            .close()
            .unwrap_or_else(|e| panic!("close failed: {e}"));
        self.state.wipe();
        self.lockstep = Some(
            self.engine
                .lockstep()
                .unwrap_or_else(|e| panic!("reopen failed: {e}")),
        );
    }

    /// Drops everything since the last commit, as a crash would, reopens the tasks and lets
    /// them process again what their committed positions have not covered (partition by
    /// partition, in offset order).
    pub fn crash(&mut self) {
        self.lockstep.take().expect("running").abandon();
        self.lockstep = Some(
            self.engine
                .lockstep()
                .unwrap_or_else(|e| panic!("reopen failed: {e}")),
        );
        for topic in self.engine.topology().source_topics() {
            let partitions = self.engine.partitions_of(&topic).unwrap_or(1);
            for partition in 0..partitions {
                let tp = TopicPartition::new(topic.clone(), partition);
                self.lockstep()
                    .process_available(&tp)
                    .unwrap_or_else(|e| panic!("reprocessing failed: {e}"));
            }
        }
        self.collect();
    }

    /// The in-memory log, for inspecting topics directly.
    pub fn log(&self) -> &EmbeddedLog {
        &self.log
    }

    /// Pending event-time timers across all tasks.
    pub fn pending_timers(&self) -> usize {
        self.lockstep.as_ref().map_or(0, |l| l.pending_timers())
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        if let Some(lockstep) = self.lockstep.take() {
            lockstep.abandon();
        }
    }
}
