//! Errors of the runtime, one enum per concern, each saying whose fault it is and whether a
//! retry can help.

use thiserror::Error;

/// A topology that cannot run: found while building, before anything runs. Always a bug in
/// the topology definition; retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopologyError {
    #[error("processor {processor:?} uses store {store:?}, which was never declared")]
    UnknownStore { processor: String, store: String },
    #[error(
        "store {store:?} is used by processors in two sub-topologies ({first} and {second}); a store belongs to one task"
    )]
    StoreSharedAcrossSubtopologies { store: String, first: u32, second: u32 },
    #[error("two nodes are named {name:?}; node names must be unique")]
    DuplicateName { name: String },
    #[error("topic {topic:?} is read by two sources; read it once and fan out the stream")]
    TopicReadTwice { topic: String },
    #[error(
        "sub-topology {subtopology} reads topics with different partition counts ({detail}); joined topics must be co-partitioned"
    )]
    NotCoPartitioned { subtopology: u32, detail: String },
    #[error("the topology has a cycle through {node:?}")]
    Cycle { node: String },
    #[error("the topology has no source")]
    Empty,
    #[error("store {store:?} is declared but no processor uses it")]
    UnusedStore { store: String },
}

/// A failure of the log (embedded segments or a Kafka cluster).
#[derive(Debug, Error)]
pub enum LogError {
    #[error("I/O error on the log at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("log file {path} is corrupt at byte {position}: {detail}")]
    Corrupt {
        path: String,
        position: u64,
        detail: String,
    },
    #[error("unknown topic {topic:?}")]
    UnknownTopic { topic: String },
    #[error(
        "topic {topic:?} has {actual} partitions, the topology expects {expected}; delete it or change the partition count"
    )]
    PartitionMismatch {
        topic: String,
        expected: u32,
        actual: u32,
    },
    #[error("partition {partition} of topic {topic:?} does not exist")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("the broker refused: {detail} (retriable: {retriable})")]
    Broker { detail: String, retriable: bool },
    #[error("the broker does not support {feature}")]
    Unsupported { feature: String },
    #[error("this producer was fenced by a newer instance with the same transactional id")]
    Fenced,
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    /// Whether trying the same operation again may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            LogError::Broker { retriable: true, .. } | LogError::Io { .. }
        )
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// A failure of a state store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("RocksDB error in store {store:?}: {detail}")]
    Rocks { store: String, detail: String },
    #[error("I/O error on state at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A stored value no longer decodes: a bug or a format change without migration.
    #[error("store {store:?} holds a value that does not decode: {detail}")]
    Codec { store: String, detail: String },
    #[error("changelog error while restoring {task}: {source}")]
    Restore { task: String, source: Box<LogError> },
}

/// A failure while processing: never a bad record (those go to the DLQ), but something that
/// stops the task — the state or the log failed, or a bug.
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("bug in processor {processor:?}: {detail}")]
    Bug { processor: String, detail: String },
}
