//! Instantiated nodes of a task: the DSL's operators and processors, pushing typed records
//! depth first to their children. Every DSL operator is a small [`Node`]; a processor is
//! wrapped in [`ProcessNode`]; a source decodes bytes at the root.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{Codec, DecodeError};
use crate::dlq::DeadLetter;
use crate::error::ProcessError;
use crate::processor::{Context, Data, Processor, Timer};
use crate::record::{EventTime, ProducerRecord, Record, partition_for};
use crate::task::TaskState;

/// Index of a node in its topology; the same in every task.
pub type NodeId = u32;

/// Something that happens to every node of a task, or to one.
#[derive(Debug)]
pub(crate) enum NodeEvent {
    Init,
    Timer { node: NodeId, timer: Timer },
    Commit,
    Close,
}

pub(crate) trait Node<K, V>: Send {
    fn push(&mut self, task: &mut TaskState, record: Record<K, V>) -> Result<(), ProcessError>;
    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError>;
}

pub(crate) fn push_all<K: Data, V: Data>(
    children: &mut [Box<dyn Node<K, V>>],
    task: &mut TaskState,
    record: Record<K, V>,
) -> Result<(), ProcessError> {
    match children.split_last_mut() {
        None => Ok(()),
        Some((last, rest)) => {
            for child in rest {
                child.push(task, record.clone())?;
            }
            last.push(task, record)
        }
    }
}

pub(crate) fn visit_all<K, V>(
    children: &mut [Box<dyn Node<K, V>>],
    task: &mut TaskState,
    event: &NodeEvent,
) -> Result<(), ProcessError> {
    for child in children {
        child.visit(task, event)?;
    }
    Ok(())
}

type Children<K, V> = Vec<Box<dyn Node<K, V>>>;
pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;
pub(crate) type MapFn<K, V, K2, V2> = Arc<dyn Fn(Record<K, V>) -> Record<K2, V2> + Send + Sync>;
pub(crate) type FlatMapFn<K, V, K2, V2> = Arc<dyn Fn(Record<K, V>) -> Vec<Record<K2, V2>> + Send + Sync>;

pub(crate) struct FilterNode<K, V> {
    pub(crate) predicate: Predicate<K, V>,
    pub(crate) children: Children<K, V>,
}

impl<K: Data, V: Data> Node<K, V> for FilterNode<K, V> {
    fn push(&mut self, task: &mut TaskState, record: Record<K, V>) -> Result<(), ProcessError> {
        if (self.predicate)(&record.key, &record.value) {
            push_all(&mut self.children, task, record)
        } else {
            Ok(())
        }
    }

    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError> {
        visit_all(&mut self.children, task, event)
    }
}

pub(crate) struct FlatMapNode<K, V, K2, V2> {
    pub(crate) f: FlatMapFn<K, V, K2, V2>,
    pub(crate) children: Children<K2, V2>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> Node<K, V> for FlatMapNode<K, V, K2, V2> {
    fn push(&mut self, task: &mut TaskState, record: Record<K, V>) -> Result<(), ProcessError> {
        for out in (self.f)(record) {
            push_all(&mut self.children, task, out)?;
        }
        Ok(())
    }

    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError> {
        visit_all(&mut self.children, task, event)
    }
}

pub(crate) struct MapNode<K, V, K2, V2> {
    pub(crate) f: MapFn<K, V, K2, V2>,
    pub(crate) children: Children<K2, V2>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> Node<K, V> for MapNode<K, V, K2, V2> {
    fn push(&mut self, task: &mut TaskState, record: Record<K, V>) -> Result<(), ProcessError> {
        push_all(&mut self.children, task, (self.f)(record))
    }

    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError> {
        visit_all(&mut self.children, task, event)
    }
}

pub(crate) struct ProcessNode<P: Processor> {
    pub(crate) id: NodeId,
    pub(crate) processor: P,
    pub(crate) children: Children<P::OutKey, P::OutValue>,
}

impl<P: Processor> Node<P::InKey, P::InValue> for ProcessNode<P> {
    fn push(
        &mut self,
        task: &mut TaskState,
        record: Record<P::InKey, P::InValue>,
    ) -> Result<(), ProcessError> {
        let mut ctx = Context {
            task,
            children: &mut self.children,
            node: self.id,
        };
        self.processor.process(&mut ctx, record)
    }

    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError> {
        match event {
            NodeEvent::Init => {
                let mut ctx = Context {
                    task: &mut *task,
                    children: &mut self.children,
                    node: self.id,
                };
                self.processor.init(&mut ctx)?;
            }
            NodeEvent::Commit => {
                let mut ctx = Context {
                    task: &mut *task,
                    children: &mut self.children,
                    node: self.id,
                };
                self.processor.on_commit(&mut ctx)?;
            }
            NodeEvent::Timer { node, timer } if *node == self.id => {
                let mut ctx = Context {
                    task,
                    children: &mut self.children,
                    node: self.id,
                };
                return self.processor.on_timer(&mut ctx, timer.clone());
            }
            NodeEvent::Timer { .. } => {}
            NodeEvent::Close => self.processor.close(),
        }
        visit_all(&mut self.children, task, event)
    }
}

/// Chooses the partition of an output record.
pub type Partitioner<K, V> = Arc<dyn Fn(&K, &V, &[u8], u32) -> u32 + Send + Sync>;

pub(crate) struct SinkNode<K, V> {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Codec<K>,
    pub(crate) value: Codec<V>,
    pub(crate) partitioner: Option<Partitioner<K, V>>,
    /// The topic's partition count, looked up at the first record.
    pub(crate) partitions: Option<u32>,
    /// Where keys and values are encoded before they are copied out at their exact size:
    /// one allocation per record and field instead of a vector grown step by step.
    pub(crate) scratch: (Vec<u8>, Vec<u8>),
}

impl<K, V> SinkNode<K, V> {
    pub(crate) fn new(
        topic: Arc<str>,
        key: Codec<K>,
        value: Codec<V>,
        partitioner: Option<Partitioner<K, V>>,
    ) -> Self {
        SinkNode {
            topic,
            key,
            value,
            partitioner,
            partitions: None,
            scratch: (Vec::new(), Vec::new()),
        }
    }
}

impl<K: Data, V: Data> Node<K, V> for SinkNode<K, V> {
    fn push(&mut self, task: &mut TaskState, record: Record<K, V>) -> Result<(), ProcessError> {
        let (key, value) = &mut self.scratch;
        key.clear();
        value.clear();
        self.key.encode(&record.key, key);
        self.value.encode(&record.value, value);
        let partitions = *self
            .partitions
            .get_or_insert_with(|| task.partitions_of(&self.topic));
        let partition = match &self.partitioner {
            Some(p) => p(&record.key, &record.value, key, partitions) % partitions.max(1),
            None => partition_for(key, partitions),
        };
        task.emit(ProducerRecord {
            topic: self.topic.clone(),
            partition,
            ts: record.ts,
            key: Bytes::copy_from_slice(key),
            value: Some(Bytes::copy_from_slice(value)),
        });
        Ok(())
    }

