//! `fleetstream topics`: look into the embedded log of a data directory.

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
}

fn open(args: &TopicsArgs) -> Result<backend::Backend> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if !config.data_dir.join("log").exists() {
        anyhow::bail!(
            "no fleetstream data in {} (use --data-dir)",
            config.data_dir.display()
        );
    }
    backend::open(&config)
}

pub fn topics(command: &TopicsCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        TopicsCommand::List(args) => {
            let backend = open(args)?;
            let log = backend.embedded.as_ref().expect("the embedded log");
            for (topic, partitions) in log.topics() {
                let mut records = 0;
                for p in 0..partitions {
                    let tp = TopicPartition::new(topic.clone(), p);
                    records += log.end_offset(&tp)? - log.start_offset(&tp)?;
                }
                writeln!(out, "{topic}\t{partitions} partitions\t{records} records")?;
            }
        }
        TopicsCommand::Dump { topic, args } => {
            let backend = open(args)?;
            dump(&*backend.log, topic, &mut out)?;
        }
    }
    Ok(())
}

/// Writes every record of `topic`, partition by partition, in offset order.
pub fn dump(log: &dyn Log, topic: &str, out: &mut impl Write) -> Result<usize> {
    let partitions = log.partitions(topic)?;
    let mut count = 0;
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        let end = log.end_offset(&tp)?;
        let mut consumer = log.consumer(Membership::Manual)?;
        consumer.assign(&[(tp, 0)])?;
        let mut position = 0;
        while position < end {
            let fetched = consumer.poll(10_000, Duration::from_millis(200))?;
            if fetched.is_empty() {
                break;
            }
            for record in fetched.into_iter().flat_map(|f| f.records) {
                position = record.offset + 1;
                write_line(out, &record.key, record.value.as_deref())?;
                count += 1;
            }
        }
    }
    Ok(count)
}
