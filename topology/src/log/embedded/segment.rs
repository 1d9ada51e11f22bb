//! One partition on disk: append-only segment files of framed records, a sparse index per
//! segment, and an in-memory cache of the newest records that most reads are served from.
//!
//! Frame: `len: u32 | crc32(payload): u32 | payload`, payload =
//! `offset: u64 | ts: i64 | key_len: u32 | key | value_len: i32 (-1 = tombstone) | value`,
//! all little-endian. A frame that is short or fails its checksum ends the segment: it can only
//! be the tail of a write that a crash cut off, and it lies beyond the committed end.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::LogError;
use crate::record::LogRecord;

const INDEX_EVERY_BYTES: u64 = 4096;
const HEADER: usize = 8;

#[derive(Debug, Clone, Copy)]
pub(super) struct PartitionOptions {
    pub(super) segment_bytes: u64,
    /// Bytes of newest records kept in memory; `usize::MAX` keeps all (in-memory logs).
    pub(super) cache_bytes: usize,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
    len: u64,
    /// (offset, file position) every few KiB, ascending.
    index: Vec<(u64, u64)>,
    next_offset: u64,
}

#[derive(Debug)]
pub(super) struct PartitionStore {
    dir: Option<PathBuf>,
    options: PartitionOptions,
    segments: Vec<Segment>,
    writer: Option<BufWriter<File>>,
    cache: VecDeque<LogRecord>,
    cache_bytes: usize,
    /// Offset of `cache[0]` (equals `end` when the cache is empty).
    cache_base: u64,
    /// First offset still stored.
    start: u64,
    /// Next offset to assign (appended, maybe not yet committed).
    end: u64,
    /// Records below this offset are committed and visible.
    committed: u64,
    since_index: u64,
    /// The frame being written, reused from append to append.
    frame: Vec<u8>,
}

impl PartitionStore {
    pub(super) fn in_memory(options: PartitionOptions) -> Self {
        PartitionStore {
            dir: None,
            options,
            segments: Vec::new(),
            writer: None,
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_base: 0,
            start: 0,
            end: 0,
            committed: 0,
            since_index: 0,
            frame: Vec::new(),
        }
    }

