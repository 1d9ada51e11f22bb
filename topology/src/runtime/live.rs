//! Live runs: stream threads, each with its tasks, its consumer and its producer.
//!
//! A thread joins the application's consumer group; partitions the group gives it become
//! tasks (opened and restored in the rebalance listener, before any of their records is
//! processed), partitions taken away are committed and closed there too. The loop polls,
//! hands records to their tasks, lets each task process its buffered records in timestamp
//! order, runs wall-clock punctuations, and commits every `commit_interval` — or at once
//! when there is nothing left to read, and `commit_linger` after the last commit when what one
//! poll brought is processed and the poll was not full: latency stays low under light and
//! steady load (each hop through a topic waits for a commit), and commits batch under heavy
//! load.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, error, info, info_span, warn};

use super::members::ANNOUNCE_EVERY;
use super::tasks::TaskSet;
use super::{RuntimeError, Shared};
use crate::log::{Membership, RebalanceListener};
use crate::record::TopicPartition;
use crate::task::TaskId;

/// How long a session runs before it checks for partitions without an owner (the group
/// settles and every member announces in the meantime).
const ORPHAN_GRACE: Duration = Duration::from_secs(20);

/// How long a thread stays idle short of the end of its input before it says which
/// partitions are behind (and again at this interval while it lasts).
const STALL_REPORT: Duration = Duration::from_secs(10);

/// An iteration of the loop (records handed over, processed and committed, the poll's wait
/// not counted) that takes this long logs its phases at debug level: each hop through a topic
/// waits for one, so these are what a latency tail is made of.
const SLOW_ITERATION: Duration = Duration::from_millis(3);

/// A partition short of its end: `(partition, the task's next offset, the consumer's position,
/// the end offset)`; `None` where it could not be read.
type Behind = (TopicPartition, u64, Option<u64>, Option<u64>);

/// Input partitions of the thread's tasks that are short of the log's end (or whose end cannot
/// be read). A partition counts as at its end when its task's next offset is, or when its task
/// has nothing buffered from it and the consumer has read up to the end: the consumer steps
/// over offsets that hold no record for the task (transaction markers, gaps).
fn behind_end(
    tasks: &TaskSet,
    log: &dyn crate::log::Log,
    consumer: &dyn crate::log::Consumer,
) -> Vec<Behind> {
    let mut behind = Vec::new();
    for task in tasks.tasks.values() {
        for (tp, next) in task.positions() {
            let end = log.end_offset(&tp).ok();
            let drained = task.fetch_position(&tp) == Some(next);
            if !at_end(next, drained, || consumer.position(&tp), end) {
                let position = consumer.position(&tp);
                behind.push((tp, next, position, end));
            }
        }
    }
    behind
}

/// Whether a task's input partition is processed to its end: the task's next offset is at
/// the end, or the task has nothing buffered from it and the consumer has read to the end.
/// The consumer's position is asked for only when the task's offset does not settle it.
fn at_end(next: u64, drained: bool, position: impl FnOnce() -> Option<u64>, end: Option<u64>) -> bool {
    let Some(end) = end else { return false };
    next >= end || drained && position().is_some_and(|p| p >= end)
}

fn describe_behind(behind: &[Behind]) -> String {
    use std::fmt::Write as _;
    let known = |o: &Option<u64>| o.map_or_else(|| "unknown".to_string(), |o| o.to_string());
    let mut out = String::new();
    for (i, (tp, next, position, end)) in behind.iter().take(8).enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            out,
            "{sep}{tp} next {next}, read to {}, end {}",
            known(position),
            known(end)
        );
    }
    if behind.len() > 8 {
        out.push_str(", ...");
    }
    out
}

/// Stops a running engine from another thread (a signal handler).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn is_shutdown(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What a stream thread tells the engine about how far it got.
#[derive(Default)]
struct Progress {
    /// Set while the thread has processed and committed everything on `owned`; cleared by any
    /// record processed and by any rebalance.
    caught_up: AtomicBool,
    /// The input partitions of the thread's tasks when it last found itself caught up.
    owned: Mutex<Vec<TopicPartition>>,
}

impl Progress {
    fn set(&self, owned: Option<Vec<TopicPartition>>) {
        match owned {
            Some(owned) => {
                *self.owned.lock() = owned;
                self.caught_up.store(true, Ordering::SeqCst);
            }
            None => self.caught_up.store(false, Ordering::SeqCst),
        }
    }

    fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }
}

