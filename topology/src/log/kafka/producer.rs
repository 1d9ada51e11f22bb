//! Kafka producers: transactional (exactly once) or idempotent (effectively once), reporting
//! the offset every record landed at.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::warn;

use super::consumer::{GroupMember, commit_positions};
use super::{KafkaLog, TIMEOUT, broker_error};
use crate::error::LogError;
use crate::log::{OffsetCommit, Producer};
use crate::record::ProducerRecord;

/// Collects where each record landed, by its index in the current commit.
#[derive(Default)]
pub(super) struct Deliveries {
    results: Mutex<Vec<Option<Result<u64, String>>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let outcome = match result {
            Ok(message) => Ok(message.offset() as u64),
            Err((e, _)) => Err(e.to_string()),
        };
        if let Some(slot) = self.results.lock().get_mut(index) {
            *slot = Some(outcome);
        }
    }
}

/// How long a producer waits to fill a batch, unless `[kafka.properties]` says otherwise.
const DEFAULT_LINGER_MS: &str = "2";

/// A producer's settings: what the guarantees need (idempotence, every replica's
/// acknowledgement, the transactional id) over the configured properties, and a short linger
/// where they set none.
fn producer_config(
    mut config: ClientConfig,
    properties: &BTreeMap<String, String>,
    transactional_id: Option<&str>,
) -> ClientConfig {
    config.set("enable.idempotence", "true").set("acks", "all");
    // librdkafka knows the linger under two names.
    if !properties.contains_key("linger.ms") && !properties.contains_key("queue.buffering.max.ms") {
        config.set("linger.ms", DEFAULT_LINGER_MS);
    }
    if let Some(id) = transactional_id {
        config
            .set("transactional.id", id)
            .set("transaction.timeout.ms", "60000");
    }
    config
}

pub(super) struct KafkaProducer {
    log: KafkaLog,
    producer: ThreadedProducer<Deliveries>,
    transactional: bool,
    in_transaction: bool,
    member: Option<Arc<GroupMember>>,
}

impl KafkaProducer {
    pub(super) fn new(
        log: KafkaLog,
        transactional_id: Option<&str>,
        member: Option<Arc<GroupMember>>,
    ) -> Result<Self, LogError> {
        let config = producer_config(log.config(), &log.inner.options.properties, transactional_id);
        let producer: ThreadedProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .map_err(broker_error)?;
        if transactional_id.is_some() {
            producer.init_transactions(TIMEOUT).map_err(broker_error)?;
        }
        Ok(KafkaProducer {
            log,
            producer,
            transactional: transactional_id.is_some(),
            in_transaction: false,
            member,
        })
    }

    /// Waits until every record sent has a delivery report; returns their offsets.
    fn collect(&self) -> Result<Vec<u64>, LogError> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            {
                let mut results = self.producer.context().results.lock();
                if results.iter().all(Option::is_some) {
                    let out = std::mem::take(&mut *results)
                        .into_iter()
                        .map(|r| {
                            r.expect("checked").map_err(|e| LogError::Broker {
                                detail: e,
                                retriable: true,
                            })
                        })
                        .collect();
                    return out;
                }
            }
            if Instant::now() > deadline {
                return Err(LogError::Broker {
                    detail: "records were not acknowledged in time".into(),
                    retriable: true,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn positions(offsets: &OffsetCommit) -> Result<TopicPartitionList, LogError> {
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &offsets.offsets {
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*offset as i64))
                .map_err(broker_error)?;
        }
        Ok(tpl)
    }
}

impl Producer for KafkaProducer {
    fn send(&mut self, record: ProducerRecord) -> Result<(), LogError> {
        if self.transactional && !self.in_transaction {
            self.producer.begin_transaction().map_err(broker_error)?;
            self.in_transaction = true;
        }
        let index = {
            let mut results = self.producer.context().results.lock();
            results.push(None);
            results.len() - 1
        };
        let mut base = BaseRecord::with_opaque_to(&record.topic, index)
            .partition(record.partition as i32)
            .key(record.key.as_ref())
            .timestamp(record.ts);
        if let Some(value) = record.value.as_deref() {
            base = base.payload(value);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(broker_error(e)),
            }
        }
    }

    fn commit(&mut self, offsets: Option<&OffsetCommit>) -> Result<Vec<u64>, LogError> {
        if self.transactional {
            if !self.in_transaction {
                self.producer.begin_transaction().map_err(broker_error)?;
                self.in_transaction = true;
            }
            if let Some(offsets) = offsets.filter(|o| !o.offsets.is_empty()) {
                let metadata = match &self.member {
                    Some(member) => member.0.group_metadata(),
                    None => None,
                };
                match metadata {
                    Some(metadata) => self
                        .producer
                        .send_offsets_to_transaction(&Self::positions(offsets)?, &metadata, TIMEOUT)
                        .map_err(broker_error)?,
                    None => warn!(
                        "a transactional commit without a group member: positions are in the changelog only"
                    ),
                }
            }
            let result = self.producer.commit_transaction(TIMEOUT).map_err(broker_error);
            self.in_transaction = false;
            result?;
            return self.collect();
        }
        self.producer.flush(TIMEOUT).map_err(broker_error)?;
        let assigned = self.collect()?;
        if let Some(offsets) = offsets.filter(|o| !o.offsets.is_empty()) {
            match &self.member {
                Some(member) => commit_positions(&member.0, &offsets.offsets)?,
                None => {
                    // A run outside the group (replays): commit as a simple consumer.
                    let mut config = self.log.config();
                    config
                        .set("group.id", &offsets.group)
                        .set("enable.auto.commit", "false");
                    let consumer: BaseConsumer = config.create().map_err(broker_error)?;
                    consumer
                        .commit(&Self::positions(offsets)?, rdkafka::consumer::CommitMode::Sync)
                        .map_err(broker_error)?;
                }
            }
        }
        Ok(assigned)
    }

    fn abort(&mut self) -> Result<(), LogError> {
        if self.transactional && self.in_transaction {
            self.in_transaction = false;
            self.producer.abort_transaction(TIMEOUT).map_err(broker_error)?;
        }
        self.producer.context().results.lock().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::ClientConfig;

    use super::{DEFAULT_LINGER_MS, producer_config};

    fn configured(properties: &[(&str, &str)], transactional_id: Option<&str>) -> ClientConfig {
        let properties: BTreeMap<String, String> = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut base = ClientConfig::new();
        for (k, v) in &properties {
            base.set(k, v);
        }
        producer_config(base, &properties, transactional_id)
    }

    #[test]
    fn a_configured_linger_is_kept_and_the_guarantees_are_not_negotiable() {
        let plain = configured(&[], None);
        assert_eq!(plain.get("linger.ms"), Some(DEFAULT_LINGER_MS));
        assert_eq!(plain.get("transactional.id"), None);
        let tuned = configured(
            &[
                ("linger.ms", "20"),
                ("acks", "1"),
                ("enable.idempotence", "false"),
            ],
            None,
        );
        assert_eq!(tuned.get("linger.ms"), Some("20"));
        assert_eq!(tuned.get("acks"), Some("all"));
        assert_eq!(tuned.get("enable.idempotence"), Some("true"));
        let aliased = configured(&[("queue.buffering.max.ms", "15")], Some("app-i-0"));
        assert_eq!(aliased.get("linger.ms"), None);
        assert_eq!(aliased.get("queue.buffering.max.ms"), Some("15"));
        assert_eq!(aliased.get("transactional.id"), Some("app-i-0"));
    }
}
