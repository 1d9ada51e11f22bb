//! The embedded log: in-process, durable on local disk, one machine.
//!
//! Layout under the log directory:
//! ```text
//! journal                          one entry per commit (see journal.rs)
//! topics/<topic>/topic.json        partition count, compaction
//! topics/<topic>/<partition>/*.seg append-only segment files (see segment.rs)
//! ```
//! A commit appends its records to their partitions, flushes them, then appends one journal
//! entry with the new partition ends and the consumer positions; only then do readers see the
//! records. After a crash, partitions are cut back to what the journal names, so a commit is
//! all or nothing. Readers are in the same process and are woken when a commit lands.
//!
//! With no directory ([`EmbeddedLog::in_memory`]) the same code keeps everything in memory, for
//! tests and replays.

mod journal;
mod segment;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

use self::journal::{Journal, JournalState};
use self::segment::{PartitionOptions, PartitionStore};
use super::{
    Consumer, Fetched, GroupHandle, Log, Membership, OffsetCommit, Producer, RebalanceListener, TopicSpec,
    range_assignment,
};
use crate::error::LogError;
use crate::record::{ProducerRecord, TopicPartition, same_topic};

/// Tuning of the embedded log.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// `fsync` the journal and segments at every commit (survives power loss, costs latency).
    pub fsync: bool,
    /// Roll to a new segment file past this size.
    pub segment_bytes: u64,
    /// Newest bytes per partition served from memory.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            fsync: false,
            segment_bytes: 64 << 20,
            cache_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
    compacted: bool,
}

struct TopicData {
    compacted: bool,
    partitions: Vec<Mutex<PartitionStore>>,
}

struct CommitState {
    journal: Option<Journal>,
    state: JournalState,
    /// Set after an I/O failure mid-commit: the on-disk state is only repaired by reopening.
    poisoned: bool,
}

struct Inner {
    dir: Option<PathBuf>,
    options: EmbeddedOptions,
    topics: RwLock<HashMap<String, Arc<TopicData>>>,
    commit: Mutex<CommitState>,
    /// Bumped at every commit; consumers wait on it.
    generation: Mutex<u64>,
    landed: Condvar,
}

