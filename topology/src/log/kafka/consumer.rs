//! Kafka consumers: group members whose rebalances open and close tasks, and manually assigned
//! readers (restore, replays, dumps).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::message::{Message as _, Timestamp};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::{KafkaLog, broker_error};
use crate::error::LogError;
use crate::log::{Consumer, Fetched, GroupHandle, Membership, RebalanceListener};
use crate::record::{LogRecord, TopicPartition};

/// Hands rebalances to the runtime's listener, and assigns from the positions it returns.
pub(super) struct GroupContext {
    listener: Mutex<Option<Box<dyn RebalanceListener>>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                warn!(facility = fac, "librdkafka: {message}")
            }
            _ => tracing::debug!(facility = fac, "librdkafka: {message}"),
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition() as u32))
        .collect()
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let tps = partitions(tpl);
        let mut listener = self.listener.lock();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                info!(partitions = tps.len(), "partitions assigned");
                let positions = listener.as_mut().map(|l| l.on_assigned(&tps)).unwrap_or_default();
                let mut assignment = TopicPartitionList::new();
                for tp in &tps {
                    let offset = positions
                        .iter()
                        .find(|(p, _)| p == tp)
                        .map_or(Offset::Stored, |(_, o)| Offset::Offset(*o as i64));
                    if let Err(e) = assignment.add_partition_offset(&tp.topic, tp.partition as i32, offset) {
                        warn!(error = %e, %tp, "assigning");
                    }
                }
                if let Err(e) = consumer.assign(&assignment) {
                    warn!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tps.len(), "partitions revoked");
                if let Some(l) = listener.as_mut() {
                    l.on_revoked(&tps);
                }
                if let Err(e) = consumer.unassign() {
                    warn!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error: giving up the assignment");
                if let Some(l) = listener.as_mut() {
                    l.on_revoked(&partitions(&consumer.assignment().unwrap_or_default()));
                }
                let _ = consumer.unassign();
            }
        }
    }
}

/// A group member, shared with the producer that commits its positions.
pub(super) struct GroupMember(pub(super) Arc<BaseConsumer<GroupContext>>);

pub(super) struct KafkaConsumer {
    consumer: Arc<BaseConsumer<GroupContext>>,
    group: bool,
}

impl KafkaConsumer {
    pub(super) fn new(log: &KafkaLog, membership: Membership) -> Result<KafkaConsumer, LogError> {
        let mut config = log.config();
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "false");
        let group = match &membership {
            Membership::Group { group, .. } => {
                config
                    .set("group.id", group)
                    .set("partition.assignment.strategy", "range");
                if !log.inner.options.properties.contains_key("session.timeout.ms") {
                    config
                        .set("session.timeout.ms", "10000")
                        .set("heartbeat.interval.ms", "2000");
                }
                true
            }
            Membership::Manual => {
                let id = format!(
                    "{}-reader-{}-{}",
                    log.inner.options.app_id,
                    std::process::id(),
                    unique()
                );
                config.set("group.id", id);
                false
            }
        };
        let context = GroupContext {
            listener: Mutex::new(None),
        };
        let consumer: BaseConsumer<GroupContext> =
            config.create_with_context(context).map_err(broker_error)?;
        Ok(KafkaConsumer {
            consumer: Arc::new(consumer),
            group,
        })
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // The listener holds the thread's tasks, whose producer holds this consumer: let go
        // of it so that the consumer is closed and leaves its group, instead of lingering
        // until the group gives up on it.
        let listener = self.consumer.context().listener.lock().take();
        drop(listener);
        if self.group {
            self.consumer.unsubscribe();
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn list(offsets: &[(TopicPartition, u64)]) -> Result<TopicPartitionList, LogError> {
    let mut tpl = TopicPartitionList::new();
    for (tp, offset) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*offset as i64))
            .map_err(broker_error)?;
    }
    Ok(tpl)
}

pub(super) fn commit_positions(
    consumer: &BaseConsumer<GroupContext>,
    offsets: &[(TopicPartition, u64)],
) -> Result<(), LogError> {
    if offsets.is_empty() {
        return Ok(());
    }
    consumer
        .commit(&list(offsets)?, CommitMode::Sync)
        .map_err(broker_error)
}

impl Consumer for KafkaConsumer {
    fn subscribe(&mut self, topics: &[String], listener: Box<dyn RebalanceListener>) -> Result<(), LogError> {
        if !self.group {
            return Err(LogError::Unsupported {
                feature: "subscribe on a manually assigned consumer".into(),
            });
        }
        *self.consumer.context().listener.lock() = Some(listener);
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics).map_err(broker_error)
    }

    fn assign(&mut self, positions: &[(TopicPartition, u64)]) -> Result<(), LogError> {
        self.consumer.assign(&list(positions)?).map_err(broker_error)
    }

    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<(), LogError> {
        self.consumer
            .seek(
                &tp.topic,
                tp.partition as i32,
                Offset::Offset(offset as i64),
                Duration::from_secs(10),
            )
            .map_err(broker_error)
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Fetched>, LogError> {
        let mut out: Vec<Fetched> = Vec::new();
        let mut count = 0;
        let mut wait = timeout;
        while count < max {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let message = match result {
                Ok(message) => message,
                Err(e) => match broker_error(e) {
                    // Connections come and go; librdkafka reconnects by itself.
                    LogError::Broker {
                        detail,
                        retriable: true,
                    } => {
                        warn!(error = %detail, "consumer error; carrying on");
                        break;
                    }
                    other => return Err(other),
                },
            };
            let tp = TopicPartition::new(message.topic(), message.partition() as u32);
            let ts = match message.timestamp() {
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
                Timestamp::NotAvailable => 0,
            };
            let record = LogRecord {
                offset: message.offset() as u64,
                ts,
                key: Bytes::copy_from_slice(message.key().unwrap_or_default()),
                value: message.payload().map(Bytes::copy_from_slice),
            };
            match out.last_mut() {
                Some(last) if last.tp == tp => last.records.push(record),
                _ => match out.iter_mut().find(|f| f.tp == tp) {
                    Some(f) => f.records.push(record),
                    None => out.push(Fetched {
                        tp,
                        records: vec![record],
                    }),
                },
            }
            count += 1;
        }
        if max == 0 {
            // Keep the group session alive while the caller works through its buffers.
            let _ = self.consumer.poll(Duration::ZERO).map(|r| r.map(|_| ()));
        }
        Ok(out)
    }

    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError> {
        commit_positions(&self.consumer, offsets)
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer
            .assignment()
            .map(|l| partitions(&l))
            .unwrap_or_default()
    }

    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        let positions = self.consumer.position().ok()?;
        positions
            .elements()
            .iter()
            .find(|e| e.topic() == tp.topic && e.partition() as u32 == tp.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            })
    }

    fn pause(&mut self, tps: &[TopicPartition]) {
        if let Ok(l) = list(&tps.iter().map(|tp| (tp.clone(), 0)).collect::<Vec<_>>()) {
            let _ = self.consumer.pause(&l);
        }
    }

    fn resume(&mut self, tps: &[TopicPartition]) {
        if let Ok(l) = list(&tps.iter().map(|tp| (tp.clone(), 0)).collect::<Vec<_>>()) {
            let _ = self.consumer.resume(&l);
        }
    }

    fn group_handle(&self) -> Option<GroupHandle> {
        self.group
            .then(|| Arc::new(GroupMember(self.consumer.clone())) as GroupHandle)
    }
}
