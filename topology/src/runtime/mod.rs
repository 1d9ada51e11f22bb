//! Running a topology: the engine prepares topics and owns what tasks share; a live run spreads
//! tasks over stream threads; a lockstep run processes records one by one in a given order,
//! deterministically, for replays and the test driver.

mod live;
mod lockstep;
pub mod members;
mod tasks;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use thiserror::Error;
use tracing::info;

pub use self::live::{RunningEngine, ShutdownHandle};
pub use self::lockstep::Lockstep;
pub use self::members::{MemberInfo, Members};
use crate::error::{LogError, ProcessError, StoreError, TopologyError};
use crate::log::{Log, TopicSpec};
use crate::store::{StateFactory, StateRegistry};
use crate::topology::Topology;

/// What a run failed on.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("stream thread {thread} stopped: {detail}")]
    Thread { thread: u32, detail: String },
}

/// Processing guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs, state and positions commit together (transactions where the log has them,
    /// otherwise positions kept with the state and deterministic output ids).
    ExactlyOnce,
    /// Faster; after a crash some records are processed again.
    AtLeastOnce,
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Partitions of the topics the engine creates.
    pub partitions: u32,
    /// Stream threads in this instance.
    pub threads: u32,
    pub guarantee: Guarantee,
    /// Longest time between commits; a thread with nothing to read commits at once.
    pub commit_interval: Duration,
    /// How long a thread that has processed everything a short poll brought waits for more
    /// before it commits: each hop through a topic waits for a commit, so this bounds the
    /// latency a hop adds under light and steady load, while commits still batch under heavy
    /// load (full polls commit every `commit_interval`).
    pub commit_linger: Duration,
    /// How often a task writes a local checkpoint (always on a clean close).
    pub checkpoint_interval: Duration,
    /// Records fetched per poll.
    pub poll_records: usize,
    /// How much nicer (0-19, Linux's nice scale) the stream threads run than the rest of the
    /// process, so that what shares it (the edge API, queries, sinks) keeps answering while
    /// the threads work through a backlog; 0 leaves them as they start.
    pub thread_nice: u8,
    /// Create missing input topics (embedded runs) instead of failing.
    pub create_source_topics: bool,
    /// Names this instance among the group's members (transactional ids, instance map).
    pub instance_id: String,
    /// Where this instance's API answers, announced to the other members for forwarding.
    pub advertised_url: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            partitions: 4,
            threads: 1,
            guarantee: Guarantee::ExactlyOnce,
            commit_interval: Duration::from_millis(100),
            commit_linger: Duration::from_micros(500),
            checkpoint_interval: Duration::from_secs(5),
            poll_records: 2000,
            thread_nice: 0,
            create_source_topics: true,
            instance_id: "local".to_string(),
            advertised_url: None,
        }
    }
}

/// The wall clock tasks see: the system's, or one the test driver moves.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// What every task of an engine shares.
pub(crate) struct Shared {
    pub(crate) topology: Arc<Topology>,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) state: Arc<dyn StateFactory>,
    pub(crate) registry: Arc<StateRegistry>,
    pub(crate) partitions: Arc<HashMap<String, u32>>,
    pub(crate) config: EngineConfig,
    pub(crate) clock: Clock,
    pub(crate) members: Arc<Members>,
}

/// A topology bound to a log and a state directory, with its topics in place.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("app_id", &self.shared.topology.app_id())
            .finish()
    }
}

impl Engine {
    /// Creates or checks every topic the topology needs.
    pub fn new(
        topology: Topology,
        log: Arc<dyn Log>,
        state: Arc<dyn StateFactory>,
        config: EngineConfig,
    ) -> Result<Engine, RuntimeError> {
        Engine::with_clock(topology, log, state, config, Clock::System)
    }

