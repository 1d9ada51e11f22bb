//! The typed DSL that builds a [`Topology`]: sources, stateless operators, processors with
//! their stores, sinks and repartitioning through internal topics.
//!
//! Every operator is a thin layer over the same node mechanism the processors use. Streams
//! are handles: using one stream in two places fans the records out.
//!
//! ```
//! use fleetstream_topology::{codec, Record, TopologyBuilder};
//!
//! let builder = TopologyBuilder::new("demo");
//! let words = builder
//!     .source::<String, String>("words")
//!     .topic("lines", codec::string(), |b: &[u8]| Ok(String::from_utf8_lossy(b).into_owned()))
//!     .build();
//! words
//!     .filter(|_, line| !line.is_empty())
//!     .map_values(|line| line.to_uppercase())
//!     .to("shouts", codec::string(), codec::string());
//! let topology = builder.build().unwrap();
//! assert_eq!(topology.source_topics(), vec!["lines".to_string()]);
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::codec::{Codec, DecodeError};
use crate::error::TopologyError;
use crate::graph::{
    Decoder, FilterNode, FlatMapFn, FlatMapNode, MapFn, MapNode, Node, NodeId, Partitioner, Predicate,
    ProcessNode, RootNode, SinkNode, SourceNode, SourceTopic, TimestampExtractor,
};
use crate::processor::{Data, Processor};
use crate::record::{EventTime, Record};
use crate::store::{KvStore, StoreId, WindowStore};
use crate::topology::{NodeKind, NodeSpec, StoreKind, StoreSpec, Topology};
use crate::window::{WindowAssigner, Windowed, WindowedAggregate};

pub(crate) type RootFactory = Arc<dyn Fn(&Instantiator<'_>) -> Box<dyn RootNode> + Send + Sync>;
pub(crate) type NodeFactory = Arc<dyn Fn(&Instantiator<'_>) -> Box<dyn Any + Send> + Send + Sync>;

pub(crate) enum Factory {
    Root(RootFactory),
    Node(NodeFactory),
}

/// Builds the node tree of one task from the topology's specs.
pub(crate) struct Instantiator<'a> {
    pub(crate) nodes: &'a [NodeSpec],
}

impl Instantiator<'_> {
    pub(crate) fn children<K: Data, V: Data>(&self, id: NodeId) -> Vec<Box<dyn Node<K, V>>> {
        self.nodes[id as usize]
            .children
            .iter()
            .map(|&child| match &self.nodes[child as usize].factory {
                Factory::Node(factory) => *factory(self)
                    .downcast::<Box<dyn Node<K, V>>>()
                    .expect("a child's input type is its parent's output type"),
                Factory::Root(_) => unreachable!("sources have no parent"),
            })
            .collect()
    }
}

pub(crate) struct Inner {
    pub(crate) app_id: String,
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) stores: Vec<StoreSpec>,
    pub(crate) internal_topics: BTreeSet<String>,
    pub(crate) read_topics: BTreeSet<String>,
    pub(crate) error: Option<TopologyError>,
    counter: usize,
}

impl Inner {
    fn fail(&mut self, error: TopologyError) {
        self.error.get_or_insert(error);
    }

    fn unique_name(&mut self, name: Option<&str>, prefix: &str) -> String {
        match name {
            Some(name) => {
                if self.nodes.iter().any(|n| n.name == name) {
                    self.fail(TopologyError::DuplicateName {
                        name: name.to_string(),
                    });
                }
                name.to_string()
            }
            None => loop {
                self.counter += 1;
                let candidate = format!("{prefix}-{}", self.counter);
                if !self.nodes.iter().any(|n| n.name == candidate) {
                    break candidate;
                }
            },
        }
    }

    fn add(
        &mut self,
        parent: Option<NodeId>,
        name: String,
        kind: NodeKind,
        stores: Vec<StoreId>,
        factory: Factory,
    ) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(NodeSpec {
            name,
            children: Vec::new(),
            kind,
            stores,
            factory,
        });
        if let Some(parent) = parent {
            self.nodes[parent as usize].children.push(id);
        }
        id
    }

    pub(crate) fn internal_name(&self, name: &str) -> String {
        format!("{}-{name}", self.app_id)
    }
}

/// Starts a topology definition.
pub struct TopologyBuilder {
    inner: Rc<RefCell<Inner>>,
}

