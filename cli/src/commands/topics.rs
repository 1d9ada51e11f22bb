//! `fleetstream topics`: list, append to and dump the topics of the embedded log of a data
//! directory or of a Kafka cluster. Only the log is opened, never the state, so that the
//! commands work beside a running instance.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use fleetstream_topology::TopicPartition;
use fleetstream_topology::log::{Log, Membership};

use crate::backend;
use crate::commands::replay::write_line;
use crate::config::AppConfig;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TopicsCommand {
    /// Topics with their partition counts and record counts.
    List(TopicsArgs),
    /// Append input records (JSON lines `{"topic", "key", "value"}`) to their topics.
    Produce {
        #[arg(long)]
        input: std::path::PathBuf,
        #[command(flatten)]
        args: TopicsArgs,
    },
    /// Every record of a topic as `{"key": ..., "value": ...}` lines, partition by partition.
    Dump {
        topic: String,
        #[command(flatten)]
        args: TopicsArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct TopicsArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (instead of the embedded log of the data directory).
    #[arg(long)]
    pub brokers: Option<String>,
}

fn open(args: &TopicsArgs) -> Result<backend::LogOnly> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(brokers) = &args.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if !config.uses_kafka() && !config.data_dir.join("log").exists() {
        anyhow::bail!(
            "no fleetstream data in {} (use --data-dir)",
            config.data_dir.display()
        );
    }
    backend::open_log(&config)
}

pub fn topics(command: &TopicsCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        TopicsCommand::List(args) => {
            let backend = open(args)?;
            let topics = match (&backend.embedded, &backend.kafka) {
                (Some(log), _) => log.topics(),
                (_, Some(log)) => log.topics()?,
                _ => unreachable!("a backend has a log"),
            };
            let log = &*backend.log;
            for (topic, partitions) in topics {
                let mut records = 0;
                for p in 0..partitions {
                    let tp = TopicPartition::new(topic.clone(), p);
                    records += log.end_offset(&tp)? - log.start_offset(&tp)?;
                }
                writeln!(out, "{topic}\t{partitions} partitions\t{records} records")?;
            }
        }
        TopicsCommand::Produce { input, args } => {
            let backend = open(args)?;
            let prefix = AppConfig::load(args.config.as_deref())?.topic_prefix;
            let count = produce(&*backend.log, input, &prefix)?;
            eprintln!("{count} records appended");
        }
        TopicsCommand::Dump { topic, args } => {
            let backend = open(args)?;
            let prefix = AppConfig::load(args.config.as_deref())?.topic_prefix;
            let topic = &if topic.starts_with(&prefix) {
                topic.clone()
            } else {
                format!("{prefix}{topic}")
            };
            dump(&*backend.log, topic, &mut out)?;
        }
    }
    Ok(())
}

/// Appends the records of a JSON-lines file to their topics (partitioned by key), creating
/// missing topics with the configured partition count.
pub fn produce(log: &dyn Log, input: &std::path::Path, prefix: &str) -> Result<usize> {
    let records = crate::input::read_jsonl_with_prefix(input, prefix)?;
    let mut producer = log.producer(None, None)?;
    let mut partitions: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for r in &records {
        let count = match partitions.get(&r.topic) {
            Some(n) => *n,
            None => {
                let n = match log.partitions(&r.topic) {
                    Ok(n) => n,
                    Err(fleetstream_topology::LogError::UnknownTopic { .. }) => {
                        anyhow::bail!(
                            "{}:{}: topic {:?} does not exist (start `fleetstream run` once to create it)",
                            input.display(),
                            r.line,
                            r.topic
                        )
                    }
                    Err(e) => return Err(e.into()),
                };
                partitions.insert(r.topic.clone(), n);
                n
            }
        };
        producer.send(fleetstream_topology::ProducerRecord {
            topic: r.topic.as_str().into(),
            partition: fleetstream_topology::partition_for(r.key.as_bytes(), count),
            ts: r.ts.unwrap_or_default(),
            key: bytes::Bytes::from(r.key.clone()),
            value: Some(bytes::Bytes::from(r.value.clone())),
        })?;
    }
    producer.commit(None)?;
    Ok(records.len())
}

/// How long a dump waits for the next record below the end offset.
const DUMP_STALL: Duration = Duration::from_secs(20);

/// Writes every record of `topic`, partition by partition, in offset order.
pub fn dump(log: &dyn Log, topic: &str, out: &mut impl Write) -> Result<usize> {
    let partitions = log.partitions(topic)?;
    let mut count = 0;
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        let end = log.end_offset(&tp)?;
        let mut position = log.start_offset(&tp)?;
        if position >= end {
            continue;
        }
        let mut consumer = log.consumer(Membership::Manual)?;
        consumer.assign(&[(tp.clone(), position)])?;
        // Records below `end` are committed, so they come: a broker only needs time for the
        // first fetch. Offsets may have gaps (transaction markers), hence the progress clock.
        let mut progress = std::time::Instant::now();
        while position < end {
            let fetched = consumer.poll(10_000, Duration::from_millis(200))?;
            if fetched.is_empty() {
                anyhow::ensure!(
                    progress.elapsed() < DUMP_STALL,
                    "{tp}: no records past offset {position} within {DUMP_STALL:?} (end offset {end})"
                );
                if consumer.position(&tp).is_some_and(|p| p >= end) {
                    break;
                }
                continue;
            }
            progress = std::time::Instant::now();
            for record in fetched.into_iter().flat_map(|f| f.records) {
                position = record.offset + 1;
                write_line(out, &record.key, record.value.as_deref())?;
                count += 1;
            }
        }
    }
    Ok(count)
}
