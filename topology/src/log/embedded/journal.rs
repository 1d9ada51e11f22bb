//! The commit journal: one framed entry per commit, naming every partition's new end and the
//! group positions committed with it. A commit happened iff its journal entry is complete, so
//! on open the partitions are cut back to the ends the journal names — that is what makes a
//! commit of records on many partitions plus consumer positions atomic.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::record::TopicPartition;

/// Rewrite the journal as one snapshot entry when it grows past this.
const COMPACT_AT_BYTES: u64 = 16 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    ends: Vec<(String, u32, u64)>,
    groups: Vec<(String, String, u32, u64)>,
}

/// What the journal says: committed ends and group positions.
#[derive(Debug, Default, Clone)]
pub(super) struct JournalState {
    pub(super) ends: HashMap<TopicPartition, u64>,
    pub(super) groups: HashMap<(String, TopicPartition), u64>,
}

impl JournalState {
    fn apply(&mut self, entry: Entry) {
        for (topic, partition, end) in entry.ends {
            self.ends.insert(TopicPartition::new(topic, partition), end);
        }
        for (group, topic, partition, offset) in entry.groups {
            self.groups
                .insert((group, TopicPartition::new(topic, partition)), offset);
        }
    }

    fn snapshot(&self) -> Entry {
        let mut ends: Vec<_> = self
            .ends
            .iter()
            .map(|(tp, e)| (tp.topic.clone(), tp.partition, *e))
            .collect();
        ends.sort();
        let mut groups: Vec<_> = self
            .groups
            .iter()
            .map(|((g, tp), o)| (g.clone(), tp.topic.clone(), tp.partition, *o))
            .collect();
        groups.sort();
        Entry { ends, groups }
    }
}

#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    fsync: bool,
}

impl Journal {
    /// Opens (or creates) the journal and reads its state, cutting off a torn last entry.
    pub(super) fn open(dir: &Path, fsync: bool) -> Result<(Journal, JournalState), LogError> {
        let path = dir.join("journal");
        let mut state = JournalState::default();
        let mut good = 0u64;
        if path.exists() {
            let file = File::open(&path).map_err(|e| LogError::io(path.display(), e))?;
            let mut reader = BufReader::new(file);
            loop {
                let mut header = [0u8; 8];
                if reader.read_exact(&mut header).is_err() {
                    break;
                }
                let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
                let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
                let mut payload = vec![0u8; len];
                if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
                    break;
                }
                let Ok(entry) = postcard::from_bytes::<Entry>(&payload) else {
                    break;
                };
                state.apply(entry);
                good += 8 + len as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(path.display(), e))?;
        file.set_len(good).map_err(|e| LogError::io(path.display(), e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| LogError::io(path.display(), e))?;
        Ok((
            Journal {
                path,
                file,
                len: good,
                fsync,
            },
            state,
        ))
    }

    /// Appends one commit; when the journal has grown large, rewrites it as a snapshot of
    /// `state` (which already includes this commit) instead.
    pub(super) fn append(
        &mut self,
        ends: Vec<(String, u32, u64)>,
        groups: Vec<(String, String, u32, u64)>,
        state: &JournalState,
    ) -> Result<(), LogError> {
        if self.len >= COMPACT_AT_BYTES {
            return self.rewrite(state);
        }
        let frame = frame(&Entry { ends, groups });
        self.file
            .write_all(&frame)
            .map_err(|e| LogError::io(self.path.display(), e))?;
        if self.fsync {
            self.file
                .sync_data()
                .map_err(|e| LogError::io(self.path.display(), e))?;
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    fn rewrite(&mut self, state: &JournalState) -> Result<(), LogError> {
        let tmp = self.path.with_extension("tmp");
        let frame = frame(&state.snapshot());
        {
            let mut file = File::create(&tmp).map_err(|e| LogError::io(tmp.display(), e))?;
            file.write_all(&frame)
                .map_err(|e| LogError::io(tmp.display(), e))?;
            file.sync_all().map_err(|e| LogError::io(tmp.display(), e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| LogError::io(self.path.display(), e))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| LogError::io(self.path.display(), e))?;
        self.len = frame.len() as u64;
        Ok(())
    }
}

fn frame(entry: &Entry) -> Vec<u8> {
    let payload = postcard::to_stdvec(entry).expect("journal entries encode");
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}