impl TopologyBuilder {
    /// `app_id` names the consumer group, and prefixes internal and changelog topics.
    pub fn new(app_id: &str) -> Self {
        TopologyBuilder {
            inner: Rc::new(RefCell::new(Inner {
                app_id: app_id.to_string(),
                nodes: Vec::new(),
                stores: Vec::new(),
                internal_topics: BTreeSet::new(),
                read_topics: BTreeSet::new(),
                error: None,
                counter: 0,
            })),
        }
    }

    /// Starts a source: one or more co-partitioned topics decoded into one stream.
    pub fn source<K: Data, V: Data>(&self, name: &str) -> SourceBuilder<K, V> {
        SourceBuilder {
            inner: self.inner.clone(),
            name: name.to_string(),
            topics: Vec::new(),
        }
    }

    /// Declares a key-value store.
    pub fn kv_store<K, V>(&self, name: &str, key: Codec<K>, value: Codec<V>) -> KvStore<K, V> {
        let id = self.add_store(name, StoreKind::KeyValue);
        KvStore {
            id,
            name: name.into(),
            key,
            value,
        }
    }

    /// Declares a window store (values per key and window start).
    pub fn window_store<K, V>(&self, name: &str, key: Codec<K>, value: Codec<V>) -> WindowStore<K, V> {
        let id = self.add_store(name, StoreKind::Window);
        WindowStore {
            id,
            name: name.into(),
            key,
            value,
        }
    }

    fn add_store(&self, name: &str, kind: StoreKind) -> StoreId {
        let mut inner = self.inner.borrow_mut();
        if inner.stores.iter().any(|s| s.name == name) {
            inner.fail(TopologyError::DuplicateName {
                name: name.to_string(),
            });
        }
        inner.stores.push(StoreSpec {
            name: name.to_string(),
            kind,
        });
        inner.stores.len() - 1
    }

    /// Declares an internal topic (`<app_id>-<name>`) that several streams may write to and one
    /// source reads.
    pub fn internal_topic<K, V>(&self, name: &str, key: Codec<K>, value: Codec<V>) -> InternalTopic<K, V> {
        let mut inner = self.inner.borrow_mut();
        let full = inner.internal_name(name);
        inner.internal_topics.insert(full.clone());
        InternalTopic {
            name: full,
            key,
            value,
        }
    }

    /// Validates and freezes the definition.
    pub fn build(self) -> Result<Topology, TopologyError> {
        let mut inner = self.inner.borrow_mut();
        let empty = Inner {
            app_id: inner.app_id.clone(),
            nodes: Vec::new(),
            stores: Vec::new(),
            internal_topics: BTreeSet::new(),
            read_topics: BTreeSet::new(),
            error: None,
            counter: 0,
        };
        Topology::from_parts(std::mem::replace(&mut *inner, empty))
    }
}

/// An internal topic: written with [`Stream::to_internal`], read with [`SourceBuilder::internal`].
pub struct InternalTopic<K, V> {
    pub(crate) name: String,
    pub(crate) key: Codec<K>,
    pub(crate) value: Codec<V>,
}

impl<K, V> Clone for InternalTopic<K, V> {
    fn clone(&self) -> Self {
        InternalTopic {
            name: self.name.clone(),
            key: self.key,
            value: self.value,
        }
    }
}

impl<K, V> InternalTopic<K, V> {
    /// The topic's full name (`<app_id>-<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Collects the topics of one source.
pub struct SourceBuilder<K, V> {
    inner: Rc<RefCell<Inner>>,
    name: String,
    topics: Vec<(String, SourceTopic<K, V>)>,
}

impl<K: Data, V: Data> SourceBuilder<K, V> {
    /// Reads `topic`; its record time is the event time.
    pub fn topic(
        self,
        topic: &str,
        key: Codec<K>,
        value: impl Fn(&[u8]) -> Result<V, DecodeError> + Send + Sync + 'static,
    ) -> Self {
        self.add(topic, key, Arc::new(value), None)
    }

    /// Reads `topic`, taking event time from the decoded value.
    pub fn topic_with_time(
        self,
        topic: &str,
        key: Codec<K>,
        value: impl Fn(&[u8]) -> Result<V, DecodeError> + Send + Sync + 'static,
        time: impl Fn(&V) -> EventTime + Send + Sync + 'static,
    ) -> Self {
        self.add(topic, key, Arc::new(value), Some(Arc::new(time)))
    }

