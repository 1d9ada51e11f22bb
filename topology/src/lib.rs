//! The fleetstream runtime: a Kafka Streams-like topology engine in Rust.
//!
//! What it owns and how data flows through it:
//!
//! ```text
//!   log (embedded segments | Kafka)
//!     │ poll, committed records only
//!     ▼
//!   task = sub-topology × partition ── source ─ operators ─ processors ─ sinks ──► log
//!     │          │ stores (RocksDB | memory), timers
//!     │          └─ writes ──► changelog partition (+ commit marker with positions)
//!     └─ commit: outputs + changelog + positions, atomically
//! ```
//!
//! - [`TopologyBuilder`] and [`Stream`]: the typed DSL; [`Processor`]: the one trait every
//!   operator is built from; stores are declared up front and checked at build time.
//! - [`log`]: topics, partitions, offsets, atomic commits; [`log::embedded::EmbeddedLog`] is
//!   durable on local disk for one machine, the Kafka log spans instances.
//! - [`store`]: RocksDB and in-memory backends, staged writes, changelogs, restore.
//! - [`Engine`]: prepares topics and runs tasks live on stream threads, or in lockstep for
//!   deterministic replays and the [`TopologyTestDriver`].
//! - [`window`]: event-time windows with grace.
//!
//! A bad record never stops a task: it goes to `<topic>.dlq` with the reason.

pub mod builder;
pub mod codec;
pub mod dlq;
mod driver;
pub mod error;
mod graph;
pub mod log;
pub mod metrics;
mod processor;
pub mod record;
pub mod runtime;
pub mod store;
mod task;
mod topology;
pub mod window;

pub use builder::{InternalTopic, SourceBuilder, Stream, TopologyBuilder};
pub use codec::{Codec, DecodeError};
pub use dlq::DeadLetter;
pub use driver::{Output, TopologyTestDriver};
pub use error::{LogError, ProcessError, StoreError, TopologyError};
pub use graph::{NodeId, Partitioner};
pub use processor::{Context, Data, Processor, Timer};
pub use record::{EventTime, LogRecord, ProducerRecord, Record, TopicPartition, partition_for};
pub use runtime::{
    Clock, Engine, EngineConfig, Guarantee, Lockstep, RunningEngine, RuntimeError, ShutdownHandle,
};
pub use task::{Origin, TaskId};
pub use topology::{StoreKind, StoreSpec, Subtopology, Topology};