    /// Opens the partition in `dir`, keeping records below `committed` and cutting off the rest.
    pub(super) fn open(dir: &Path, options: PartitionOptions, committed: u64) -> Result<Self, LogError> {
        fs::create_dir_all(dir).map_err(|e| LogError::io(dir.display(), e))?;
        let mut bases: Vec<u64> = fs::read_dir(dir)
            .map_err(|e| LogError::io(dir.display(), e))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                entry
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_suffix(".seg")?
                    .parse()
                    .ok()
            })
            .collect();
        bases.sort_unstable();
        let mut store = PartitionStore::in_memory(options);
        store.dir = Some(dir.to_path_buf());
        for base in bases {
            let path = segment_path(dir, base);
            if base >= committed {
                // Holds only records of a commit that never completed.
                fs::remove_file(&path).map_err(|e| LogError::io(path.display(), e))?;
                continue;
            }
            store.segments.push(scan_segment(&path, base, committed)?);
        }
        if let Some(last) = store.segments.last()
            && last.next_offset != committed
        {
            return Err(LogError::Corrupt {
                path: dir.display().to_string(),
                position: last.len,
                detail: format!(
                    "segments end at offset {}, the journal says {committed}",
                    last.next_offset
                ),
            });
        }
        store.start = store.segments.first().map_or(committed, |s| s.base);
        store.end = committed;
        store.committed = committed;
        store.cache_base = committed;
        Ok(store)
    }

    pub(super) fn end(&self) -> u64 {
        self.end
    }

    pub(super) fn committed(&self) -> u64 {
        self.committed
    }

    pub(super) fn start(&self) -> u64 {
        self.start
    }

    /// Appends a record (not yet visible) and returns its offset.
    pub(super) fn append(&mut self, ts: i64, key: Bytes, value: Option<Bytes>) -> Result<u64, LogError> {
        let offset = self.end;
        let record = LogRecord {
            offset,
            ts,
            key,
            value,
        };
        if self.dir.is_some() {
            self.write_frame(&record)?;
        }
        self.cache_bytes += record_size(&record);
        self.cache.push_back(record);
        self.end += 1;
        Ok(offset)
    }

    fn write_frame(&mut self, record: &LogRecord) -> Result<(), LogError> {
        let last_full = self
            .segments
            .last()
            .is_none_or(|s| s.len >= self.options.segment_bytes);
        if last_full {
            self.flush()?;
            let path = segment_path(self.dir.as_ref().expect("frames only on disk"), record.offset);
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(path.display(), e))?;
            self.segments.push(Segment {
                base: record.offset,
                path,
                len: 0,
                index: Vec::new(),
                next_offset: record.offset,
            });
            self.writer = Some(BufWriter::with_capacity(1 << 16, file));
            self.since_index = INDEX_EVERY_BYTES;
        } else if self.writer.is_none() {
            // The active segment of a reopened partition.
            let path = &self.segments.last().expect("not full means present").path;
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| LogError::io(path.display(), e))?;
            self.writer = Some(BufWriter::with_capacity(1 << 16, file));
        }
        encode_frame_into(record, &mut self.frame);
        let frame = &self.frame;
        let segment = self.segments.last_mut().expect("a segment to write to");
        if self.since_index >= INDEX_EVERY_BYTES {
            segment.index.push((record.offset, segment.len));
            self.since_index = 0;
        }
        let writer = self.writer.as_mut().expect("an open writer");
        writer
            .write_all(frame)
            .map_err(|e| LogError::io(segment.path.display(), e))?;
        segment.len += frame.len() as u64;
        segment.next_offset = record.offset + 1;
        self.since_index += frame.len() as u64;
        Ok(())
    }

    /// Writes buffered frames to the file.
    pub(super) fn flush(&mut self) -> Result<(), LogError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().map_err(|e| LogError::io("segment", e))?;
        }
        Ok(())
    }

    pub(super) fn sync(&mut self) -> Result<(), LogError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().map_err(|e| LogError::io("segment", e))?;
            writer
                .get_ref()
                .sync_data()
                .map_err(|e| LogError::io("segment", e))?;
        }
        Ok(())
    }

    /// Makes every appended record visible and trims the cache to its budget.
    pub(super) fn publish(&mut self) {
        self.committed = self.end;
        if self.dir.is_some() {
            while self.cache_bytes > self.options.cache_bytes {
                let Some(old) = self.cache.pop_front() else { break };
                self.cache_bytes -= record_size(&old);
                self.cache_base += 1;
            }
        }
    }

    /// Committed records from `from`, at most `max`.
    pub(super) fn read(&self, from: u64, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let from = from.max(self.start);
        if from >= self.committed || max == 0 {
            return Ok(Vec::new());
        }
        let upto = self.committed.min(from.saturating_add(max as u64));
        if from >= self.cache_base {
            let skip = (from - self.cache_base) as usize;
            let take = (upto - from) as usize;
            return Ok(self.cache.range(skip..skip + take).cloned().collect());
        }
        self.read_disk(from, upto)
    }

    fn read_disk(&self, from: u64, upto: u64) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        let first = self
            .segments
            .partition_point(|s| s.base <= from)
            .saturating_sub(1);
        for segment in &self.segments[first..] {
            if out.len() as u64 >= upto - from || segment.base >= upto {
                break;
            }
            let pos = match segment.index.partition_point(|(o, _)| *o <= from) {
                0 => 0,
                i => segment.index[i - 1].1,
            };
            let file = File::open(&segment.path).map_err(|e| LogError::io(segment.path.display(), e))?;
            let mut reader = BufReader::with_capacity(1 << 16, file);
            reader
                .seek(SeekFrom::Start(pos))
                .map_err(|e| LogError::io(segment.path.display(), e))?;
            let mut position = pos;
            while position < segment.len {
                let Some((record, size)) = read_frame(&mut reader, &segment.path, position)? else {
                    break;
                };
                position += size;
                if record.offset >= upto {
                    break;
                }
                if record.offset >= from && record.offset >= self.start {
                    out.push(record);
                }
            }
        }
        // Records still in the cache but not reached on disk (unflushed): take them from memory.
        if let Some(last) = out.last().map(|r| r.offset + 1)
            && last < upto
            && last >= self.cache_base
        {
            let skip = (last - self.cache_base) as usize;
            out.extend(self.cache.iter().skip(skip).take((upto - last) as usize).cloned());
        }
        Ok(out)
    }

    /// Drops every record below `offset` whose segment lies wholly below it (retention).
    pub(super) fn truncate_before(&mut self, offset: u64) -> Result<(), LogError> {
        while self.segments.len() > 1 && self.segments[1].base <= offset {
            let old = self.segments.remove(0);
            fs::remove_file(&old.path).map_err(|e| LogError::io(old.path.display(), e))?;
            self.start = self.segments[0].base;
        }
        if self.dir.is_none() {
            while self.cache_base < offset && !self.cache.is_empty() {
                let old = self.cache.pop_front().expect("non-empty");
                self.cache_bytes -= record_size(&old);
                self.cache_base += 1;
            }
            self.start = self.start.max(self.cache_base.min(offset));
        }
        Ok(())
    }

    /// Bytes stored on disk (or in memory for in-memory logs).
    pub(super) fn size_bytes(&self) -> u64 {
        if self.dir.is_some() {
            self.segments.iter().map(|s| s.len).sum()
        } else {
            self.cache_bytes as u64
        }
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

fn record_size(record: &LogRecord) -> usize {
    48 + record.key.len() + record.value.as_ref().map_or(0, |v| v.len())
}

#[cfg(test)]
pub(super) fn encode_frame(record: &LogRecord) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame_into(record, &mut frame);
    frame
}