    /// Reads an internal topic, mapping its values into the stream's type.
    pub fn internal<V2: Data>(
        self,
        topic: &InternalTopic<K, V2>,
        map: impl Fn(V2) -> V + Send + Sync + 'static,
    ) -> Self {
        let codec = topic.value;
        let decoder: Decoder<V> = Arc::new(move |bytes| codec.decode(bytes).map(&map));
        let name = topic.name.clone();
        self.add(&name, topic.key, decoder, None)
    }

    fn add(
        mut self,
        topic: &str,
        key: Codec<K>,
        value: Decoder<V>,
        timestamp: Option<TimestampExtractor<V>>,
    ) -> Self {
        {
            let mut inner = self.inner.borrow_mut();
            if !inner.read_topics.insert(topic.to_string()) || self.topics.iter().any(|(t, _)| t == topic) {
                inner.fail(TopologyError::TopicReadTwice {
                    topic: topic.to_string(),
                });
            }
        }
        self.topics.push((
            topic.to_string(),
            SourceTopic {
                key,
                value,
                timestamp,
            },
        ));
        self
    }

    pub fn build(self) -> Stream<K, V> {
        let mut inner = self.inner.borrow_mut();
        let name = inner.unique_name(Some(&self.name), "source");
        let topics: Vec<String> = self.topics.iter().map(|(t, _)| t.clone()).collect();
        let specs: Arc<Vec<(String, SourceTopic<K, V>)>> = Arc::new(self.topics);
        let id = inner.nodes.len() as NodeId;
        let root_name: Arc<str> = name.clone().into();
        let factory: RootFactory = Arc::new(move |inst| {
            Box::new(SourceNode {
                name: root_name.clone(),
                topics: specs.iter().map(|(t, s)| (t.clone(), s.clone())).collect(),
                children: inst.children::<K, V>(id),
            })
        });
        let id = inner.add(
            None,
            name,
            NodeKind::Source { topics },
            Vec::new(),
            Factory::Root(factory),
        );
        drop(inner);
        Stream {
            inner: self.inner,
            node: id,
            _types: PhantomData,
        }
    }
}

/// A typed stream of records in a topology definition.
pub struct Stream<K, V> {
    inner: Rc<RefCell<Inner>>,
    node: NodeId,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Stream<K, V> {
    fn clone(&self) -> Self {
        Stream {
            inner: self.inner.clone(),
            node: self.node,
            _types: PhantomData,
        }
    }
}

impl<K: Data, V: Data> Stream<K, V> {
    fn child<K2: Data, V2: Data>(
        &self,
        name: Option<&str>,
        prefix: &str,
        kind: NodeKind,
        stores: Vec<StoreId>,
        make: impl Fn(NodeId, Vec<Box<dyn Node<K2, V2>>>) -> Box<dyn Node<K, V>> + Send + Sync + 'static,
    ) -> Stream<K2, V2> {
        let mut inner = self.inner.borrow_mut();
        let name = inner.unique_name(name, prefix);
        let id = inner.nodes.len() as NodeId;
        let factory: NodeFactory = Arc::new(move |inst| {
            let node: Box<dyn Node<K, V>> = make(id, inst.children::<K2, V2>(id));
            Box::new(node)
        });
        let id = inner.add(Some(self.node), name, kind, stores, Factory::Node(factory));
        drop(inner);
        Stream {
            inner: self.inner.clone(),
            node: id,
            _types: PhantomData,
        }
    }

    /// Keeps records for which `predicate` holds.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Stream<K, V> {
        let predicate: Predicate<K, V> = Arc::new(predicate);
        self.child(
            None,
            "filter",
            NodeKind::Operator,
            Vec::new(),
            move |_, children| {
                Box::new(FilterNode {
                    predicate: predicate.clone(),
                    children,
                })
            },
        )
    }

    /// Transforms each record.
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(Record<K, V>) -> Record<K2, V2> + Send + Sync + 'static,
    ) -> Stream<K2, V2> {
        let f: MapFn<K, V, K2, V2> = Arc::new(f);
        self.child(None, "map", NodeKind::Operator, Vec::new(), move |_, children| {
            Box::new(MapNode {
                f: f.clone(),
                children,
            })
        })
    }

