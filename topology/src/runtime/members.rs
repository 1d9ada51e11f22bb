//! Who runs what. Every stream thread announces, every two seconds and after each rebalance,
//! the partitions it owns and the address its instance answers queries on, on the compacted
//! `<app_id>-members` topic; every instance reads it back. The API uses this map to forward a
//! query to the instance owning a key, and the stream threads use it to notice partitions
//! the group left without an owner (see `live.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Clock;
use crate::error::LogError;
use crate::log::{Log, Membership, Producer};
use crate::record::{ProducerRecord, TopicPartition};

/// How often members announce themselves.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// An announcement older than this is taken as the member being gone.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// One stream thread of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub instance_id: String,
    pub thread: u32,
    /// Where the instance's API answers (for forwarding queries).
    pub url: Option<String>,
    pub partitions: Vec<(String, u32)>,
    /// Wall-clock time of the announcement (ms).
    pub at: i64,
}

/// The members of the application as last announced.
pub struct Members {
    topic: String,
    instance_id: String,
    url: Option<String>,
    clock: Clock,
    map: RwLock<BTreeMap<String, MemberInfo>>,
    producer: Mutex<Option<Box<dyn Producer>>>,
    reading: AtomicBool,
    /// Announce on the topic (a shared log); otherwise the map is this process's only.
    publish: bool,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").field("topic", &self.topic).finish()
    }
}

impl Members {
    pub(crate) fn new(
        topic: String,
        instance_id: String,
        url: Option<String>,
        clock: Clock,
        publish: bool,
    ) -> Self {
        Members {
            topic,
            instance_id,
            url,
            clock,
            map: RwLock::new(BTreeMap::new()),
            producer: Mutex::new(None),
            reading: AtomicBool::new(false),
            publish,
        }
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// This instance's advertised API address.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The members whose last announcement is recent.
    pub fn live(&self) -> Vec<MemberInfo> {
        let now = self.clock.now();
        self.map
            .read()
            .values()
            .filter(|m| now - m.at <= FRESH_FOR.as_millis() as i64)
            .cloned()
            .collect()
    }

    /// The live member that owns a partition.
    pub fn owner(&self, topic: &str, partition: u32) -> Option<MemberInfo> {
        self.live()
            .into_iter()
            .find(|m| m.partitions.iter().any(|(t, p)| t == topic && *p == partition))
    }

    /// The partitions some live member owns.
    pub fn covered(&self) -> BTreeSet<TopicPartition> {
        self.live()
            .into_iter()
            .flat_map(|m| m.partitions.into_iter().map(|(t, p)| TopicPartition::new(t, p)))
            .collect()
    }

    /// Publishes what a stream thread owns now.
    pub(crate) fn announce(
        &self,
        log: &dyn Log,
        thread: u32,
        partitions: &[TopicPartition],
    ) -> Result<(), LogError> {
        let info = MemberInfo {
            instance_id: self.instance_id.clone(),
            thread,
            url: self.url.clone(),
            partitions: partitions
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect(),
            at: self.clock.now(),
        };
        let key = format!("{}/{thread}", self.instance_id);
        self.map.write().insert(key.clone(), info.clone());
        if !self.publish {
            return Ok(());
        }
        let mut producer = self.producer.lock();
        if producer.is_none() {
            *producer = Some(log.producer(None, None)?);
        }
        let producer = producer.as_mut().expect("created");
        producer.send(ProducerRecord {
            topic: self.topic.as_str().into(),
            partition: 0,
            ts: info.at,
            key: Bytes::from(key),
            value: Some(Bytes::from(
                serde_json::to_vec(&info).expect("member info encodes"),
            )),
        })?;
        producer.commit(None).map(|_| ())
    }

    /// Withdraws a stream thread that stops cleanly.
    pub(crate) fn leave(&self, thread: u32) -> Result<(), LogError> {
        let key = format!("{}/{thread}", self.instance_id);
        self.map.write().remove(&key);
        if !self.publish {
            return Ok(());
        }
        let mut producer = self.producer.lock();
        let Some(producer) = producer.as_mut() else {
            return Ok(());
        };
        producer.send(ProducerRecord {
            topic: self.topic.as_str().into(),
            partition: 0,
            ts: self.clock.now(),
            key: Bytes::from(key),
            value: None,
        })?;
        producer.commit(None).map(|_| ())
    }

    /// Reads announcements on a background thread until `stop` (once per engine).
    pub(crate) fn follow(self: &Arc<Self>, log: Arc<dyn Log>, stop: Arc<AtomicBool>) {
        if !self.publish || self.reading.swap(true, Ordering::SeqCst) {
            return;
        }
        let members = self.clone();
        let spawned = std::thread::Builder::new().name("members".into()).spawn(move || {
            let tp = TopicPartition::new(members.topic.clone(), 0);
            let mut consumer = match log.consumer(Membership::Manual) {
                Ok(c) => c,
                Err(e) => return warn!(error = %e, "cannot read the members topic"),
            };
            let from = log.start_offset(&tp).unwrap_or(0);
            if let Err(e) = consumer.assign(&[(tp, from)]) {
                return warn!(error = %e, "cannot read the members topic");
            }
            while !stop.load(Ordering::SeqCst) {
                match consumer.poll(1000, Duration::from_millis(500)) {
                    Ok(fetched) => {
                        for record in fetched.into_iter().flat_map(|f| f.records) {
                            let key = String::from_utf8_lossy(&record.key).into_owned();
                            match record.value.as_deref().map(serde_json::from_slice::<MemberInfo>) {
                                Some(Ok(info)) => {
                                    let mut map = members.map.write();
                                    if map.get(&key).is_none_or(|old| old.at <= info.at) {
                                        map.insert(key, info);
                                    }
                                }
                                _ => {
                                    members.map.write().remove(&key);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "reading the members topic");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            members.reading.store(false, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the members reader");
            self.reading.store(false, Ordering::SeqCst);
        }
    }
}
