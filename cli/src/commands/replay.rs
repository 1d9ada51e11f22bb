//! `fleetstream replay`: the full topology over a file of input records, deterministically.
//!
//! The records are appended to their topics in file order, then processed in that order, each
//! followed through every step before the next (see the runtime's lockstep runs), with every
//! timer due by the final stream time fired. Each output topic is written to
//! `<out>/<topic>.jsonl` as `{"key": ..., "value": ...}` lines in the order produced, so the
//! same input gives byte-identical output, whatever the partition count.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use fleetstream_operators::topology;
use fleetstream_topology::log::Log;
use fleetstream_topology::{Engine, EngineConfig, LogRecord, ProducerRecord, TopicPartition, partition_for};

use crate::backend;
use crate::config::AppConfig;
use crate::input::{InputRecord, read_jsonl_with_prefix};

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Input records, one JSON object per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Directory for the output topics.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Partitions per topic (the result does not depend on it).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Keep the log and state here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run on Kafka instead of the embedded log, under a fresh application id and topic
    /// prefix, so that neither the application's topics nor its state are touched. Without
    /// it a replay runs on a private embedded log even when the configuration names brokers.
    #[arg(long)]
    pub brokers: Option<String>,
}

/// What a replay produced.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub inputs: usize,
    /// Records per output topic.
    pub outputs: BTreeMap<String, usize>,
}

pub fn replay(args: &ReplayArgs) -> Result<ReplayReport> {
    let mut config = AppConfig::load(args.config.as_deref())?;
    config.kafka.brokers = args.brokers.clone().unwrap_or_default();
    if config.uses_kafka() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let replay = format!("replay-{nanos:x}");
        config.app_id = format!("{}-{replay}", config.app_id);
        config.topic_prefix = format!("{}{replay}.", config.topic_prefix);
    }
    let records = read_jsonl_with_prefix(&args.input, &config.topic_prefix)?;
    let jobs = topology::build(&config.app_id, &config.jobs()).context("building the topology")?;
    let sources = jobs.topology.source_topics();
    for r in &records {
        if !sources.contains(&r.topic) || jobs.topology.is_internal(&r.topic) {
            bail!(
                "{}:{}: unknown input topic {:?} (expected one of {})",
                args.input.display(),
                r.line,
                r.topic,
                sources.join(", ")
            );
        }
    }
    let temp;
    let dir: &Path = match &args.data_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path()
        }
    };
    // Stores, and result tables without a directory of their own, live in the replay's directory.
    config.data_dir = dir.to_path_buf();
    let backend = if config.uses_kafka() {
        backend::kafka(&config, dir)?
    } else {
        backend::embedded(&config, dir)?
    };
    let partitions = args.partitions.unwrap_or(config.partitions).max(1);
    let engine_config = EngineConfig {
        partitions,
        ..config.engine()
    };
    let engine = Engine::new(
        jobs.topology,
        backend.log.clone(),
        backend.state.clone(),
        engine_config,
    )?;
    let inputs = append_inputs(&engine, &*backend.log, &records)?;

    let mut lockstep = engine.lockstep()?;
    let mut outputs: Vec<ProducerRecord> = Vec::new();
    for (i, (tp, record)) in inputs.iter().enumerate() {
        lockstep.process(tp, record)?;
        if i % 20_000 == 19_999 {
            lockstep.commit()?;
            outputs.extend(lockstep.take_outputs());
        }
    }
    lockstep.fire_due_timers()?;
    outputs.extend(lockstep.take_outputs());
    lockstep.close()?;
    let sinks = crate::sinks::drain(&config, &backend.log)?;
    if sinks > 0 {
        tracing::info!(sinks, "every output record written to the configured sinks");
    }

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut report = ReplayReport {
        inputs: inputs.len(),
        outputs: BTreeMap::new(),
    };
    let mut files: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    for topic in engine.topology().output_topics() {
        files.insert(topic.clone(), create(&args.out, &topic, &config.topic_prefix)?);
        report.outputs.insert(topic, 0);
    }
    for record in &outputs {
        if !files.contains_key(&*record.topic) {
            files.insert(
                record.topic.to_string(),
                create(&args.out, &record.topic, &config.topic_prefix)?,
            );
        }
        let file = files.get_mut(&*record.topic).expect("inserted");
        write_line(file, &record.key, record.value.as_deref())?;
        *report.outputs.entry(record.topic.to_string()).or_default() += 1;
    }
    for (topic, mut file) in files {
        file.flush().with_context(|| format!("writing {topic}"))?;
    }
    Ok(report)
}

/// Appends the input records to their topics in file order; returns where each landed.
fn append_inputs(
    engine: &Engine,
    log: &dyn Log,
    records: &[InputRecord],
) -> Result<Vec<(TopicPartition, LogRecord)>> {
    let mut producer = log.producer(None, None)?;
    let mut out = Vec::with_capacity(records.len());
    let mut last_ts = 0;
    for chunk in records.chunks(10_000) {
        let mut batch = Vec::with_capacity(chunk.len());
        for r in chunk {
            let partitions = engine.partitions_of(&r.topic).unwrap_or(1);
            let partition = partition_for(r.key.as_bytes(), partitions);
            // A record without a valid time keeps the previous one; its topic's DLQ says why.
            let ts = r.ts.unwrap_or(last_ts);
            last_ts = ts;
            batch.push(ProducerRecord {
                topic: r.topic.as_str().into(),
                partition,
                ts,
                key: Bytes::from(r.key.clone()),
                value: Some(Bytes::from(r.value.clone())),
            });
        }
        for record in &batch {
            producer.send(record.clone())?;
        }
        let offsets = producer.commit(None)?;
        for (record, offset) in batch.into_iter().zip(offsets) {
            let tp = TopicPartition::new(&*record.topic, record.partition);
            out.push((
                tp,
                LogRecord {
                    offset,
                    ts: record.ts,
                    key: record.key,
                    value: record.value,
                },
            ));
        }
    }
    Ok(out)
}

fn create(dir: &Path, topic: &str, prefix: &str) -> Result<std::io::BufWriter<std::fs::File>> {
    let name = topic.strip_prefix(prefix).unwrap_or(topic);
    let path = dir.join(format!("{name}.jsonl"));
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

/// `{"key": <key as a JSON string>, "value": <value as produced>}`.
pub fn write_line(out: &mut impl Write, key: &[u8], value: Option<&[u8]>) -> Result<()> {
    let key = serde_json::to_string(&String::from_utf8_lossy(key)).expect("strings serialize");
    out.write_all(b"{\"key\":")?;
    out.write_all(key.as_bytes())?;
    out.write_all(b",\"value\":")?;
    match value {
        Some(v) if serde_json::from_slice::<serde::de::IgnoredAny>(v).is_ok() => out.write_all(v)?,
        Some(v) => out.write_all(
            serde_json::to_string(&String::from_utf8_lossy(v))
                .expect("strings")
                .as_bytes(),
        )?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b"}\n")?;
    Ok(())
}
