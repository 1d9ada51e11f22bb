//! The Kafka log, on librdkafka (`rdkafka`): Kafka's consumer-group protocol is the
//! distributed engine — partitions the group assigns to a stream thread become its tasks.
//!
//! - **Exactly once with transactions**: each stream thread has one transactional producer;
//!   a commit sends the task positions with `send_offsets_to_transaction` and commits, so
//!   outputs, changelog writes and positions become visible together; consumers read
//!   committed records only.
//! - **Effectively once without them**: on a broker that offers no transactions (detected at
//!   start with a probe transaction, and logged), a commit flushes outputs and changelog
//!   writes through an idempotent producer, then commits the group positions. The positions
//!   that count are those in the task's changelog commit marker, written last: a task restores
//!   its state and its positions together, writes of a commit cut short are never applied,
//!   and records produced again after a crash carry the same ids, which every consumer drops.

mod consumer;
mod producer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use self::consumer::KafkaConsumer;
use self::producer::KafkaProducer;
use super::{Consumer, GroupHandle, Log, Membership, Producer, TopicSpec};
use crate::error::LogError;
use crate::record::TopicPartition;

const TIMEOUT: Duration = Duration::from_secs(15);

/// Whether to use Kafka transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transactions {
    /// Use them if the broker offers them, otherwise run effectively-once (and say so).
    Auto,
    /// Refuse to start without them.
    Required,
    /// Never use them.
    Off,
}

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Replication factor of topics fleetstream creates.
    pub replication_factor: i32,
    pub transactions: Transactions,
    /// Names the probe transaction and throwaway groups.
    pub app_id: String,
    /// Extra librdkafka properties for every client.
    pub properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    pub fn new(brokers: &str, app_id: &str) -> Self {
        KafkaOptions {
            brokers: brokers.to_string(),
            replication_factor: 1,
            transactions: Transactions::Auto,
            app_id: app_id.to_string(),
            properties: BTreeMap::new(),
        }
    }
}

pub(crate) fn broker_error(e: KafkaError) -> LogError {
    let retriable = match &e {
        KafkaError::Transaction(err) => err.is_retriable(),
        other => !matches!(
            other.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::UnsupportedVersion
            )
        ),
    };
    if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::UnsupportedFeature)) {
        return LogError::Unsupported {
            feature: e.to_string(),
        };
    }
    if matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
    ) {
        return LogError::Fenced;
    }
    LogError::Broker {
        detail: e.to_string(),
        retriable,
    }
}

struct Inner {
    options: KafkaOptions,
    admin: AdminClient<DefaultClientContext>,
    /// For metadata and watermarks; in no group.
    meta: BaseConsumer,
    transactions: bool,
    /// Throwaway consumers per group, to read committed positions.
    committed: Mutex<BTreeMap<String, Arc<BaseConsumer>>>,
}

/// A Kafka cluster as a [`Log`]. Cheap to clone.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.options.brokers)
            .finish()
    }
}

impl KafkaLog {
    /// Connects, checks the cluster answers, and finds out whether it offers transactions.
    pub fn connect(options: KafkaOptions) -> Result<KafkaLog, LogError> {
        let base = base_config(&options);
        let admin: AdminClient<DefaultClientContext> = base.create().map_err(broker_error)?;
        let mut meta_config = base.clone();
        meta_config
            .set("group.id", format!("{}-metadata", options.app_id))
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false");
        let meta: BaseConsumer = meta_config.create().map_err(broker_error)?;
        meta.fetch_metadata(None, TIMEOUT).map_err(|e| LogError::Broker {
            detail: format!("cannot reach Kafka at {}: {e}", options.brokers),
            retriable: true,
        })?;
        let mut log = KafkaLog {
            inner: Arc::new(Inner {
                options,
                admin,
                meta,
                transactions: false,
                committed: Mutex::new(BTreeMap::new()),
            }),
        };
        let transactions = match log.inner.options.transactions {
            Transactions::Off => false,
            mode => match log.probe_transactions() {
                Ok(()) => true,
                Err(e) if mode == Transactions::Required => {
                    return Err(LogError::Unsupported {
                        feature: format!("transactions ({e})"),
                    });
                }
                Err(e) => {
                    warn!(
                        brokers = %log.inner.options.brokers,
                        error = %e,
                        "the broker offers no transactions: running effectively-once (positions kept with state, \
                         deterministic record ids, idempotent consumers) instead of exactly-once"
                    );
                    false
                }
            },
        };
        Arc::get_mut(&mut log.inner).expect("not shared yet").transactions = transactions;
        info!(brokers = %log.inner.options.brokers, transactions, "connected to Kafka");
        Ok(log)
    }