/// The embedded log. Cheap to clone; clones share the same topics.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl EmbeddedLog {
    /// A log that lives in memory only.
    pub fn in_memory() -> Self {
        EmbeddedLog::build(None, EmbeddedOptions::default(), None, JournalState::default())
    }

    /// Opens (or creates) a log in `dir`, recovering to the last complete commit.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("topics")).map_err(|e| LogError::io(dir.display(), e))?;
        let (journal, state) = Journal::open(&dir, options.fsync)?;
        let log = EmbeddedLog::build(Some(dir.clone()), options, Some(journal), state);
        let topics_dir = dir.join("topics");
        for entry in fs::read_dir(&topics_dir).map_err(|e| LogError::io(topics_dir.display(), e))? {
            let entry = entry.map_err(|e| LogError::io(topics_dir.display(), e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let meta_path = entry.path().join("topic.json");
            let Ok(text) = fs::read_to_string(&meta_path) else {
                continue;
            };
            let meta: TopicMeta = serde_json::from_str(&text).map_err(|e| LogError::Corrupt {
                path: meta_path.display().to_string(),
                position: 0,
                detail: e.to_string(),
            })?;
            log.load_topic(&name, meta)?;
        }
        Ok(log)
    }

    fn build(
        dir: Option<PathBuf>,
        options: EmbeddedOptions,
        journal: Option<Journal>,
        state: JournalState,
    ) -> Self {
        EmbeddedLog {
            inner: Arc::new(Inner {
                dir,
                options,
                topics: RwLock::new(HashMap::new()),
                commit: Mutex::new(CommitState {
                    journal,
                    state,
                    poisoned: false,
                }),
                generation: Mutex::new(0),
                landed: Condvar::new(),
            }),
        }
    }

    fn partition_options(&self) -> PartitionOptions {
        let cache_bytes = if self.inner.dir.is_some() {
            self.inner.options.cache_bytes
        } else {
            usize::MAX
        };
        PartitionOptions {
            segment_bytes: self.inner.options.segment_bytes,
            cache_bytes,
        }
    }

    fn load_topic(&self, name: &str, meta: TopicMeta) -> Result<(), LogError> {
        let dir = self.topic_dir(name).expect("loading happens on disk");
        let commit = self.inner.commit.lock();
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            let end = commit
                .state
                .ends
                .get(&TopicPartition::new(name, p))
                .copied()
                .unwrap_or(0);
            let store = PartitionStore::open(&dir.join(p.to_string()), self.partition_options(), end)?;
            partitions.push(Mutex::new(store));
        }
        drop(commit);
        self.inner.topics.write().insert(
            name.to_string(),
            Arc::new(TopicData {
                compacted: meta.compacted,
                partitions,
            }),
        );
        Ok(())
    }

    fn topic_dir(&self, name: &str) -> Option<PathBuf> {
        self.inner.dir.as_ref().map(|d| d.join("topics").join(name))
    }

    fn topic(&self, name: &str) -> Result<Arc<TopicData>, LogError> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// Names and partition counts of all topics.
    pub fn topics(&self) -> Vec<(String, u32)> {
        let mut list: Vec<_> = self
            .inner
            .topics
            .read()
            .iter()
            .map(|(n, t)| (n.clone(), t.partitions.len() as u32))
            .collect();
        list.sort();
        list
    }

    /// Bytes stored for a topic (all partitions).
    pub fn topic_size_bytes(&self, topic: &str) -> Result<u64, LogError> {
        Ok(self
            .topic(topic)?
            .partitions
            .iter()
            .map(|p| p.lock().size_bytes())
            .sum())
    }

    /// Whether the topic keeps only the latest record per key.
    pub fn is_compacted(&self, topic: &str) -> Result<bool, LogError> {
        Ok(self.topic(topic)?.compacted)
    }

    /// Deletes whole segments below `offset` (retention).
    pub fn truncate_before(&self, tp: &TopicPartition, offset: u64) -> Result<(), LogError> {
        let topic = self.topic(&tp.topic)?;
        let partition = topic
            .partitions
            .get(tp.partition as usize)
            .ok_or_else(|| unknown_partition(tp))?;
        partition.lock().truncate_before(offset)
    }

    /// Appends and commits in one step (producers outside a topology: the API, replays).
    pub fn append(&self, mut records: Vec<ProducerRecord>) -> Result<Vec<u64>, LogError> {
        self.commit(&mut records, None)
    }

    /// Appends `records` (leaving the vector empty, its capacity kept for the next batch) and
    /// commits them with `offsets`.
    fn commit(
        &self,
        records: &mut Vec<ProducerRecord>,
        offsets: Option<&OffsetCommit>,
    ) -> Result<Vec<u64>, LogError> {
        let mut commit = self.inner.commit.lock();
        if commit.poisoned {
            records.clear();
            return Err(LogError::Closed);
        }
        let result = self.commit_locked(&mut commit, records, offsets);
        records.clear();
        if result.is_err() {
            commit.poisoned = true;
        }
        drop(commit);
        let mut generation = self.inner.generation.lock();
        *generation += 1;
        self.inner.landed.notify_all();
        result
    }

    fn commit_locked(
        &self,
        commit: &mut CommitState,
        records: &mut Vec<ProducerRecord>,
        offsets: Option<&OffsetCommit>,
    ) -> Result<Vec<u64>, LogError> {
        let mut assigned = Vec::with_capacity(records.len());
        // The topics of this batch, each looked up once: a batch names only a handful, and
        // records of one topic mostly follow each other (and share their name's allocation).
        let mut batch_topics: Vec<(Arc<str>, Arc<TopicData>)> = Vec::new();
        let mut last = 0;
        let mut touched: BTreeSet<(usize, u32)> = BTreeSet::new();
        for record in records.drain(..) {
            let index = if batch_topics
                .get(last)
                .is_some_and(|(name, _)| same_topic(name, &record.topic))
            {
                last
            } else if let Some(index) = batch_topics
                .iter()
                .position(|(name, _)| same_topic(name, &record.topic))
            {
                index
            } else {
                let topic = self
                    .inner
                    .topics
                    .read()
                    .get(&*record.topic)
                    .cloned()
                    .ok_or_else(|| LogError::UnknownTopic {
                        topic: record.topic.to_string(),
                    })?;
                batch_topics.push((record.topic.clone(), topic));
                batch_topics.len() - 1
            };
            last = index;
            let partition = batch_topics[index]
                .1
                .partitions
                .get(record.partition as usize)
                .ok_or_else(|| unknown_partition(&TopicPartition::new(&*record.topic, record.partition)))?;
            assigned.push(partition.lock().append(record.ts, record.key, record.value)?);
            touched.insert((index, record.partition));
        }
        let touched: Vec<(TopicPartition, Arc<TopicData>)> = touched
            .into_iter()
            .map(|(i, p)| {
                (
                    TopicPartition::new(&*batch_topics[i].0, p),
                    batch_topics[i].1.clone(),
                )
            })
            .collect();
        let mut ends = Vec::with_capacity(touched.len());
        for (tp, topic) in &touched {
            let mut partition = topic.partitions[tp.partition as usize].lock();
            if self.inner.options.fsync {
                partition.sync()?
            } else {
                partition.flush()?
            }
            ends.push((tp.topic.clone(), tp.partition, partition.end()));
        }
        let mut groups = Vec::new();
        if let Some(offsets) = offsets {
            for (tp, offset) in &offsets.offsets {
                groups.push((offsets.group.clone(), tp.topic.clone(), tp.partition, *offset));
            }
        }
        for (topic, partition, end) in &ends {
            commit
                .state
                .ends
                .insert(TopicPartition::new(topic.clone(), *partition), *end);
        }
        for (group, topic, partition, offset) in &groups {
            commit.state.groups.insert(
                (group.clone(), TopicPartition::new(topic.clone(), *partition)),
                *offset,
            );
        }
        if let Some(journal) = commit.journal.as_mut() {
            journal.append(ends, groups, &commit.state)?;
        }
        for (tp, topic) in &touched {
            topic.partitions[tp.partition as usize].lock().publish();
        }
        Ok(assigned)
    }

    fn read(
        &self,
        tp: &TopicPartition,
        from: u64,
        max: usize,
    ) -> Result<Vec<crate::record::LogRecord>, LogError> {
        let topic = self.topic(&tp.topic)?;
        let partition = topic
            .partitions
            .get(tp.partition as usize)
            .ok_or_else(|| unknown_partition(tp))?;
        partition.lock().read(from, max)
    }

    fn generation(&self) -> u64 {
        *self.inner.generation.lock()
    }

    fn wait_for_commit(&self, seen: u64, deadline: Instant) {
        let mut generation = self.inner.generation.lock();
        while *generation == seen {
            if self
                .inner
                .landed
                .wait_until(&mut generation, deadline)
                .timed_out()
            {
                return;
            }
        }
    }
}

