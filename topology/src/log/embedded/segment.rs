//! One partition on disk: append-only segment files of framed records, a sparse index per
//! segment, and an in-memory cache of the newest records that most reads are served from.
//!
//! Frame: `len: u32 | crc32(payload): u32 | payload`, payload =
//! `offset: u64 | ts: i64 | key_len: u32 | key | value_len: i32 (-1 = tombstone) | value`,
//! all little-endian. A frame that is short or fails its checksum ends the segment: it can only
//! be the tail of a write that a crash cut off, and it lies beyond the committed end.
//!
//! Appends write each frame into a chunk of memory shared by many records, and the cached
//! record's key and value are slices of it: appending copies a record once and allocates once
//! per chunk, readers share the chunk instead of cloning a record's own buffers, and evicting
//! from the cache frees a chunk at a time rather than two buffers per record.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::LogError;
use crate::record::LogRecord;

const INDEX_EVERY_BYTES: u64 = 4096;
const HEADER: usize = 8;
/// Where a frame's key starts: the header, then offset, timestamp and key length.
const KEY_AT: usize = HEADER + 8 + 8 + 4;
/// A partition's first chunk; each next one doubles, up to [`CHUNK_MAX`], so that rarely
/// written partitions (dead letters, say) hold little and busy ones allocate seldom.
const CHUNK_MIN: usize = 1 << 10;
const CHUNK_MAX: usize = 64 << 10;

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
    /// The unused rest of the chunk that the next frame is written into.
    chunk: BytesMut,
    /// The size of the next chunk.
    next_chunk: usize,
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
            chunk: BytesMut::new(),
            next_chunk: CHUNK_MIN,
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
        let frame = self.frame(offset, ts, &key, value.as_deref());
        if self.dir.is_some() {
            self.write_frame(offset, &frame)?;
        }
        let record = LogRecord {
            offset,
            ts,
            key: frame.slice(KEY_AT..KEY_AT + key.len()),
            value: value.map(|v| frame.slice(frame.len() - v.len()..)),
        };
        self.cache_bytes += record_size(&record);
        self.cache.push_back(record);
        self.end += 1;
        Ok(offset)
    }

    /// Writes a record's frame into the current chunk, or a new one where it does not fit, and
    /// returns it. Frames in memory only (no directory) go without their checksum.
    fn frame(&mut self, offset: u64, ts: i64, key: &[u8], value: Option<&[u8]>) -> Bytes {
        if make_room(&mut self.chunk, frame_len(key, value), self.next_chunk) {
            self.next_chunk = (self.next_chunk * 2).min(CHUNK_MAX);
        }
        put_frame(&mut self.chunk, offset, ts, key, value, self.dir.is_some());
        self.chunk.split().freeze()
    }

    fn write_frame(&mut self, offset: u64, frame: &[u8]) -> Result<(), LogError> {
        let last_full = self
            .segments
            .last()
            .is_none_or(|s| s.len >= self.options.segment_bytes);
        if last_full {
            self.flush()?;
            let path = segment_path(self.dir.as_ref().expect("frames only on disk"), offset);
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(path.display(), e))?;
            self.segments.push(Segment {
                base: offset,
                path,
                len: 0,
                index: Vec::new(),
                next_offset: offset,
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
        let segment = self.segments.last_mut().expect("a segment to write to");
        if self.since_index >= INDEX_EVERY_BYTES {
            segment.index.push((offset, segment.len));
            self.since_index = 0;
        }
        let writer = self.writer.as_mut().expect("an open writer");
        writer
            .write_all(frame)
            .map_err(|e| LogError::io(segment.path.display(), e))?;
        segment.len += frame.len() as u64;
        segment.next_offset = offset + 1;
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
        // What is read lands in chunks that the records share, as appends do.
        let mut chunk = BytesMut::new();
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
                let Some((record, size)) = read_frame(&mut reader, &mut chunk, &segment.path, position)?
                else {
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
    let mut frame = BytesMut::new();
    put_frame(
        &mut frame,
        record.offset,
        record.ts,
        &record.key,
        record.value.as_deref(),
        true,
    );
    frame.to_vec()
}

/// Starts a new chunk of `size` bytes (or `len`, if larger) where the rest of `chunk` holds fewer
/// than `len`; says whether it did.
fn make_room(chunk: &mut BytesMut, len: usize, size: usize) -> bool {
    let full = chunk.capacity() < len;
    if full {
        *chunk = BytesMut::with_capacity(size.max(len));
    }
    full
}

fn frame_len(key: &[u8], value: Option<&[u8]>) -> usize {
    KEY_AT + key.len() + 4 + value.map_or(0, <[u8]>::len)
}

/// Appends a record's frame to `out`, with its checksum or with zero in its place.
fn put_frame(out: &mut BytesMut, offset: u64, ts: i64, key: &[u8], value: Option<&[u8]>, checksum: bool) {
    let start = out.len();
    let len = frame_len(key, value);
    out.reserve(len);
    out.put_u32_le((len - HEADER) as u32);
    out.put_u32_le(0);
    out.put_u64_le(offset);
    out.put_i64_le(ts);
    out.put_u32_le(key.len() as u32);
    out.put_slice(key);
    match value {
        Some(v) => {
            out.put_i32_le(v.len() as i32);
            out.put_slice(v);
        }
        None => out.put_i32_le(-1),
    }
    if checksum {
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads one frame; `None` at a clean or torn end. Its payload goes into `chunk` (into a new
/// chunk where the rest of this one is too small), and the record's key and value are slices of it.
fn read_frame(
    reader: &mut impl Read,
    chunk: &mut BytesMut,
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
    make_room(chunk, len, CHUNK_MAX);
    chunk.resize(len, 0);
    let read = read_full(reader, chunk).map_err(|e| LogError::io(path.display(), e));
    if !matches!(read, Ok(true)) || crc32fast::hash(chunk) != crc {
        chunk.clear();
        return read.map(|_| None);
    }
    let record = decode_payload(chunk.split().freeze()).ok_or_else(|| LogError::Corrupt {
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
    let mut chunk = BytesMut::new();
    while let Some((record, size)) = read_frame(&mut reader, &mut chunk, path, position)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of 0-40 bytes, values of 0-3,000 bytes, every seventh a tombstone and one larger
    /// than a chunk.
    fn records(n: u64) -> Vec<(i64, Bytes, Option<Bytes>)> {
        (0..n)
            .map(|i| {
                let key = Bytes::from(vec![b'k'; (i % 41) as usize]);
                let value = match i {
                    _ if i % 7 == 3 => None,
                    500 => Some(Bytes::from(vec![b'x'; CHUNK_MAX + 10])),
                    _ => Some(Bytes::from(format!("{i}:").repeat((i % 300) as usize))),
                };
                (i as i64 * 10 - 5, key, value)
            })
            .collect()
    }

    fn check(read: &[LogRecord], written: &[(i64, Bytes, Option<Bytes>)], from: u64) {
        assert_eq!(read.len(), written.len() - from as usize);
        for (r, (ts, key, value)) in read.iter().zip(&written[from as usize..]) {
            assert_eq!((r.ts, &r.key, &r.value), (*ts, key, value), "offset {}", r.offset);
        }
        assert!(read.iter().zip(from..).all(|(r, o)| r.offset == o));
    }

    #[test]
    fn records_read_back_alike_from_the_cache_chunks_and_from_disk() {
        let written = records(3_000);
        let dir = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            segment_bytes: 64 << 10,
            cache_bytes: usize::MAX,
        };
        let mut on_disk = PartitionStore::open(dir.path(), options, 0).unwrap();
        let mut in_memory = PartitionStore::in_memory(options);
        for store in [&mut on_disk, &mut in_memory] {
            for (i, (ts, key, value)) in written.iter().enumerate() {
                assert_eq!(store.append(*ts, key.clone(), value.clone()).unwrap(), i as u64);
            }
            store.flush().unwrap();
            store.publish();
            check(&store.read(0, usize::MAX).unwrap(), &written, 0);
            check(&store.read(1_234, usize::MAX).unwrap(), &written, 1_234);
        }
        assert!(on_disk.segments.len() > 10, "{} segments", on_disk.segments.len());

        // Small records share a chunk, back to back: a frame starts where the one before ends.
        let cached = in_memory.read(20, 2).unwrap();
        let end_of_first = cached[0].value.as_ref().unwrap().as_ptr_range().end;
        assert_eq!(cached[1].key.as_ptr(), end_of_first.wrapping_add(KEY_AT));

        // What is on disk reads back the same, through a reopened partition.
        let reopened = PartitionStore::open(dir.path(), options, 3_000).unwrap();
        check(&reopened.read_disk(0, 3_000).unwrap(), &written, 0);
        check(&reopened.read_disk(2_999, 3_000).unwrap(), &written, 2_999);
        // Read from disk, small records share a chunk too: payloads back to back.
        let read = reopened.read_disk(20, 22).unwrap();
        let end_of_first = read[0].value.as_ref().unwrap().as_ptr_range().end;
        assert_eq!(read[1].key.as_ptr(), end_of_first.wrapping_add(KEY_AT - HEADER));
    }
}