    /// Commits one transaction with one record; fails where the broker lacks transactions.
    fn probe_transactions(&self) -> Result<(), LogError> {
        let topic = format!("{}-transaction-probe", self.inner.options.app_id);
        self.ensure_topic(&TopicSpec::new(&topic, 1))?;
        let mut config = base_config(&self.inner.options);
        config.set("transactional.id", format!("{topic}-{}", std::process::id()));
        let producer: rdkafka::producer::BaseProducer = config.create().map_err(broker_error)?;
        producer.init_transactions(TIMEOUT).map_err(broker_error)?;
        producer.begin_transaction().map_err(broker_error)?;
        producer
            .send(
                rdkafka::producer::BaseRecord::to(&topic)
                    .key("probe")
                    .payload("probe")
                    .partition(0),
            )
            .map_err(|(e, _)| broker_error(e))?;
        producer.commit_transaction(TIMEOUT).map_err(broker_error)
    }

    /// Whether commits use Kafka transactions.
    pub fn transactions(&self) -> bool {
        self.inner.transactions
    }

    pub(crate) fn config(&self) -> ClientConfig {
        base_config(&self.inner.options)
    }

    fn committed_consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut cache = self.inner.committed.lock();
        if let Some(c) = cache.get(group) {
            return Ok(c.clone());
        }
        let mut config = self.config();
        config.set("group.id", group).set("enable.auto.commit", "false");
        let consumer: Arc<BaseConsumer> = Arc::new(config.create().map_err(broker_error)?);
        cache.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// Every topic of the cluster with its partition count.
    pub fn topics(&self) -> Result<Vec<(String, u32)>, LogError> {
        let metadata = self
            .inner
            .meta
            .fetch_metadata(None, TIMEOUT)
            .map_err(broker_error)?;
        let mut topics: Vec<(String, u32)> = metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len() as u32))
            .collect();
        topics.sort();
        Ok(topics)
    }

    fn watermarks(&self, tp: &TopicPartition) -> Result<(u64, u64), LogError> {
        let (low, high) = self
            .inner
            .meta
            .fetch_watermarks(&tp.topic, tp.partition as i32, TIMEOUT)
            .map_err(broker_error)?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }
}

fn base_config(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.brokers)
        .set("client.id", format!("fleetstream-{}", options.app_id));
    for (k, v) in &options.properties {
        config.set(k, v);
    }
    config
}

impl Log for KafkaLog {
    fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        match self.partitions(&spec.name) {
            Ok(actual) if actual == spec.partitions => return Ok(()),
            Ok(actual) => {
                return Err(LogError::PartitionMismatch {
                    topic: spec.name.clone(),
                    expected: spec.partitions,
                    actual,
                });
            }
            Err(LogError::UnknownTopic { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions as i32,
            TopicReplication::Fixed(self.inner.options.replication_factor),
        );
        if spec.compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let results = futures::executor::block_on(self.inner.admin.create_topics([&topic], &options))
            .map_err(broker_error)?;
        for result in results {
            if let Err((name, code)) = result
                && code != RDKafkaErrorCode::TopicAlreadyExists
            {
                return Err(LogError::Broker {
                    detail: format!("creating topic {name}: {code}"),
                    retriable: false,
                });
            }
        }
        // Wait until the cluster's metadata shows the topic with its partitions.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.partitions(&spec.name) {
                Ok(actual) if actual == spec.partitions => return Ok(()),
                Ok(actual) => {
                    return Err(LogError::PartitionMismatch {
                        topic: spec.name.clone(),
                        expected: spec.partitions,
                        actual,
                    });
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(e),
            }
        }
    }

    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let metadata = self
            .inner
            .meta
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(broker_error)?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as u32),
            _ => Err(LogError::UnknownTopic {
                topic: topic.to_string(),
            }),
        }
    }

    fn producer(
        &self,
        transactional_id: Option<&str>,
        group: Option<GroupHandle>,
    ) -> Result<Box<dyn Producer>, LogError> {
        let transactional = match transactional_id {
            Some(id) if self.inner.transactions => Some(id),
            _ => None,
        };
        let member = group.and_then(|g| g.downcast::<consumer::GroupMember>().ok());
        Ok(Box::new(KafkaProducer::new(self.clone(), transactional, member)?))
    }

    fn consumer(&self, membership: Membership) -> Result<Box<dyn Consumer>, LogError> {
        Ok(Box::new(KafkaConsumer::new(self, membership)?))
    }

    fn end_offset(&self, tp: &TopicPartition) -> Result<u64, LogError> {
        Ok(self.watermarks(tp)?.1)
    }

    fn start_offset(&self, tp: &TopicPartition) -> Result<u64, LogError> {
        Ok(self.watermarks(tp)?.0)
    }

    fn committed(&self, group: &str, tp: &TopicPartition) -> Result<Option<u64>, LogError> {
        let consumer = self.committed_consumer(group)?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&tp.topic, tp.partition as i32);
        let committed = consumer.committed_offsets(list, TIMEOUT).map_err(broker_error)?;
        Ok(committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o as u64),
            _ => None,
        }))
    }

    fn supports_transactions(&self) -> bool {
        self.inner.transactions
    }

    fn is_distributed(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let mode = if self.inner.transactions {
            "exactly-once with transactions"
        } else {
            "effectively-once"
        };
        format!("Kafka at {} ({mode})", self.inner.options.brokers)
    }
}
