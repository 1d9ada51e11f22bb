//! Dead letters: records that could not be accepted, kept with the reason on `<topic>.dlq`.

use bytes::Bytes;
use serde::Serialize;

use crate::record::EventTime;

/// A rejected record and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The topic the record belongs to (its DLQ is `<topic>.dlq`).
    pub topic: String,
    pub key: Bytes,
    /// The record as received.
    pub value: Option<Bytes>,
    pub ts: EventTime,
    /// The offending field, when one is to blame.
    pub field: Option<String>,
    pub reason: String,
    /// The node that rejected it.
    pub stage: String,
}

/// The JSON value of a DLQ record.
#[derive(Debug, Serialize)]
pub(crate) struct DeadLetterValue<'a> {
    pub(crate) topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) partition: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) offset: Option<u64>,
    pub(crate) key: String,
    /// The original value: its JSON if it is JSON, else its text.
    pub(crate) value: serde_json::Value,
    pub(crate) error: DeadLetterError<'a>,
    pub(crate) stage: &'a str,
    pub(crate) ts: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeadLetterError<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<&'a str>,
    pub(crate) message: &'a str,
}

pub(crate) fn original_value(value: Option<&[u8]>) -> serde_json::Value {
    match value {
        None => serde_json::Value::Null,
        Some(bytes) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())),
    }
}
