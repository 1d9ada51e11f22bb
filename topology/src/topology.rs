//! A built, validated topology: its node trees (one per sub-topology), stores and topics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::builder::{Factory, Inner, Instantiator};
use crate::error::TopologyError;
use crate::graph::{NodeId, RootNode};
use crate::store::StoreId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    KeyValue,
    Window,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: String,
    pub kind: StoreKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<String> },
    Operator,
    Processor,
    Sink { topic: String },
}

pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) children: Vec<NodeId>,
    pub(crate) kind: NodeKind,
    pub(crate) stores: Vec<StoreId>,
    pub(crate) factory: Factory,
}

/// One tree of the topology: a source and everything downstream of it up to sinks. It runs as
/// one task per partition of its source topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtopology {
    pub id: u32,
    /// The source's name; names tasks (`<name>-<partition>`) and the changelog topic.
    pub name: String,
    pub root: NodeId,
    /// Topics read (full names), all co-partitioned.
    pub topics: Vec<String>,
    pub stores: Vec<StoreId>,
    /// Topics written by its sinks.
    pub sinks: Vec<String>,
}

/// A validated topology, ready to run on any log.
pub struct Topology {
    pub(crate) app_id: String,
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) stores: Vec<StoreSpec>,
    pub(crate) subtopologies: Vec<Subtopology>,
    pub(crate) internal_topics: BTreeSet<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    pub(crate) fn from_parts(inner: Inner) -> Result<Topology, TopologyError> {
        if let Some(error) = inner.error {
            return Err(error);
        }
        let Inner {
            app_id,
            nodes,
            stores,
            internal_topics,
            ..
        } = inner;
        let mut subtopologies = Vec::new();
        let mut store_owner: BTreeMap<StoreId, u32> = BTreeMap::new();
        for (root, spec) in nodes.iter().enumerate() {
            let NodeKind::Source { topics } = &spec.kind else {
                continue;
            };
            let id = subtopologies.len() as u32;
            let mut sub = Subtopology {
                id,
                name: spec.name.clone(),
                root: root as NodeId,
                topics: topics.clone(),
                stores: Vec::new(),
                sinks: Vec::new(),
            };
            let mut stack = vec![root as NodeId];
            while let Some(node) = stack.pop() {
                let spec = &nodes[node as usize];
                for &store in &spec.stores {
                    if store >= stores.len() {
                        return Err(TopologyError::UnknownStore {
                            processor: spec.name.clone(),
                            store: format!("#{store}"),
                        });
                    }
                    match store_owner.get(&store) {
                        Some(&other) if other != id => {
                            return Err(TopologyError::StoreSharedAcrossSubtopologies {
                                store: stores[store].name.clone(),
                                first: other,
                                second: id,
                            });
                        }
                        _ => {
                            store_owner.insert(store, id);
                            if !sub.stores.contains(&store) {
                                sub.stores.push(store);
                            }
                        }
                    }
                }
                if let NodeKind::Sink { topic } = &spec.kind
                    && !sub.sinks.contains(topic)
                {
                    sub.sinks.push(topic.clone());
                }
                stack.extend(spec.children.iter().copied());
            }
            sub.stores.sort_unstable();
            subtopologies.push(sub);
        }
        if subtopologies.is_empty() {
            return Err(TopologyError::Empty);
        }
        if let Some((id, store)) = stores
            .iter()
            .enumerate()
            .find(|(id, _)| !store_owner.contains_key(id))
        {
            let _ = id;
            return Err(TopologyError::UnusedStore {
                store: store.name.clone(),
            });
        }
        let topology = Topology {
            app_id,
            nodes,
            stores,
            subtopologies,
            internal_topics,
        };
        topology.check_feedback_loops()?;
        Ok(topology)
    }

    /// Sub-topologies may feed each other through topics (a market asks a driver, the driver
    /// answers), but a loop of sub-topologies without any state would echo records forever.
    fn check_feedback_loops(&self) -> Result<(), TopologyError> {
        let readers: BTreeMap<&str, u32> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.topics.iter().map(move |t| (t.as_str(), s.id)))
            .collect();
        let edges: Vec<Vec<u32>> = self
            .subtopologies
            .iter()
            .map(|s| {
                s.sinks
                    .iter()
                    .filter_map(|t| readers.get(t.as_str()).copied())
                    .collect()
            })
            .collect();
        let stateless: Vec<bool> = self.subtopologies.iter().map(|s| s.stores.is_empty()).collect();
        // A cycle made only of stateless sub-topologies: search the stateless subgraph.
        for start in 0..self.subtopologies.len() {
            if !stateless[start] {
                continue;
            }
            let mut seen = vec![false; self.subtopologies.len()];
            let mut stack = edges[start].clone();
            while let Some(next) = stack.pop() {
                let n = next as usize;
                if !stateless[n] || seen[n] {
                    continue;
                }
                if n == start {
                    return Err(TopologyError::Cycle {
                        node: self.subtopologies[start].name.clone(),
                    });
                }
                seen[n] = true;
                stack.extend(edges[n].iter().copied());
            }
        }
        Ok(())
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn subtopologies(&self) -> &[Subtopology] {
        &self.subtopologies
    }

    pub fn stores(&self) -> &[StoreSpec] {
        &self.stores
    }

    /// Topics read from outside (not internal), sorted.
    pub fn source_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.topics.iter())
            .filter(|t| !self.internal_topics.contains(*t))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Topics written that are not internal, sorted.
    pub fn output_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .subtopologies
            .iter()
            .flat_map(|s| s.sinks.iter())
            .filter(|t| !self.internal_topics.contains(*t))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Internal (repartition) topics, full names.
    pub fn internal_topics(&self) -> Vec<String> {
        self.internal_topics.iter().cloned().collect()
    }

    pub fn is_internal(&self, topic: &str) -> bool {
        self.internal_topics.contains(topic)
    }

    /// The compacted changelog topic of a sub-topology.
    pub fn changelog_topic(&self, sub: &Subtopology) -> String {
        format!("{}-{}-changelog", self.app_id, sub.name)
    }

    /// The sub-topology that reads `topic`.
    pub fn reader_of(&self, topic: &str) -> Option<&Subtopology> {
        self.subtopologies
            .iter()
            .find(|s| s.topics.iter().any(|t| t == topic))
    }

    /// The sub-topology whose processors use `store`.
    pub fn owner_of_store(&self, store: &str) -> Option<&Subtopology> {
        let id = self.stores.iter().position(|s| s.name == store)?;
        self.subtopologies.iter().find(|s| s.stores.contains(&id))
    }

    pub(crate) fn instantiate(&self, sub: &Subtopology) -> Box<dyn RootNode> {
        let inst = Instantiator { nodes: &self.nodes };
        match &self.nodes[sub.root as usize].factory {
            Factory::Root(factory) => factory(&inst),
            Factory::Node(_) => unreachable!("a sub-topology's root is a source"),
        }
    }

    /// A readable outline, one sub-topology after another.
    pub fn describe(&self) -> String {
        let mut out = format!("Topology {}\n", self.app_id);
        for sub in &self.subtopologies {
            let _ = writeln!(
                out,
                "  Sub-topology {}: {} (reads {})",
                sub.id,
                sub.name,
                sub.topics.join(", ")
            );
            let mut stack = vec![(sub.root, 2usize)];
            while let Some((node, depth)) = stack.pop() {
                let spec = &self.nodes[node as usize];
                let detail = match &spec.kind {
                    NodeKind::Source { .. } => "source".to_string(),
                    NodeKind::Operator => "operator".to_string(),
                    NodeKind::Processor => {
                        let stores: Vec<&str> = spec
                            .stores
                            .iter()
                            .map(|&s| self.stores[s].name.as_str())
                            .collect();
                        if stores.is_empty() {
                            "processor".to_string()
                        } else {
                            format!("processor, stores: {}", stores.join(", "))
                        }
                    }
                    NodeKind::Sink { topic } => format!("sink to {topic}"),
                };
                let _ = writeln!(out, "{}{} ({detail})", "  ".repeat(depth), spec.name);
                for &child in spec.children.iter().rev() {
                    stack.push((child, depth + 1));
                }
            }
        }
        out
    }
}
