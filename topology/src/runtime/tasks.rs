//! The tasks of one stream thread (or of a lockstep run) and their shared producer: opening,
//! closing and committing them together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use tracing::warn;

use super::{RuntimeError, Shared};
use crate::log::{OffsetCommit, Producer};
use crate::record::{ProducerRecord, TopicPartition, same_topic};
use crate::task::{Task, TaskId};

pub(crate) struct TaskSet {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tasks: BTreeMap<TaskId, Task>,
    by_input: HashMap<TopicPartition, TaskId>,
    pub(crate) producer: Box<dyn Producer>,
    /// Records sent with [`TaskSet::send`] since the last commit.
    extra: usize,
}

impl TaskSet {
    pub(crate) fn new(shared: Arc<Shared>, producer: Box<dyn Producer>) -> Self {
        TaskSet {
            shared,
            tasks: BTreeMap::new(),
            by_input: HashMap::new(),
            producer,
            extra: 0,
        }
    }

    /// The task that reads `tp`, as (sub-topology, partition), whether open or not.
    pub(crate) fn task_of(&self, tp: &TopicPartition) -> Option<TaskId> {
        self.shared.topology.reader_of(&tp.topic).map(|sub| TaskId {
            subtopology: sub.id,
            partition: tp.partition,
        })
    }

    /// Opens tasks side by side and returns where to read each of their inputs, with the
    /// error of every task that failed to open. Restoring a task is independent of the
    /// others', and one thread's share is often a few big tasks next to many small ones: the
    /// tasks are opened by as many workers as there are cores, the biggest restore first, so
    /// that the biggest is not queued behind the rest.
    pub(crate) fn open_many(
        &mut self,
        ids: &BTreeSet<TaskId>,
    ) -> (Vec<(TopicPartition, u64)>, Vec<RuntimeError>) {
        let mut missing: Vec<(u64, TaskId)> = ids
            .iter()
            .filter(|id| !self.tasks.contains_key(id))
            .map(|&id| (0, id))
            .collect();
        // The order matters only with more than one to open (the estimate asks the log).
        if missing.len() > 1 {
            for (estimate, id) in &mut missing {
                *estimate = Task::restore_estimate(&self.shared, *id);
            }
            missing.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len());
        let next = AtomicUsize::new(0);
        let opened: Mutex<Vec<(TaskId, Result<Task, RuntimeError>)>> = Mutex::new(Vec::new());
        // Takes the next task off the list until none is left.
        let work = || {
            while let Some(&(_, id)) = missing.get(next.fetch_add(1, Ordering::Relaxed)) {
                let task = Task::open(&self.shared, id.subtopology, id.partition).map_err(RuntimeError::from);
                opened.lock().push((id, task));
            }
        };
        std::thread::scope(|scope| {
            // This thread is one of the workers, so the list is worked off even if no other
            // can be started; the others log under this thread's span.
            let span = tracing::Span::current();
            for w in 1..workers {
                let span = span.clone();
                let started = std::thread::Builder::new()
                    .name(format!("task-open-{w}"))
                    .spawn_scoped(scope, || {
                        let _span = span.entered();
                        work();
                    });
                if let Err(e) = started {
                    warn!(error = %e, "starting a task-opening worker; the others take its share");
                }
            }
            work();
        });
        let mut errors = Vec::new();
        for (id, task) in opened.into_inner() {
            match task {
                Ok(task) => {
                    for (tp, _) in task.positions() {
                        self.by_input.insert(tp, id);
                    }
                    self.tasks.insert(id, task);
                }
                Err(e) => errors.push(e),
            }
        }
        let mut positions = Vec::new();
        for id in ids {
            if let Some(task) = self.tasks.get(id) {
                positions.extend(
                    task.positions()
                        .into_iter()
                        .map(|(tp, next)| (tp.clone(), task.fetch_position(&tp).unwrap_or(next))),
                );
            }
        }
        (positions, errors)
    }

    /// Closes a task; `clean` commits what it has first.
    pub(crate) fn close(&mut self, id: TaskId, clean: bool) -> Result<(), RuntimeError> {
        if clean {
            self.commit(true)?;
        }
        if let Some(mut task) = self.tasks.remove(&id) {
            for (tp, _) in task.positions() {
                self.by_input.remove(&tp);
            }
            if !clean {
                task.abandon();
            }
            task.close(clean)?;
        }
        Ok(())
    }