/// Whether every thread is caught up and the partitions they own, with `others` (those other
/// instances own), cover `inputs`.
fn caught_up(
    inputs: &BTreeSet<TopicPartition>,
    threads: &[Arc<Progress>],
    others: impl Iterator<Item = TopicPartition>,
) -> bool {
    if !threads.iter().all(|p| p.is_caught_up()) {
        return false;
    }
    let mut owned: BTreeSet<TopicPartition> = others.collect();
    for thread in threads {
        owned.extend(thread.owned.lock().iter().cloned());
    }
    // Checked again: a thread may have moved on while its partitions were read.
    inputs.is_subset(&owned) && threads.iter().all(|p| p.is_caught_up())
}

/// Stream threads at work.
pub struct RunningEngine {
    stop: ShutdownHandle,
    threads: Vec<JoinHandle<Result<(), RuntimeError>>>,
    progress: Vec<Arc<Progress>>,
    shared: Arc<Shared>,
    /// Every partition of every input of the topology.
    inputs: BTreeSet<TopicPartition>,
}

impl std::fmt::Debug for RunningEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEngine")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl RunningEngine {
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.stop.clone()
    }

    /// Whether every input partition has an owner (a thread of this engine, or a live member
    /// of another instance) and every thread has processed everything on its partitions and
    /// committed. A thread between two assignments owns nothing and is at the end of nothing:
    /// while the group rebalances, the partitions it gave up count as not caught up.
    pub fn is_caught_up(&self) -> bool {
        let own_instance = self.shared.members.instance_id();
        let others = self
            .shared
            .members
            .live()
            .into_iter()
            .filter(|m| m.instance_id != own_instance)
            .flat_map(|m| m.partitions)
            .map(|(topic, partition)| TopicPartition::new(topic, partition));
        caught_up(&self.inputs, &self.progress, others)
    }

    /// Whether every thread is still running.
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Asks the threads to stop, commits, closes tasks cleanly and waits.
    pub fn shutdown(self) -> Result<(), RuntimeError> {
        self.stop.shutdown();
        self.join()
    }

    /// Waits for the threads to end (after a shutdown, or when one fails).
    pub fn join(self) -> Result<(), RuntimeError> {
        let mut first = None;
        for (i, handle) in self.threads.into_iter().enumerate() {
            let result = handle.join().unwrap_or_else(|_| {
                Err(RuntimeError::Thread {
                    thread: i as u32,
                    detail: "panicked".into(),
                })
            });
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

pub(super) fn start(shared: Arc<Shared>) -> Result<RunningEngine, RuntimeError> {
    let stop = ShutdownHandle {
        stop: Arc::new(AtomicBool::new(false)),
    };
    shared.members.follow(shared.log.clone(), stop.stop.clone());
    let members = shared.config.threads.max(1);
    let mut threads = Vec::new();
    let mut all_progress = Vec::new();
    for member in 0..members {
        let shared = shared.clone();
        let stop = stop.clone();
        let progress = Arc::new(Progress::default());
        all_progress.push(progress.clone());
        let handle = std::thread::Builder::new()
            .name(format!("stream-{member}"))
            .spawn(move || {
                let result = run_thread(shared, member, members, &stop, &progress);
                if let Err(e) = &result {
                    error!(thread = member, error = %e, "stream thread failed; stopping the engine");
                    stop.shutdown();
                }
                result
            })
            .map_err(|e| RuntimeError::Thread {
                thread: member,
                detail: e.to_string(),
            })?;
        threads.push(handle);
    }
    Ok(RunningEngine {
        stop,
        threads,
        progress: all_progress,
        inputs: input_partitions(&shared),
        shared,
    })
}

/// Every partition of every topic the topology reads.
fn input_partitions(shared: &Shared) -> BTreeSet<TopicPartition> {
    shared
        .topology
        .subtopologies()
        .iter()
        .flat_map(|s| s.topics.iter())
        .flat_map(|t| {
            (0..shared.partitions.get(t).copied().unwrap_or(1))
                .map(move |p| TopicPartition::new(t.clone(), p))
        })
        .collect()
}

/// Opens and closes tasks as the group moves partitions.
struct Listener {
    tasks: Arc<Mutex<TaskSet>>,
    errors: Arc<Mutex<Option<RuntimeError>>>,
    progress: Arc<Progress>,
}

impl RebalanceListener for Listener {
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.progress.set(None);
        let mut tasks = self.tasks.lock();
        let ids: BTreeSet<TaskId> = partitions.iter().filter_map(|tp| tasks.by_input(tp)).collect();
        if ids.is_empty() {
            return;
        }
        // Commit everything while we still own it, then let the revoked tasks go.
        if let Err(e) = tasks.commit(true) {
            self.errors.lock().get_or_insert(e);
        }
        for id in ids {
            if let Err(e) = tasks.close(id, false) {
                self.errors.lock().get_or_insert(e);
            }
        }
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, u64)> {
        self.progress.set(None);
        let mut tasks = self.tasks.lock();
        let ids: BTreeSet<TaskId> = partitions.iter().filter_map(|tp| tasks.task_of(tp)).collect();
        let (mut positions, errors) = tasks.open_many(&ids);
        if let Some(e) = errors.into_iter().next() {
            self.errors.lock().get_or_insert(e);
        }
        positions.retain(|(tp, _)| partitions.contains(tp));
        positions
    }
}

fn run_thread(
    shared: Arc<Shared>,
    member: u32,
    members: u32,
    stop: &ShutdownHandle,
    progress: &Arc<Progress>,
) -> Result<(), RuntimeError> {
    let _span = info_span!("stream", thread = member).entered();
    lower_priority(member, shared.config.thread_nice);
    info!(thread = member, members, guarantee = ?shared.config.guarantee, "stream thread started");
    loop {
        match run_session(&shared, member, members, stop, progress)? {
            Session::Stopped => return Ok(()),
            Session::Rejoin => {
                warn!(thread = member, "rejoining the group with a new member");
            }
        }
    }
}

/// Makes the calling thread `nice` steps nicer than it started (Linux keeps a nice value per
/// thread; threads it spawns inherit it). A thread that cannot change it runs as it is.
fn lower_priority(thread: u32, nice: u8) {
    if nice == 0 {
        return;
    }
    let tid = Some(rustix::thread::gettid());
    let result = rustix::process::getpriority_process(tid).and_then(|base| {
        let lowered = (base + i32::from(nice)).min(19);
        rustix::process::setpriority_process(tid, lowered).map(|()| lowered)
    });
    match result {
        Ok(lowered) => info!(thread, nice = lowered, "stream thread runs at a lower priority"),
        Err(e) => warn!(thread, error = %e, "could not lower the stream thread's priority"),
    }
}

/// How a membership of the group ended.
enum Session {
    Stopped,
    /// The group left partitions without an owner: join again as a new member.
    Rejoin,
}

/// One membership of the consumer group: consumer, producer and tasks, until shutdown, an
/// error, or a group that needs rejoining.
fn run_session(
    shared: &Arc<Shared>,
    member: u32,
    members: u32,
    stop: &ShutdownHandle,
    progress: &Arc<Progress>,
) -> Result<Session, RuntimeError> {
    let topology = shared.topology.clone();
    let group = topology.app_id().to_string();
    let mut consumer = shared.log.consumer(Membership::Group {
        group,
        member,
        members,
    })?;
    let transactional_id = format!("{}-{}-{member}", topology.app_id(), shared.config.instance_id);
    let producer = shared
        .log
        .producer(Some(&transactional_id), consumer.group_handle())?;
    let tasks = Arc::new(Mutex::new(TaskSet::new(shared.clone(), producer)));
    let errors = Arc::new(Mutex::new(None));
    let mut topics: Vec<String> = topology
        .subtopologies()
        .iter()
        .flat_map(|s| s.topics.clone())
        .collect();
    topics.sort();
    topics.dedup();
    let all_partitions = input_partitions(shared);
    consumer.subscribe(
        &topics,
        Box::new(Listener {
            tasks: tasks.clone(),
            errors: errors.clone(),
            progress: progress.clone(),
        }),
    )?;

    let commit_interval = shared.config.commit_interval;
    let linger = shared.config.commit_linger.min(commit_interval);
    let poll_records = shared.config.poll_records;
    let max_buffered = poll_records * 8;
    let mut last_commit = Instant::now();
    let mut last_lag = Instant::now();
    let mut last_end_check = Instant::now();
    let started = Instant::now();
    let grouped = consumer.group_handle().is_some();
    let mut last_announce: Option<Instant> = None;
    let mut announced: Vec<TopicPartition> = Vec::new();
    let mut last_group_check = Instant::now();
    let mut orphan_checks = 0;
    let mut idle_behind_since: Option<Instant> = None;
    let mut last_stall_report: Option<Instant> = None;
    let result = (|| -> Result<Session, RuntimeError> {
        while !stop.is_shutdown() {
            if let Some(e) = errors.lock().take() {
                return Err(e);
            }
            let (buffered, dirty) = {
                let tasks = tasks.lock();
                let buffered = tasks.tasks.values().map(|t| t.buffered()).sum::<usize>();
                (buffered, tasks.is_dirty())
            };
            let timeout = if buffered > 0 {
                Duration::ZERO
            } else if dirty {
                // Wait for more only until the lingering commit is due.
                linger
                    .saturating_sub(last_commit.elapsed())
                    .max(Duration::from_micros(100))
            } else {
                Duration::from_millis(50)
            };
            let max = if buffered >= max_buffered { 0 } else { poll_records };
            let polled_at = Instant::now();
            let fetched = consumer.poll(max, timeout)?;
            let woke_at = Instant::now();
            let short_poll = fetched.iter().map(|f| f.records.len()).sum::<usize>() < max;
            let mut tasks = tasks.lock();
            for f in fetched {
                if let Some(id) = tasks.by_input(&f.tp)
                    && let Some(task) = tasks.get_mut(id)
                {
                    task.enqueue(&f.tp, f.records);
                }
            }
            let now = shared.clock.now();
            let mut processed = 0usize;
            // The task that took longest, with its time and its count of records.
            let mut slowest: Option<(TaskId, Duration, usize)> = None;
            let ids: Vec<TaskId> = tasks.tasks.keys().copied().collect();
            for id in ids {
                let task = tasks.get_mut(id).expect("listed");
                let task_started = Instant::now();
                let mut records = 0;
                while records < 1000 && task.process_next()? {
                    records += 1;
                }
                task.punctuate(now)?;
                let took = task_started.elapsed();
                processed += records;
                if slowest.is_none_or(|(_, t, _)| took > t) {
                    slowest = Some((id, took, records));
                }
            }
            let processed_at = Instant::now();
            let drained = tasks.tasks.values().all(|t| t.buffered() == 0);
            let idle = processed == 0 && drained;
            // Everything the log had is processed: commit soon, so that what it produced is
            // visible downstream (the next hop of a repartition, an output topic) without
            // waiting out the interval. Lingering a little batches commits under steady load.
            let caught_up_now = drained && short_poll && last_commit.elapsed() >= linger;
            let due = last_commit.elapsed() >= commit_interval || caught_up_now;
            if (due || idle) && tasks.is_dirty() {
                tasks.commit(false)?;
                last_commit = Instant::now();
            } else if due {
                last_commit = Instant::now();
            }
            let committed_at = Instant::now();
            if committed_at - woke_at >= SLOW_ITERATION {
                debug!(
                    thread = member,
                    waited_us = (woke_at - polled_at).as_micros() as u64,
                    process_us = (processed_at - woke_at).as_micros() as u64,
                    commit_us = (committed_at - processed_at).as_micros() as u64,
                    processed,
                    slowest_task = %slowest.map_or_else(String::new, |(id, t, n)| {
                        format!("{}-{} {} µs {n} records", id.subtopology, id.partition, t.as_micros())
                    }),
                    "slow iteration"
                );
            }
            if !idle {
                progress.set(None);
                idle_behind_since = None;
            } else if last_end_check.elapsed() >= Duration::from_millis(300) {
                last_end_check = Instant::now();
                let behind = behind_end(&tasks, &*shared.log, &*consumer);
                let at_end = !tasks.is_dirty() && behind.is_empty();
                progress.set(at_end.then(|| tasks.input_partitions()));
                // Idle yet short of the end: nothing more arrives for these partitions. Say
                // which, now and then, so that a stall can be told from a slow start.
                if at_end {
                    idle_behind_since = None;
                } else {
                    let since = *idle_behind_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STALL_REPORT
                        && last_stall_report.is_none_or(|t| t.elapsed() >= STALL_REPORT)
                    {
                        last_stall_report = Some(Instant::now());
                        warn!(
                            thread = member,
                            dirty = tasks.is_dirty(),
                            partitions = behind.len(),
                            behind = %describe_behind(&behind),
                            assignment = consumer.assignment().len(),
                            "idle but not at the end of the input"
                        );
                    }
                }
            }
            if last_lag.elapsed() >= Duration::from_secs(5) {
                last_lag = Instant::now();
                for task in tasks.tasks.values() {
                    for (tp, next) in task.positions() {
                        if let Ok(end) = shared.log.end_offset(&tp) {
                            crate::metrics::lag(&tp.topic, tp.partition, end.saturating_sub(next));
                        }
                    }
                }
            }
            drop(tasks);
            // Tell the other members what this thread owns (query forwarding, and the check
            // below), on every change and every few seconds.
            let mut assignment = consumer.assignment();
            assignment.sort();
            if assignment != announced || last_announce.is_none_or(|t| t.elapsed() >= ANNOUNCE_EVERY) {
                match shared.members.announce(&*shared.log, member, &assignment) {
                    Ok(()) => {
                        announced = assignment;
                        last_announce = Some(Instant::now());
                    }
                    Err(e) => warn!(thread = member, error = %e, "announcing the assignment"),
                }
            }
            // A broker may fail to rebalance after a member died without leaving (tansu 0.6
            // removes it but keeps the generation, so the survivors keep their old shares):
            // partitions no live member announces for a while make this member rejoin under
            // a new member id, which forces a fresh assignment.
            if grouped
                && started.elapsed() >= ORPHAN_GRACE
                && last_group_check.elapsed() >= Duration::from_secs(5)
            {
                last_group_check = Instant::now();
                let covered = shared.members.covered();
                if all_partitions.is_subset(&covered) {
                    orphan_checks = 0;
                } else {
                    orphan_checks += 1;
                    if orphan_checks >= 3 {
                        let orphans = all_partitions.difference(&covered).count();
                        warn!(thread = member, orphans, "partitions without a live owner");
                        return Ok(Session::Rejoin);
                    }
                }
            }
        }
        Ok(Session::Stopped)
    })();
    let mut guard = tasks.lock();
    match &result {
        Ok(Session::Stopped) => {
            info!(
                thread = member,
                "stream thread stopping: committing and closing tasks"
            );
            guard.close_all(true)?;
            if let Err(e) = shared.members.leave(member) {
                warn!(thread = member, error = %e, "withdrawing from the members map");
            }
        }
        Ok(Session::Rejoin) => guard.close_all(true)?,
        Err(e) => {
            warn!(thread = member, error = %e, "closing tasks without a final commit");
            let _ = guard.close_all(false);
        }
    }
    drop(guard);
    result
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::{Progress, at_end, caught_up};
    use crate::record::TopicPartition;

    #[test]
    fn an_engine_is_caught_up_when_its_caught_up_threads_own_every_input_partition() {
        let tp = |t: &str, p| TopicPartition::new(t, p);
        let inputs: BTreeSet<_> = [tp("a", 0), tp("a", 1), tp("b", 0), tp("b", 1)].into();
        let thread = |owned: Option<Vec<TopicPartition>>| {
            let progress = Arc::new(Progress::default());
            progress.set(owned);
            progress
        };
        let none = || std::iter::empty();
        // Both threads between two assignments: each owns nothing and is at the end of it.
        assert!(!caught_up(
            &inputs,
            &[thread(Some(vec![])), thread(Some(vec![]))],
            none()
        ));
        // Each at the end of its half.
        let halves = [
            thread(Some(vec![tp("a", 0), tp("b", 0)])),
            thread(Some(vec![tp("a", 1), tp("b", 1)])),
        ];
        assert!(caught_up(&inputs, &halves, none()));
        // One thread is still working.
        halves[1].set(None);
        assert!(!caught_up(&inputs, &halves, none()));
        // One thread owns half; another instance announced the other half.
        let one = [thread(Some(vec![tp("a", 0), tp("b", 0)]))];
        assert!(!caught_up(&inputs, &one, none()));
        assert!(caught_up(&inputs, &one, [tp("a", 1), tp("b", 1)].into_iter()));
    }

    #[test]
    fn a_partition_is_at_its_end_when_the_task_or_a_drained_consumer_reached_it() {
        let read_to = |p: Option<u64>| move || p;
        // The task processed the last record; the consumer is not asked.
        assert!(at_end(10, true, read_to(Some(10)), Some(10)));
        assert!(at_end(10, false, || panic!("not needed"), Some(10)));
        // The last offsets hold no record for the task (a transaction marker, a gap): the
        // consumer read past them and the task has nothing left.
        assert!(at_end(9, true, read_to(Some(11)), Some(11)));
        // Records still buffered, or not read yet, or an end that could not be read.
        assert!(!at_end(9, false, read_to(Some(11)), Some(11)));
        assert!(!at_end(9, true, read_to(Some(9)), Some(11)));
        assert!(!at_end(9, true, read_to(None), Some(11)));
        assert!(!at_end(9, true, read_to(Some(11)), None));
    }
}
