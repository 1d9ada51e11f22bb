//! Replay input: JSON lines `{"topic": "...", "key": "...", "value": {...}}`; the event time is
//! `value.ts`.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// One input line.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub line: usize,
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    /// `value.ts` when it is a valid timestamp.
    pub ts: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    topic: String,
    key: String,
    value: serde_json::Value,
}

/// Reads every record of a JSON-lines file, naming the line of any malformed envelope. Topic
/// names are taken as default names: `prefix` (the configured topic prefix) is put in front of
/// those that do not carry it yet.
pub fn read_jsonl_with_prefix(path: &Path, prefix: &str) -> Result<Vec<InputRecord>> {
    let mut records = read_jsonl(path)?;
    if !prefix.is_empty() {
        for r in &mut records {
            if !r.topic.starts_with(prefix) {
                r.topic = format!("{prefix}{}", r.topic);
            }
        }
    }
    Ok(records)
}

/// Reads every record of a JSON-lines file, naming the line of any malformed envelope.
pub fn read_jsonl(path: &Path) -> Result<Vec<InputRecord>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.with_context(|| format!("{}:{line_no}: reading", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let envelope: Envelope = match serde_json::from_str(&line) {
            Ok(e) => e,
            Err(e) => bail!(
                "{}:{line_no}: not an input record {{\"topic\", \"key\", \"value\"}}: {e}",
                path.display()
            ),
        };
        let ts = envelope
            .value
            .get("ts")
            .and_then(|t| t.as_str())
            .and_then(|t| fleetstream_schemas::time::parse(t).ok())
            .map(|t| t.timestamp_millis());
        out.push(InputRecord {
            line: line_no,
            topic: envelope.topic,
            key: envelope.key,
            value: serde_json::to_vec(&envelope.value).expect("a parsed value serializes"),
            ts,
        });
    }
    Ok(out)
}