    pub fn with_clock(
        topology: Topology,
        log: Arc<dyn Log>,
        state: Arc<dyn StateFactory>,
        config: EngineConfig,
        clock: Clock,
    ) -> Result<Engine, RuntimeError> {
        let partitions = prepare_topics(&topology, &*log, &config)?;
        let members_topic = format!("{}-members", topology.app_id());
        if log.is_distributed() {
            log.ensure_topic(&TopicSpec::new(&members_topic, 1).compacted())?;
        }
        let members = Arc::new(Members::new(
            members_topic,
            config.instance_id.clone(),
            config.advertised_url.clone(),
            clock.clone(),
            log.is_distributed(),
        ));
        info!(
            app_id = topology.app_id(),
            log = %log.describe(),
            state = %state.describe(),
            subtopologies = topology.subtopologies().len(),
            "engine ready"
        );
        Ok(Engine {
            shared: Arc::new(Shared {
                topology: Arc::new(topology),
                log,
                state,
                registry: Arc::new(StateRegistry::new()),
                partitions: Arc::new(partitions),
                config,
                clock,
                members,
            }),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.shared.log
    }

    /// The stores of the tasks running in this instance.
    pub fn registry(&self) -> Arc<StateRegistry> {
        self.shared.registry.clone()
    }

    /// Which instance runs which partitions (as announced by every stream thread).
    pub fn members(&self) -> Arc<Members> {
        self.shared.members.clone()
    }

    /// Partition count of a topic the engine knows.
    pub fn partitions_of(&self, topic: &str) -> Option<u32> {
        self.shared.partitions.get(topic).copied()
    }

    /// Starts stream threads that process until shut down.
    pub fn start(&self) -> Result<RunningEngine, RuntimeError> {
        live::start(self.shared.clone())
    }

    /// Opens every task for a deterministic, single-threaded run.
    pub fn lockstep(&self) -> Result<Lockstep, RuntimeError> {
        Lockstep::new(self.shared.clone())
    }
}

fn prepare_topics(
    topology: &Topology,
    log: &dyn Log,
    config: &EngineConfig,
) -> Result<HashMap<String, u32>, RuntimeError> {
    let n = config.partitions.max(1);
    let mut partitions = HashMap::new();
    let ensure = |spec: TopicSpec, partitions: &mut HashMap<String, u32>| -> Result<u32, RuntimeError> {
        log.ensure_topic(&spec)?;
        partitions.insert(spec.name.clone(), spec.partitions);
        Ok(spec.partitions)
    };
    for topic in topology.source_topics() {
        let count = match log.partitions(&topic) {
            Ok(count) => count,
            Err(LogError::UnknownTopic { .. }) if config.create_source_topics => {
                ensure(TopicSpec::new(&topic, n), &mut partitions)?
            }
            Err(e) => return Err(e.into()),
        };
        partitions.insert(topic.clone(), count);
    }
    for topic in topology.internal_topics() {
        ensure(TopicSpec::new(&topic, n), &mut partitions)?;
    }
    for topic in topology.output_topics() {
        if !partitions.contains_key(&topic) {
            let count = match log.partitions(&topic) {
                Ok(count) => count,
                Err(LogError::UnknownTopic { .. }) => ensure(TopicSpec::new(&topic, n), &mut partitions)?,
                Err(e) => return Err(e.into()),
            };
            partitions.insert(topic, count);
        }
    }
    let mut dlqs: Vec<String> = topology
        .source_topics()
        .iter()
        .map(|t| format!("{t}.dlq"))
        .collect();
    dlqs.extend(topology.internal_topics().iter().map(|t| format!("{t}.dlq")));
    dlqs.push(format!("{}-dlq", topology.app_id()));
    for dlq in dlqs {
        let count = match log.partitions(&dlq) {
            Ok(count) => count,
            Err(LogError::UnknownTopic { .. }) => ensure(TopicSpec::new(&dlq, n), &mut partitions)?,
            Err(e) => return Err(e.into()),
        };
        partitions.insert(dlq, count);
    }
    for sub in topology.subtopologies() {
        let counts: Vec<(String, u32)> = sub.topics.iter().map(|t| (t.clone(), partitions[t])).collect();
        if counts.windows(2).any(|w| w[0].1 != w[1].1) {
            let detail = counts
                .iter()
                .map(|(t, c)| format!("{t}: {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(TopologyError::NotCoPartitioned {
                subtopology: sub.id,
                detail,
            }
            .into());
        }
        let tasks = counts.first().map_or(n, |(_, c)| *c);
        ensure(
            TopicSpec::new(topology.changelog_topic(sub), tasks).compacted(),
            &mut partitions,
        )?;
    }
    Ok(partitions)
}