/// Encodes a record's frame into `frame`, which is cleared first (appends reuse one buffer).
fn encode_frame_into(record: &LogRecord, frame: &mut Vec<u8>) {
    let value_len = record.value.as_ref().map_or(0, |v| v.len());
    let payload_len = 8 + 8 + 4 + record.key.len() + 4 + value_len;
    frame.clear();
    frame.reserve(HEADER + payload_len);
    frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&record.offset.to_le_bytes());
    frame.extend_from_slice(&record.ts.to_le_bytes());
    frame.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
    frame.extend_from_slice(&record.key);
    match &record.value {
        Some(v) => {
            frame.extend_from_slice(&(v.len() as i32).to_le_bytes());
            frame.extend_from_slice(v);
        }
        None => frame.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    let crc = crc32fast::hash(&frame[HEADER..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads one frame; `None` at a clean or torn end.
fn read_frame(
    reader: &mut impl Read,
    path: &Path,
    position: u64,
) -> Result<Option<(LogRecord, u64)>, LogError> {
    let mut header = [0u8; HEADER];
    if !read_full(reader, &mut header).map_err(|e| LogError::io(path.display(), e))? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if !(24..=(256 << 20)).contains(&len) {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    if !read_full(reader, &mut payload).map_err(|e| LogError::io(path.display(), e))? {
        return Ok(None);
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let record = decode_payload(Bytes::from(payload)).ok_or_else(|| LogError::Corrupt {
        path: path.display().to_string(),
        position,
        detail: "frame with a valid checksum but inconsistent lengths".into(),
    })?;
    Ok(Some((record, (HEADER + len) as u64)))
}

fn decode_payload(payload: Bytes) -> Option<LogRecord> {
    let offset = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let ts = i64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    let key_len = u32::from_le_bytes(payload.get(16..20)?.try_into().ok()?) as usize;
    let key_end = 20 + key_len;
    let key = payload.slice(20..key_end.min(payload.len()));
    let value_len = i32::from_le_bytes(payload.get(key_end..key_end + 4)?.try_into().ok()?);
    let value = if value_len < 0 {
        None
    } else {
        let start = key_end + 4;
        let end = start + value_len as usize;
        if end != payload.len() {
            return None;
        }
        Some(payload.slice(start..end))
    };
    Some(LogRecord {
        offset,
        ts,
        key,
        value,
    })
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

/// Reads a segment, rebuilds its index and cuts it at the first frame at or past `committed`
/// (or at a torn frame).
fn scan_segment(path: &Path, base: u64, committed: u64) -> Result<Segment, LogError> {
    let file = File::open(path).map_err(|e| LogError::io(path.display(), e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut position = 0u64;
    let mut index = Vec::new();
    let mut since = INDEX_EVERY_BYTES;
    let mut next = base;
    while let Some((record, size)) = read_frame(&mut reader, path, position)? {
        if record.offset >= committed || record.offset != next {
            break;
        }
        if since >= INDEX_EVERY_BYTES {
            index.push((record.offset, position));
            since = 0;
        }
        since += size;
        position += size;
        next = record.offset + 1;
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| LogError::io(path.display(), e))?;
    file.set_len(position)
        .map_err(|e| LogError::io(path.display(), e))?;
    Ok(Segment {
        base,
        path: path.to_path_buf(),
        len: position,
        index,
        next_offset: next,
    })
}
