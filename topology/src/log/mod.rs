//! The log: topics of partitions of offset-addressed records, consumer positions, and atomic
//! commits of (outputs, changelog, input positions).
//!
//! Two implementations share these traits: [`embedded::EmbeddedLog`] (in-process, append-only
//! segment files, for one machine) and the Kafka log (a cluster, many instances). The runtime
//! only speaks these traits, so one topology runs unchanged on both.
//!
//! The shape follows Kafka so that its semantics fit without emulation:
//! - a [`Producer`] buffers records and [`Producer::commit`] makes them visible atomically
//!   together with a consumer group's positions (a Kafka transaction with
//!   `send_offsets_to_transaction`, or one journal entry on the embedded log);
//! - a [`Consumer`] reads committed records only, either from partitions assigned to it by hand
//!   or from those its group gives it, in which case a [`RebalanceListener`] hears about every
//!   change before partitions move.

pub mod embedded;
pub mod kafka;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::error::LogError;
use crate::record::{LogRecord, ProducerRecord, TopicPartition};

/// What a topic should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// Keep only the latest record per key (changelogs).
    pub compacted: bool,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            compacted: false,
        }
    }

    pub fn compacted(mut self) -> Self {
        self.compacted = true;
        self
    }
}

/// Consumer positions to commit for a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    /// Next offset to read, per partition.
    pub offsets: Vec<(TopicPartition, u64)>,
}

/// How a consumer learns its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The group protocol assigns partitions (Kafka). On the embedded log, where one process is
    /// the whole group, `member` of `members` takes a range of every topic's partitions.
    Group {
        group: String,
        member: u32,
        members: u32,
    },
    /// Partitions are assigned by hand with [`Consumer::assign`].
    Manual,
}

/// A log of topics.
pub trait Log: Send + Sync + 'static {
    /// Creates the topic, or checks that an existing one has the expected partition count.
    fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError>;
    /// The partition count of an existing topic.
    fn partitions(&self, topic: &str) -> Result<u32, LogError>;
    /// A producer; `transactional_id` asks for atomic commits fenced across restarts, and
    /// `group` is the consumer (see [`Consumer::group_handle`]) whose positions its commits
    /// carry.
    fn producer(
        &self,
        transactional_id: Option<&str>,
        group: Option<GroupHandle>,
    ) -> Result<Box<dyn Producer>, LogError>;
    /// A consumer that reads committed records only.
    fn consumer(&self, membership: Membership) -> Result<Box<dyn Consumer>, LogError>;
    /// The offset the next appended record of the partition will get.
    fn end_offset(&self, tp: &TopicPartition) -> Result<u64, LogError>;
    /// The first offset still stored (after retention or compaction removed older ones).
    fn start_offset(&self, tp: &TopicPartition) -> Result<u64, LogError>;
    /// The committed position of a group on a partition.
    fn committed(&self, group: &str, tp: &TopicPartition) -> Result<Option<u64>, LogError>;
    /// Whether commits are atomic across partitions (embedded: always; Kafka: when the broker
    /// offers transactions).
    fn supports_transactions(&self) -> bool;
    /// Whether other processes share this log (a broker), as opposed to one process's files.
    fn is_distributed(&self) -> bool {
        false
    }
    /// A short description for logs: where the data lives.
    fn describe(&self) -> String;
}

/// Appends records; what is sent becomes visible at the next commit.
pub trait Producer: Send {
    fn send(&mut self, record: ProducerRecord) -> Result<(), LogError>;
    /// Makes every record sent since the last commit visible, together with `offsets`, and
    /// returns the offset each record got, in send order. Atomic where the log supports
    /// transactions; otherwise records are flushed first and positions committed after.
    fn commit(&mut self, offsets: Option<&OffsetCommit>) -> Result<Vec<u64>, LogError>;
    /// Drops everything sent since the last commit.
    fn abort(&mut self) -> Result<(), LogError>;
}

/// An opaque handle on a group member, that a producer of the same log commits through.
pub type GroupHandle = Arc<dyn Any + Send + Sync>;

/// Hears about partitions moving to and from a group member, before they move.
pub trait RebalanceListener: Send {
    fn on_revoked(&mut self, partitions: &[TopicPartition]);
    /// Returns where to start reading each assigned partition (partitions left out start at
    /// the group's committed position).
    fn on_assigned(&mut self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, u64)>;
}

/// Records read from one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub tp: TopicPartition,
    pub records: Vec<LogRecord>,
}

/// Reads committed records.
pub trait Consumer: Send {
    /// Joins the group for `topics`; the listener hears about assignments.
    fn subscribe(&mut self, topics: &[String], listener: Box<dyn RebalanceListener>) -> Result<(), LogError>;
    /// Reads exactly these partitions from these offsets (replaces any earlier assignment).
    fn assign(&mut self, positions: &[(TopicPartition, u64)]) -> Result<(), LogError>;
    /// Moves the position of an assigned partition.
    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<(), LogError>;
    /// Up to `max` records, waiting at most `timeout` when none is there.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Fetched>, LogError>;
    /// Commits positions for the group outside a transaction.
    fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError>;
    /// The partitions currently assigned.
    fn assignment(&self) -> Vec<TopicPartition>;
    /// The offset the next fetch of `tp` starts at.
    fn position(&self, tp: &TopicPartition) -> Option<u64>;
    /// A handle for producers that commit this member's positions.
    fn group_handle(&self) -> Option<GroupHandle> {
        None
    }
    fn pause(&mut self, tps: &[TopicPartition]);
    fn resume(&mut self, tps: &[TopicPartition]);
}

/// A consumer outside any group, on every partition of `topic` from its current end: it reads
/// only what is appended from now on (tails, live feeds).
pub fn consumer_at_end(log: &dyn Log, topic: &str) -> Result<Box<dyn Consumer>, LogError> {
    let mut positions = Vec::new();
    for p in 0..log.partitions(topic)? {
        let tp = TopicPartition::new(topic, p);
        let end = log.end_offset(&tp)?;
        positions.push((tp, end));
    }
    let mut consumer = log.consumer(Membership::Manual)?;
    consumer.assign(&positions)?;
    Ok(consumer)
}

/// Splits `0..partitions` into `members` contiguous ranges and returns member `member`'s.
/// The same rule as Kafka's range assignor, so co-partitioned topics land together.
pub fn range_assignment(partitions: u32, member: u32, members: u32) -> std::ops::Range<u32> {
    let members = members.max(1);
    let per = partitions / members;
    let extra = partitions % members;
    let start = member * per + member.min(extra);
    let len = per + u32::from(member < extra);
    start..(start + len).min(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_covers_every_partition_once() {
        for partitions in 0..20 {
            for members in 1..6 {
                let mut seen = vec![0; partitions as usize];
                for m in 0..members {
                    for p in range_assignment(partitions, m, members) {
                        seen[p as usize] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&c| c == 1),
                    "{partitions} over {members}: {seen:?}"
                );
            }
        }
    }
}
