//! The changelog of a task: one partition of the sub-topology's compacted changelog topic,
//! holding every store write of the task and, at the end of each commit, a commit marker with
//! the input positions and stream time that the writes before it correspond to.
//!
//! Keys: `0x00 | store name length (u8) | store name | store key` for writes, and
//! [`MARKER_KEY`] for markers. Keeping the positions in the same partition as the state means
//! that even where the broker offers no transactions, the state and the positions it belongs
//! to are restored together: restore applies writes only up to the last marker.

use serde::{Deserialize, Serialize};

/// The key of commit markers.
pub const MARKER_KEY: &[u8] = b"\x01commit";

/// Written last in every commit of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMarker {
    /// Next offset to read per input partition: (topic, partition, offset).
    pub positions: Vec<(String, u32, u64)>,
    /// The task's stream time at the commit.
    pub stream_time: i64,
    /// Writes of this commit start at or after this changelog offset; anything between the
    /// previous marker and this offset is a torn commit of a crashed instance, never applied.
    pub valid_from: u64,
}

/// The changelog key of a store write.
pub fn entry_key(store: &str, key: &[u8]) -> Vec<u8> {
    let name = store.as_bytes();
    debug_assert!(name.len() < 256, "store names are short");
    let mut out = Vec::with_capacity(2 + name.len() + key.len());
    out.push(0);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(key);
    out
}

/// A changelog record, parsed.
#[derive(Debug, PartialEq)]
pub enum Entry<'a> {
    Write {
        store: &'a str,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    },
    Marker(CommitMarker),
}

/// Parses a changelog record; `None` for a record this version does not understand.
pub fn parse<'a>(key: &'a [u8], value: Option<&'a [u8]>) -> Option<Entry<'a>> {
    if key == MARKER_KEY {
        return postcard::from_bytes(value?).ok().map(Entry::Marker);
    }
    let (&tag, rest) = key.split_first()?;
    if tag != 0 {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (name, user_key) = rest.split_at_checked(len as usize)?;
    Some(Entry::Write {
        store: std::str::from_utf8(name).ok()?,
        key: user_key,
        value,
    })
}

pub fn encode_marker(marker: &CommitMarker) -> Vec<u8> {
    postcard::to_stdvec(marker).expect("markers encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let key = entry_key("drivers", b"d1");
        assert_eq!(
            parse(&key, Some(b"v")),
            Some(Entry::Write {
                store: "drivers",
                key: b"d1",
                value: Some(b"v")
            })
        );
        let marker = CommitMarker {
            positions: vec![("gps.pings".into(), 3, 17)],
            stream_time: 5,
            valid_from: 9,
        };
        let bytes = encode_marker(&marker);
        assert_eq!(parse(MARKER_KEY, Some(&bytes)), Some(Entry::Marker(marker)));
    }
}
