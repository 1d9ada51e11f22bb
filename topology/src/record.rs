//! Records: typed inside a topology, bytes on a log.

use std::sync::Arc;

use bytes::Bytes;

/// Event time in milliseconds since the Unix epoch.
pub type EventTime = i64;

/// A typed record flowing between processors.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    /// Event time, ms since the epoch.
    pub ts: EventTime,
}

impl<K, V> Record<K, V> {
    pub fn new(key: K, value: V, ts: EventTime) -> Self {
        Record { key, value, ts }
    }
}

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record as stored on a log partition.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub offset: u64,
    pub ts: EventTime,
    pub key: Bytes,
    /// `None` is a tombstone (compacted topics).
    pub value: Option<Bytes>,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerRecord {
    /// Shared with the other records of its topic: commits group records by topic by pointer.
    pub topic: Arc<str>,
    pub partition: u32,
    pub ts: EventTime,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Whether two records' topics are the same: by pointer first, since the records of one sink or
/// changelog share their topic's name, then by name.
pub fn same_topic(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Kafka's default partitioner (murmur2 of the key bytes), so that fleetstream and any Java
/// producer put the same key on the same partition.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_the_same_by_pointer_or_by_name() {
        let a: Arc<str> = "fleetstream-market-inbox".into();
        let b: Arc<str> = "fleetstream-market-inbox".into();
        let c: Arc<str> = "fleetstream-market-inboy".into();
        assert!(same_topic(&a, &a.clone()));
        assert!(same_topic(&a, &b));
        assert!(!same_topic(&a, &c));
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2 (as signed ints).
        let cases: [(&[u8], i32); 4] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input) as i32,
                expected,
                "{:?}",
                std::str::from_utf8(input)
            );
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for n in 1..20 {
            let p = partition_for(b"driver-42", n);
            assert!(p < n);
            assert_eq!(p, partition_for(b"driver-42", n));
        }
    }
}
