//! Synthetic inputs: a city of drivers, riders and trips, and a depot of metro drivers with
//! timesheets — deterministic for a seed. The city is generated with the ride reference in the
//! loop, so that drivers answer exactly the offers they receive.

pub mod city;
pub mod depot;

use serde::Serialize;

/// One input record.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub topic: &'static str,
    pub key: String,
    pub value: serde_json::Value,
    /// Event time (ms).
    pub ts: i64,
}

impl Generated {
    pub fn new<T: Serialize>(topic: &'static str, key: impl Into<String>, value: &T, ts: i64) -> Self {
        Generated {
            topic,
            key: key.into(),
            value: serde_json::to_value(value).expect("input records serialize"),
            ts,
        }
    }

    /// The record as a replay input line.
    pub fn to_line(&self) -> String {
        serde_json::json!({"topic": self.topic, "key": self.key, "value": self.value}).to_string()
    }

    /// The value's JSON bytes.
    pub fn value_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.value).expect("values serialize")
    }
}