    pub(crate) fn close_all(&mut self, clean: bool) -> Result<(), RuntimeError> {
        let result = if clean { self.commit(true) } else { Ok(()) };
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if let Some(mut task) = self.tasks.remove(&id) {
                if !clean || result.is_err() {
                    task.abandon();
                }
                if let Err(e) = task.close(clean && result.is_ok()) {
                    warn!(task = task_name(&id), error = %e, "closing task");
                }
            }
        }
        self.by_input.clear();
        result
    }

    pub(crate) fn by_input(&self, tp: &TopicPartition) -> Option<TaskId> {
        self.by_input.get(tp).copied()
    }

    /// The input partitions of the open tasks.
    pub(crate) fn input_partitions(&self) -> Vec<TopicPartition> {
        self.by_input.keys().cloned().collect()
    }

    pub(crate) fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&id)
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.tasks.values().any(Task::is_dirty)
    }

    /// Sends extra records first in the next commit (lockstep runs hand records over in
    /// memory and append them here).
    pub(crate) fn send(&mut self, record: ProducerRecord) -> Result<(), RuntimeError> {
        self.extra += 1;
        self.producer.send(record).map_err(RuntimeError::from)
    }

    /// Commits only what [`TaskSet::send`] sent, without the tasks' state.
    pub(crate) fn commit_extra_only(&mut self) -> Result<(), RuntimeError> {
        if self.extra == 0 {
            return Ok(());
        }
        self.extra = 0;
        self.producer.commit(None)?;
        Ok(())
    }

    /// Commits every dirty task: outputs, changelog writes, markers and group positions in one
    /// atomic commit of the log, then applies the writes locally.
    pub(crate) fn commit(&mut self, force_checkpoint: bool) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let mut ranges: Vec<(TaskId, std::ops::Range<usize>)> = Vec::new();
        let mut offsets = OffsetCommit {
            group: self.shared.topology.app_id().to_string(),
            offsets: Vec::new(),
        };
        let mut sent = 0usize;
        // Records out per topic: a handful of topics, counted without a key per record.
        let mut out_counts: Vec<(Arc<str>, u64)> = Vec::new();
        for (id, task) in self.tasks.iter_mut() {
            if !task.is_dirty() && !force_checkpoint {
                continue;
            }
            for record in &task.state.outputs {
                match out_counts
                    .iter_mut()
                    .find(|(topic, _)| same_topic(topic, &record.topic))
                {
                    Some((_, n)) => *n += 1,
                    None => out_counts.push((record.topic.clone(), 1)),
                }
            }
            crate::metrics::task_progress(task.name(), task.state.processed, task.state.dead_letters);
            task.state.dead_letters = 0;
            let n = task.prepare_commit(&mut *self.producer)?;
            ranges.push((*id, sent..sent + n));
            sent += n;
            offsets.offsets.extend(task.positions());
        }
        let extra = std::mem::take(&mut self.extra);
        if ranges.is_empty() && extra == 0 {
            return Ok(());
        }
        let assigned = match self.producer.commit(Some(&offsets)) {
            Ok(assigned) => assigned,
            Err(e) => {
                for task in self.tasks.values_mut() {
                    task.abandon();
                }
                return Err(e.into());
            }
        };
        // Records sent before the tasks' (lockstep hand-overs) come first.
        let skip = extra;
        debug_assert_eq!(assigned.len(), extra + sent);
        let registry = self.shared.registry.clone();
        let _cut = registry.apply_guard();
        for (id, range) in ranges {
            let task = self.tasks.get_mut(&id).expect("committed task is open");
            let slice = &assigned[skip + range.start..skip + range.end];
            task.committed(slice, force_checkpoint)?;
        }
        for (topic, count) in out_counts {
            crate::metrics::records_out(&topic, count);
        }
        crate::metrics::commit(started.elapsed().as_secs_f64());
        Ok(())
    }
}

fn task_name(id: &TaskId) -> String {
    format!("{}-{}", id.subtopology, id.partition)
}
