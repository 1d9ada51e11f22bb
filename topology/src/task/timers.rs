//! A task's timers: event-time timers kept in order in memory and persisted in the task's
//! `__timers` store (so they survive restarts and move with the task), and wall-clock
//! punctuations, which are not state.

use std::collections::BTreeSet;

use crate::error::StoreError;
use crate::graph::NodeId;
use crate::record::EventTime;
use crate::store::staged::StagedStore;

#[derive(Debug, Clone)]
struct WallTimer {
    node: NodeId,
    interval: i64,
    next: i64,
}

pub(crate) struct Timers {
    queue: BTreeSet<(EventTime, NodeId, Vec<u8>)>,
    pub(crate) store: StagedStore,
    wall: Vec<WallTimer>,
}

fn encode(at: EventTime, node: NodeId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.len());
    out.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(key);
    out
}

fn decode(raw: &[u8]) -> Option<(EventTime, NodeId, Vec<u8>)> {
    let at = (u64::from_be_bytes(raw.get(0..8)?.try_into().ok()?) ^ (1 << 63)) as i64;
    let node = u32::from_be_bytes(raw.get(8..12)?.try_into().ok()?);
    Some((at, node, raw[12..].to_vec()))
}

impl Timers {
    /// Loads the persisted timers.
    pub(crate) fn load(store: StagedStore) -> Result<Timers, StoreError> {
        let mut queue = BTreeSet::new();
        for (k, _) in store.scan(&[], None)? {
            match decode(&k) {
                Some(timer) => {
                    queue.insert(timer);
                }
                None => {
                    return Err(StoreError::Codec {
                        store: store.name.to_string(),
                        detail: "malformed timer key".into(),
                    });
                }
            }
        }
        Ok(Timers {
            queue,
            store,
            wall: Vec::new(),
        })
    }

    pub(crate) fn schedule(&mut self, node: NodeId, at: EventTime, key: &[u8]) {
        if self.queue.insert((at, node, key.to_vec())) {
            self.store.put(encode(at, node, key), Vec::new());
        }
    }

    pub(crate) fn cancel(&mut self, node: NodeId, at: EventTime, key: &[u8]) {
        if self.queue.remove(&(at, node, key.to_vec())) {
            self.store.delete(encode(at, node, key));
        }
    }

    /// The earliest timer, if due by `now`, removed.
    pub(crate) fn pop_due(&mut self, now: EventTime) -> Option<(NodeId, EventTime, Vec<u8>)> {
        let first = self.queue.first()?;
        if first.0 > now {
            return None;
        }
        let (at, node, key) = self.queue.pop_first().expect("non-empty");
        self.store.delete(encode(at, node, &key));
        Some((node, at, key))
    }

    /// The earliest timer without removing it.
    pub(crate) fn peek(&self) -> Option<&(EventTime, NodeId, Vec<u8>)> {
        self.queue.first()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn schedule_wall_clock(&mut self, node: NodeId, interval: i64, now: i64) {
        let interval = interval.max(1);
        self.wall.retain(|w| w.node != node);
        self.wall.push(WallTimer {
            node,
            interval,
            next: now + interval,
        });
    }

    /// Wall-clock punctuations due by `now`, each advanced to its next time.
    pub(crate) fn due_wall_clock(&mut self, now: i64) -> Vec<NodeId> {
        let mut due = Vec::new();
        for w in &mut self.wall {
            if w.next <= now {
                due.push(w.node);
                while w.next <= now {
                    w.next += w.interval;
                }
            }
        }
        due
    }
}