    fn visit(&mut self, _task: &mut TaskState, _event: &NodeEvent) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// Turns a record's bytes into the stream's value, or says why it cannot.
pub(crate) type Decoder<V> = Arc<dyn Fn(&[u8]) -> Result<V, DecodeError> + Send + Sync>;
/// Reads a record's event time from its decoded value (default: the log record's time).
pub(crate) type TimestampExtractor<V> = Arc<dyn Fn(&V) -> EventTime + Send + Sync>;

pub(crate) struct SourceTopic<K, V> {
    pub(crate) key: Codec<K>,
    pub(crate) value: Decoder<V>,
    pub(crate) timestamp: Option<TimestampExtractor<V>>,
}

impl<K, V> Clone for SourceTopic<K, V> {
    fn clone(&self) -> Self {
        SourceTopic {
            key: self.key,
            value: self.value.clone(),
            timestamp: self.timestamp.clone(),
        }
    }
}

/// A record as a task receives it from the log, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct RawInput<'a> {
    pub(crate) topic: &'a str,
    pub(crate) key: &'a Bytes,
    pub(crate) value: Option<&'a Bytes>,
    pub(crate) ts: EventTime,
}

/// The root of a task's tree: decodes records of its topics, or dead-letters them.
pub(crate) trait RootNode: Send {
    /// Decodes and processes one record (or dead-letters it), first advancing stream time and
    /// firing the timers that are due by it.
    fn push_raw(&mut self, task: &mut TaskState, input: RawInput<'_>) -> Result<(), ProcessError>;
    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError>;
}

pub(crate) struct SourceNode<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) topics: HashMap<String, SourceTopic<K, V>>,
    pub(crate) children: Children<K, V>,
}

impl<K: Data, V: Data> RootNode for SourceNode<K, V> {
    fn push_raw(&mut self, task: &mut TaskState, input: RawInput<'_>) -> Result<(), ProcessError> {
        let Some(topic) = self.topics.get(input.topic) else {
            return Err(ProcessError::Bug {
                processor: self.name.to_string(),
                detail: format!("received a record of topic {:?} it does not read", input.topic),
            });
        };
        let reject = |task: &mut TaskState, field: Option<String>, reason: String| {
            task.dead_letter(DeadLetter {
                topic: input.topic.to_string(),
                key: input.key.clone(),
                value: input.value.cloned(),
                ts: input.ts,
                field,
                reason,
                stage: self.name.to_string(),
            });
        };
        let key = match topic.key.decode(input.key) {
            Ok(k) => k,
            Err(e) => {
                reject(task, Some("key".into()), e.message);
                return Ok(());
            }
        };
        let Some(bytes) = input.value else {
            reject(task, None, "record has no value (tombstone)".into());
            return Ok(());
        };
        let value = match (topic.value)(bytes) {
            Ok(v) => v,
            Err(e) => {
                reject(task, Some(e.field), e.message);
                return Ok(());
            }
        };
        let ts = topic.timestamp.as_ref().map_or(input.ts, |f| f(&value));
        // Timers due by the new stream time fire before the record that advanced it.
        if ts > task.stream_time {
            task.stream_time = ts;
            while let Some((node, at, key)) = task.timers.pop_due(ts) {
                let event = NodeEvent::Timer {
                    node,
                    timer: Timer::EventTime { at, key },
                };
                visit_all(&mut self.children, task, &event)?;
            }
        }
        push_all(&mut self.children, task, Record { key, value, ts })
    }

    fn visit(&mut self, task: &mut TaskState, event: &NodeEvent) -> Result<(), ProcessError> {
        visit_all(&mut self.children, task, event)
    }
}