    /// Transforms each value, keeping key and time.
    pub fn map_values<V2: Data>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> Stream<K, V2> {
        self.map(move |r| Record {
            key: r.key,
            value: f(r.value),
            ts: r.ts,
        })
    }

    /// Gives each record a new key. Follow with [`Stream::repartition`] before state that
    /// depends on the new key.
    pub fn key_by<K2: Data>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> Stream<K2, V> {
        self.map(move |r| Record {
            key: f(&r.key, &r.value),
            value: r.value,
            ts: r.ts,
        })
    }

    /// Turns each record into zero or more records.
    pub fn flat_map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(Record<K, V>) -> Vec<Record<K2, V2>> + Send + Sync + 'static,
    ) -> Stream<K2, V2> {
        let f: FlatMapFn<K, V, K2, V2> = Arc::new(f);
        self.child(
            None,
            "flat-map",
            NodeKind::Operator,
            Vec::new(),
            move |_, children| {
                Box::new(FlatMapNode {
                    f: f.clone(),
                    children,
                })
            },
        )
    }

    /// Runs a processor on every record. `stores` are the stores it may use; each task gets
    /// its own processor from `factory`.
    pub fn process<P>(
        &self,
        name: &str,
        factory: impl Fn() -> P + Send + Sync + 'static,
        stores: &[StoreId],
    ) -> Stream<P::OutKey, P::OutValue>
    where
        P: Processor<InKey = K, InValue = V>,
    {
        self.child(
            Some(name),
            "process",
            NodeKind::Processor,
            stores.to_vec(),
            move |id, children| {
                Box::new(ProcessNode {
                    id,
                    processor: factory(),
                    children,
                })
            },
        )
    }

    /// Aggregates per key and event-time window; emits every change and, once stream time
    /// passes the window's end plus `grace`, a final result. Late records go to the DLQ of
    /// `dlq_topic`.
    #[allow(clippy::too_many_arguments)]
    pub fn windowed_aggregate<A: Data>(
        &self,
        name: &str,
        assigner: impl WindowAssigner,
        grace: std::time::Duration,
        store: &WindowStore<K, A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        fold: impl Fn(A, &V) -> A + Send + Sync + 'static,
        dlq_topic: &str,
    ) -> Stream<K, Windowed<A>> {
        let prototype = WindowedAggregate::new(assigner, grace, store.clone(), init, fold, dlq_topic);
        self.process(name, move || prototype.clone(), &[store.id()])
    }

    /// Writes the stream to a topic, partitioned by key.
    pub fn to(&self, topic: &str, key: Codec<K>, value: Codec<V>) {
        self.sink(topic, key, value, None);
    }

    /// Writes the stream to a topic with a custom partitioner.
    pub fn to_with_partitioner(
        &self,
        topic: &str,
        key: Codec<K>,
        value: Codec<V>,
        partitioner: Partitioner<K, V>,
    ) {
        self.sink(topic, key, value, Some(partitioner));
    }

    /// Writes the stream to an internal topic.
    pub fn to_internal(&self, topic: &InternalTopic<K, V>) {
        self.sink(&topic.name.clone(), topic.key, topic.value, None);
    }

    fn sink(&self, topic: &str, key: Codec<K>, value: Codec<V>, partitioner: Option<Partitioner<K, V>>) {
        let topic_name: Arc<str> = topic.into();
        let prefix = format!("to-{topic}");
        self.child::<K, V>(
            None,
            &prefix,
            NodeKind::Sink {
                topic: topic.to_string(),
            },
            Vec::new(),
            move |_, _| Box::new(SinkNode::new(topic_name.clone(), key, value, partitioner.clone())),
        );
    }

    /// Sends the stream through an internal topic `<app_id>-<name>`, so that records are
    /// partitioned by their current key, and continues in a new sub-topology.
    pub fn repartition(&self, name: &str, key: Codec<K>, value: Codec<V>) -> Stream<K, V> {
        let topic = TopologyBuilder {
            inner: self.inner.clone(),
        }
        .internal_topic(name, key, value);
        self.to_internal(&topic);
        SourceBuilder {
            inner: self.inner.clone(),
            name: name.to_string(),
            topics: Vec::new(),
        }
        .internal(&topic, |v| v)
        .build()
    }
}