fn unknown_partition(tp: &TopicPartition) -> LogError {
    LogError::UnknownPartition {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

impl Log for EmbeddedLog {
    fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        let mut topics = self.inner.topics.write();
        if let Some(existing) = topics.get(&spec.name) {
            let actual = existing.partitions.len() as u32;
            if actual != spec.partitions {
                return Err(LogError::PartitionMismatch {
                    topic: spec.name.clone(),
                    expected: spec.partitions,
                    actual,
                });
            }
            return Ok(());
        }
        let mut partitions = Vec::with_capacity(spec.partitions as usize);
        if let Some(dir) = self.topic_dir(&spec.name) {
            fs::create_dir_all(&dir).map_err(|e| LogError::io(dir.display(), e))?;
            for p in 0..spec.partitions {
                partitions.push(Mutex::new(PartitionStore::open(
                    &dir.join(p.to_string()),
                    self.partition_options(),
                    0,
                )?));
            }
            let meta = serde_json::to_string(&TopicMeta {
                partitions: spec.partitions,
                compacted: spec.compacted,
            })
            .expect("topic metadata encodes");
            let tmp = dir.join("topic.json.tmp");
            fs::write(&tmp, meta).map_err(|e| LogError::io(tmp.display(), e))?;
            fs::rename(&tmp, dir.join("topic.json")).map_err(|e| LogError::io(dir.display(), e))?;
        } else {
            for _ in 0..spec.partitions {
                partitions.push(Mutex::new(PartitionStore::in_memory(self.partition_options())));
            }
        }
        topics.insert(
            spec.name.clone(),
            Arc::new(TopicData {
                compacted: spec.compacted,
                partitions,
            }),
        );
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    fn producer(
        &self,
        _transactional_id: Option<&str>,
        _group: Option<GroupHandle>,
    ) -> Result<Box<dyn Producer>, LogError> {
        Ok(Box::new(EmbeddedProducer {
            log: self.clone(),
            pending: Vec::new(),
        }))
    }

    fn consumer(&self, membership: Membership) -> Result<Box<dyn Consumer>, LogError> {
        Ok(Box::new(EmbeddedConsumer {
            log: self.clone(),
            membership,
            positions: BTreeMap::new(),
            paused: HashSet::new(),
            cursor: 0,
        }))
    }

    fn end_offset(&self, tp: &TopicPartition) -> Result<u64, LogError> {
        let topic = self.topic(&tp.topic)?;
        let partition = topic
            .partitions
            .get(tp.partition as usize)
            .ok_or_else(|| unknown_partition(tp))?;
        Ok(partition.lock().committed())
    }

    fn start_offset(&self, tp: &TopicPartition) -> Result<u64, LogError> {
        let topic = self.topic(&tp.topic)?;
        let partition = topic
            .partitions
            .get(tp.partition as usize)
            .ok_or_else(|| unknown_partition(tp))?;
        Ok(partition.lock().start())
    }

    fn committed(&self, group: &str, tp: &TopicPartition) -> Result<Option<u64>, LogError> {
        Ok(self
            .inner
            .commit
            .lock()
            .state
            .groups
            .get(&(group.to_string(), tp.clone()))
            .copied())
    }

    fn supports_transactions(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        match &self.inner.dir {
            Some(dir) => format!("embedded log at {}", dir.display()),
            None => "in-memory log".to_string(),
        }
    }
}

struct EmbeddedProducer {
    log: EmbeddedLog,
    pending: Vec<ProducerRecord>,
}

impl Producer for EmbeddedProducer {
    fn send(&mut self, record: ProducerRecord) -> Result<(), LogError> {
        self.pending.push(record);
        Ok(())
    }

    fn commit(&mut self, offsets: Option<&OffsetCommit>) -> Result<Vec<u64>, LogError> {
        if self.pending.is_empty() && offsets.is_none_or(|o| o.offsets.is_empty()) {
            return Ok(Vec::new());
        }
        self.log.commit(&mut self.pending, offsets)
    }

    fn abort(&mut self) -> Result<(), LogError> {
        self.pending.clear();
        Ok(())
    }
}

struct EmbeddedConsumer {
    log: EmbeddedLog,
    membership: Membership,
    positions: BTreeMap<TopicPartition, u64>,
    paused: HashSet<TopicPartition>,
    /// Where the next poll starts, so that no partition starves the others.
    cursor: usize,
}

impl Consumer for EmbeddedConsumer {
    fn subscribe(
        &mut self,
        topics: &[String],
        mut listener: Box<dyn RebalanceListener>,
    ) -> Result<(), LogError> {
        let Membership::Group {
            group,
            member,
            members,
        } = &self.membership
        else {
            return Err(LogError::Unsupported {
                feature: "subscribe on a manually assigned consumer".into(),
            });
        };
        let mut assigned = Vec::new();
        for topic in topics {
            let partitions = self.log.partitions(topic)?;
            for p in range_assignment(partitions, *member, *members) {
                let tp = TopicPartition::new(topic.clone(), p);
                let start = self.log.committed(group, &tp)?.unwrap_or(0);
                self.positions.insert(tp.clone(), start);
                assigned.push(tp);
            }
        }
        for (tp, offset) in listener.on_assigned(&assigned) {
            if let Some(position) = self.positions.get_mut(&tp) {
                *position = offset;
            }
        }
        Ok(())
    }

    fn assign(&mut self, positions: &[(TopicPartition, u64)]) -> Result<(), LogError> {
        self.positions = positions.iter().cloned().collect();
        self.paused.retain(|tp| self.positions.contains_key(tp));
        Ok(())
    }

    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<(), LogError> {
        match self.positions.get_mut(tp) {
            Some(position) => {
                *position = offset;
                Ok(())
            }
            None => Err(unknown_partition(tp)),
        }
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Fetched>, LogError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.log.generation();
            let mut out = Vec::new();
            let mut budget = max;
            let keys: Vec<TopicPartition> = self.positions.keys().cloned().collect();
            let n = keys.len();
            for i in 0..n {
                if budget == 0 {
                    break;
                }
                let tp = &keys[(self.cursor + i) % n];
                if self.paused.contains(tp) {
                    continue;
                }
                let position = self.positions[tp];
                let records = self.log.read(tp, position, budget)?;
                if let Some(last) = records.last() {
                    self.positions.insert(tp.clone(), last.offset + 1);
                    budget -= records.len();
                    out.push(Fetched {
                        tp: tp.clone(),
                        records,
                    });
                }
            }
            if n > 0 {
                self.cursor = (self.cursor + 1) % n;
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            self.log.wait_for_commit(seen, deadline);
        }
    }

    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError> {
        let Membership::Group { group, .. } = &self.membership else {
            return Err(LogError::Unsupported {
                feature: "committing without a group".into(),
            });
        };
        let commit = OffsetCommit {
            group: group.clone(),
            offsets: offsets.to_vec(),
        };
        self.log.commit(&mut Vec::new(), Some(&commit)).map(|_| ())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.positions.get(tp).copied()
    }

    fn pause(&mut self, tps: &[TopicPartition]) {
        self.paused.extend(tps.iter().cloned());
    }

    fn resume(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.paused.remove(tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rec(topic: &str, partition: u32, value: &str) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            partition,
            ts: 1,
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
        }
    }

    fn values(consumer: &mut Box<dyn Consumer>) -> Vec<String> {
        let mut out = Vec::new();
        for fetched in consumer.poll(100, Duration::from_millis(10)).unwrap() {
            for r in fetched.records {
                out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        out
    }

    #[test]
    fn uncommitted_records_are_invisible_and_commits_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
        log.ensure_topic(&TopicSpec::new("a", 2)).unwrap();
        let mut producer = log.producer(None, None).unwrap();
        producer.send(rec("a", 0, "x")).unwrap();
        producer.send(rec("a", 1, "y")).unwrap();
        let mut consumer = log.consumer(Membership::Manual).unwrap();
        consumer
            .assign(&[(TopicPartition::new("a", 0), 0), (TopicPartition::new("a", 1), 0)])
            .unwrap();
        assert!(values(&mut consumer).is_empty());
        let offsets = OffsetCommit {
            group: "g".into(),
            offsets: vec![(TopicPartition::new("in", 0), 7)],
        };
        assert_eq!(producer.commit(Some(&offsets)).unwrap(), vec![0, 0]);
        let mut seen = values(&mut consumer);
        seen.sort();
        assert_eq!(seen, vec!["x", "y"]);
        assert_eq!(
            log.committed("g", &TopicPartition::new("in", 0)).unwrap(),
            Some(7)
        );
    }

    #[test]
    fn a_commit_of_interleaved_topics_places_each_record_in_its_own() {
        let log = EmbeddedLog::in_memory();
        log.ensure_topic(&TopicSpec::new("a", 1)).unwrap();
        log.ensure_topic(&TopicSpec::new("b", 2)).unwrap();
        // Names shared by pointer, and equal names in allocations of their own.
        let a: Arc<str> = "a".into();
        let mut batch = Vec::new();
        for (i, (topic, partition)) in [
            (a.clone(), 0),
            ("b".into(), 1),
            (a.clone(), 0),
            ("a".into(), 0),
            ("b".into(), 0),
            ("b".into(), 1),
        ]
        .into_iter()
        .enumerate()
        {
            batch.push(ProducerRecord {
                topic,
                partition,
                ts: 1,
                key: Bytes::from_static(b"k"),
                value: Some(Bytes::from(i.to_string())),
            });
        }
        assert_eq!(log.append(batch).unwrap(), vec![0, 0, 1, 2, 0, 1]);
        let read = |topic: &str, partition: u32| -> Vec<String> {
            log.read(&TopicPartition::new(topic, partition), 0, 10)
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect()
        };
        assert_eq!(read("a", 0), ["0", "2", "3"]);
        assert_eq!(read("b", 0), ["4"]);
        assert_eq!(read("b", 1), ["1", "5"]);
        let err = log.append(vec![rec("c", 0, "x")]).unwrap_err();
        assert!(matches!(err, LogError::UnknownTopic { .. }), "{err}");
    }

    #[test]
    fn reopen_recovers_committed_records_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(
                dir.path(),
                EmbeddedOptions {
                    segment_bytes: 200,
                    ..Default::default()
                },
            )
            .unwrap();
            log.ensure_topic(&TopicSpec::new("a", 1)).unwrap();
            for i in 0..50 {
                log.append(vec![rec("a", 0, &format!("v{i}"))]).unwrap();
            }
            let mut consumer = log
                .consumer(Membership::Group {
                    group: "g".into(),
                    member: 0,
                    members: 1,
                })
                .unwrap();
            consumer.commit(&[(TopicPartition::new("a", 0), 42)]).unwrap();
        }
        let log = EmbeddedLog::open(
            dir.path(),
            EmbeddedOptions {
                segment_bytes: 200,
                ..Default::default()
            },
        )
        .unwrap();
        let tp = TopicPartition::new("a", 0);
        assert_eq!(log.end_offset(&tp).unwrap(), 50);
        assert_eq!(log.committed("g", &tp).unwrap(), Some(42));
        let records = log.read(&tp, 40, 100).unwrap();
        assert_eq!(records.len(), 10);
        assert_eq!(records[0].offset, 40);
        assert_eq!(records[0].value.as_deref(), Some(&b"v40"[..]));
        // Appending after reopen continues the offsets.
        assert_eq!(log.append(vec![rec("a", 0, "v50")]).unwrap(), vec![50]);
        assert_eq!(log.read(&tp, 49, 10).unwrap().len(), 2);
    }

    #[test]
    fn torn_tail_beyond_the_journal_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
            log.ensure_topic(&TopicSpec::new("a", 1)).unwrap();
            log.append(vec![rec("a", 0, "kept")]).unwrap();
        }
        // A crash after writing a frame but before its journal entry: append a frame by hand.
        let segment = dir.path().join("topics/a/0/00000000000000000000.seg");
        let frame = segment::encode_frame(&crate::record::LogRecord {
            offset: 1,
            ts: 1,
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::from_static(b"lost")),
        });
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&frame);
        bytes.extend_from_slice(&[1, 2, 3]);
        fs::write(&segment, bytes).unwrap();
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let tp = TopicPartition::new("a", 0);
        assert_eq!(log.end_offset(&tp).unwrap(), 1);
        assert_eq!(log.append(vec![rec("a", 0, "next")]).unwrap(), vec![1]);
        let values: Vec<_> = log
            .read(&tp, 0, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.value.unwrap())
            .collect();
        assert_eq!(
            values,
            vec![Bytes::from_static(b"kept"), Bytes::from_static(b"next")]
        );
    }

    #[test]
    fn partition_count_mismatch_is_reported() {
        let log = EmbeddedLog::in_memory();
        log.ensure_topic(&TopicSpec::new("a", 2)).unwrap();
        let err = log.ensure_topic(&TopicSpec::new("a", 3)).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::PartitionMismatch {
                    expected: 3,
                    actual: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cache_eviction_falls_back_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            cache_bytes: 256,
            segment_bytes: 1024,
            fsync: false,
        };
        let log = EmbeddedLog::open(dir.path(), options).unwrap();
        log.ensure_topic(&TopicSpec::new("a", 1)).unwrap();
        for i in 0..200 {
            log.append(vec![rec("a", 0, &format!("value-{i}"))]).unwrap();
        }
        let tp = TopicPartition::new("a", 0);
        let all = log.read(&tp, 0, 1000).unwrap();
        assert_eq!(all.len(), 200);
        assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as u64));
        let mid = log.read(&tp, 117, 5).unwrap();
        assert_eq!(mid[0].value.as_deref(), Some(&b"value-117"[..]));
    }
}
