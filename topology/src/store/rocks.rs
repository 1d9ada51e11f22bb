//! RocksDB backend: one database per instance data directory, one column family per store per
//! task partition (`<store>.<partition>`), checkpoints as small JSON files beside it.
//!
//! Writes reach RocksDB only after the changelog commit that carries them landed (see
//! `staged.rs`), through its write-ahead log, which is written out to the file when a task
//! checkpoints (`manual_wal_flush`; without `fsync`) rather than at every commit: a commit
//! then costs no system call here. A crash, of the process or of the machine, at worst loses
//! writes made since the last checkpoint, which the changelog still has and restore replays
//! from that checkpoint; what survives is a prefix of them, in order, so the replay ends at
//! the same state.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, Cache, DBWithThreadMode, DataBlockIndexType,
    IngestExternalFileOptions, IteratorMode, MultiThreaded, Options, ReadOptions, SstFileWriter,
    WriteOptions,
};

use super::{Checkpoint, StateFactory, StoreBackend, Write, WriteBatch};
use crate::error::StoreError;

type Db = DBWithThreadMode<MultiThreaded>;

/// RocksDB state under `<data dir>/state`.
pub struct RocksState {
    db: Arc<Db>,
    dir: PathBuf,
    block_cache: Cache,
}

/// The block cache every column family of a database shares.
const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Batches of at least this many writes are loaded as table files rather than written
/// through the memtable: below it, a file's fixed costs (its own blocks, filter and index,
/// the ingestion) outweigh the inserts saved.
const LOAD_AS_FILE: usize = 16 * 1024;

/// Names the table files being loaded (unique within the process; the folder is emptied when
/// the database opens).
static NEXT_LOAD: AtomicU64 = AtomicU64::new(0);

impl std::fmt::Debug for RocksState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksState").field("dir", &self.dir).finish()
    }
}

fn rocks_err(store: &str, e: rocksdb::Error) -> StoreError {
    StoreError::Rocks {
        store: store.to_string(),
        detail: e.to_string(),
    }
}

fn cf_options(block_cache: &Cache) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(8 << 20);
    opts.set_max_write_buffer_number(3);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // What `optimize_for_point_lookup` sets (hashed data blocks, bloom filters, a memtable
    // bloom), except that it gives every column family a block cache of its own.
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(block_cache);
    table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts.set_memtable_prefix_bloom_ratio(0.02);
    opts.set_memtable_whole_key_filtering(true);
    opts
}

impl RocksState {
    /// Opens (or creates) the state database in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let db_path = dir.join("rocksdb");
        fs::create_dir_all(dir.join("checkpoints")).map_err(|e| StoreError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_db_write_buffer_size(256 << 20);
        opts.set_keep_log_file_num(3);
        // The write-ahead log is written out by `write_checkpoint` (and when its buffer fills,
        // and at close), not by every write.
        opts.set_manual_wal_flush(true);
        let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES).map_err(|e| rocks_err("(open)", e))?;
        let cfs = Db::list_cf(&opts, &db_path).unwrap_or_default();
        let descriptors = cfs
            .iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, cf_options(&block_cache)))
            .collect::<Vec<_>>();
        let db = Db::open_cf_descriptors(&opts, &db_path, descriptors).map_err(|e| rocks_err("(open)", e))?;
        // Table files a load left behind when the process stopped before their ingestion.
        let loads = dir.join("loading");
        match fs::remove_dir_all(&loads) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path: loads.display().to_string(),
                    source: e,
                });
            }
        }
        Ok(RocksState {
            db: Arc::new(db),
            dir,
            block_cache,
        })
    }

    fn checkpoint_path(&self, task: &str) -> PathBuf {
        self.dir
            .join("checkpoints")
            .join(format!("{}.json", task.replace('/', "_")))
    }
}

impl StateFactory for RocksState {
    fn open(&self, store: &str, partition: u32) -> Result<Arc<dyn StoreBackend>, StoreError> {
        let cf = format!("{store}.{partition}");
        if self.db.cf_handle(&cf).is_none() {
            self.db
                .create_cf(&cf, &cf_options(&self.block_cache))
                .map_err(|e| rocks_err(store, e))?;
        }
        let handle = FamilyHandle::of(&self.db, &cf).ok_or_else(|| StoreError::Rocks {
            store: cf.clone(),
            detail: "column family is gone".into(),
        })?;
        Ok(Arc::new(RocksBackend {
            handle,
            db: self.db.clone(),
            cf,
            read: ReadOptions::default(),
            loads: self.dir.join("loading"),
            block_cache: self.block_cache.clone(),
        }))
    }

    fn read_checkpoint(&self, task: &str) -> Result<Option<Checkpoint>, StoreError> {
        let path = self.checkpoint_path(task);
        match fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    fn write_checkpoint(&self, task: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let path = self.checkpoint_path(task);
        let tmp = path.with_extension("tmp");
        let io = |e| StoreError::Io {
            path: path.display().to_string(),
            source: e,
        };
        // The state it describes must be durable first.
        self.db.flush_wal(false).map_err(|e| rocks_err(task, e))?;
        fs::write(&tmp, serde_json::to_vec(checkpoint).expect("checkpoint encodes")).map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)
    }

    fn remove_checkpoint(&self, task: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.checkpoint_path(task)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                path: task.to_string(),
                source: e,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("RocksDB at {}", self.dir.join("rocksdb").display())
    }

    fn dir(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }
}

/// One column family.
pub struct RocksBackend {
    /// Declared before `db`, so dropped before it.
    handle: FamilyHandle,
    db: Arc<Db>,
    cf: String,
    /// The options of every point read, made once (RocksDB allocates them).
    read: ReadOptions,
    /// Where table files are written before they are ingested.
    loads: PathBuf,
    block_cache: Cache,
}

impl RocksBackend {
    fn handle(&self) -> &Arc<BoundColumnFamily<'static>> {
        &self.handle.0
    }
}

use family::FamilyHandle;

/// A column family's handle kept beside the database it belongs to, instead of looked up by
/// name (a lock, a hash of the name and a reference count) at every read and write.
#[allow(unsafe_code)]
mod family {
    use std::sync::Arc;

    use rocksdb::BoundColumnFamily;

    use super::Db;

    /// Holds a handle past the borrow of the database it came from. Sound because the handle
    /// never outlives that database: the one holder, `RocksBackend`, declares it before the
    /// `Arc` of the database, so drops it first, and nothing drops a column family while the
    /// database is open (the state factory only creates them).
    pub(super) struct FamilyHandle(pub(super) Arc<BoundColumnFamily<'static>>);

    impl FamilyHandle {
        pub(super) fn of(db: &Arc<Db>, name: &str) -> Option<Self> {
            let handle = db.cf_handle(name)?;
            // SAFETY: only the lifetime changes (see the type's comment for why it holds).
            Some(FamilyHandle(unsafe {
                std::mem::transmute::<Arc<BoundColumnFamily<'_>>, Arc<BoundColumnFamily<'static>>>(handle)
            }))
        }
    }

    // SAFETY: RocksDB's column family handles are safe to use from any thread at once (the
    // multi-threaded database hands the same one to every thread); the binding marks them
    // `Send` but not `Sync` only because it ties them to a borrow.
    unsafe impl Send for FamilyHandle {}
    unsafe impl Sync for FamilyHandle {}
}

impl StoreBackend for RocksBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf_opt(self.handle(), key, &self.read)
            .map_err(|e| rocks_err(&self.cf, e))
    }

    fn get_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        let value = self
            .db
            .get_pinned_cf_opt(self.handle(), key, &self.read)
            .map_err(|e| rocks_err(&self.cf, e))?;
        read(value.as_deref());
        Ok(())
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let cf = self.handle();
        // A raw iterator lends each entry in place (the iterator adapter copies every key and
        // value into boxes of its own); the bound stops RocksDB at `to` itself.
        let mut opts = ReadOptions::default();
        if let Some(to) = to {
            opts.set_iterate_upper_bound(to.to_vec());
        }
        let mut iter = self.db.raw_iterator_cf_opt(cf, opts);
        iter.seek(from);
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !visit(k, v) {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(|e| rocks_err(&self.cf, e))
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.apply_each(&mut batch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
    }

    fn apply_each(&self, writes: &mut dyn Iterator<Item = Write<'_>>) -> Result<(), StoreError> {
        let cf = self.handle();
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in writes {
            match v {
                Some(v) => wb.put_cf(cf, k, v),
                None => wb.delete_cf(cf, k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(wb, &opts).map_err(|e| rocks_err(&self.cf, e))
    }

    /// Writes the batch as a table file in key order and ingests it: no memtable inserts (a
    /// skip-list search per write), no write-ahead log, no flush of what was just written.
    fn load(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.len() < LOAD_AS_FILE {
            return self.apply(batch);
        }
        let cf = self.handle();
        let io = |e| StoreError::Io {
            path: self.loads.display().to_string(),
            source: e,
        };
        fs::create_dir_all(&self.loads).map_err(io)?;
        let path = self.loads.join(format!(
            "{}-{}.sst",
            self.cf,
            NEXT_LOAD.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let opts = cf_options(&self.block_cache);
            let mut writer = SstFileWriter::create(&opts);
            writer.open(&path)?;
            for (k, v) in batch {
                match v {
                    Some(v) => writer.put(k, v)?,
                    None => writer.delete(k)?,
                }
            }
            writer.finish()?;
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            self.db.ingest_external_file_cf_opts(cf, &ingest, vec![&path])
        })();
        if written.is_err() {
            let _ = fs::remove_file(&path);
        }
        written.map_err(|e| rocks_err(&self.cf, e))
    }

    fn clear(&self) -> Result<(), StoreError> {
        let cf = self.handle();
        let mut keys = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item.map_err(|e| rocks_err(&self.cf, e))?;
            keys.push(k);
            if keys.len() >= 10_000 {
                let mut wb = rocksdb::WriteBatch::default();
                for k in keys.drain(..) {
                    wb.delete_cf(cf, k);
                }
                self.db.write(wb).map_err(|e| rocks_err(&self.cf, e))?;
            }
        }
        let mut wb = rocksdb::WriteBatch::default();
        for k in keys {
            wb.delete_cf(cf, k);
        }
        self.db.write(wb).map_err(|e| rocks_err(&self.cf, e))
    }

    fn approximate_len(&self) -> u64 {
        self.db
            .property_int_value_cf(self.handle(), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans see their own family only, in key order, from `from` up to (not including) `to`,
    /// from the memtable and from flushed tables alike, and stop when the visitor says so.
    #[test]
    fn scans_keep_to_their_family_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let state = RocksState::open(dir.path()).unwrap();
        let a = state.open("a", 0).unwrap();
        let b = state.open("a", 1).unwrap();
        let put = |s: &Arc<dyn StoreBackend>, keys: &[&str]| {
            let batch: WriteBatch = keys
                .iter()
                .map(|k| (k.as_bytes().to_vec(), Some(format!("v-{k}").into_bytes())))
                .collect();
            s.apply(&batch).unwrap();
        };
        put(&a, &["m1/d2", "m1/d1", "m2/d1"]);
        state.db.flush_cf(&state.db.cf_handle("a.0").unwrap()).unwrap();
        put(&a, &["m1/d3", "m10/d1", "m0/d9"]);
        put(&b, &["m1/d0", "m1/d4"]);
        let scan = |from: &str, to: Option<&str>, limit: usize| {
            let mut seen = Vec::new();
            a.scan(from.as_bytes(), to.map(str::as_bytes), &mut |k, v| {
                assert_eq!(v, format!("v-{}", String::from_utf8_lossy(k)).as_bytes());
                seen.push(String::from_utf8(k.to_vec()).unwrap());
                seen.len() < limit
            })
            .unwrap();
            seen
        };
        assert_eq!(scan("m1/", Some("m10"), 99), ["m1/d1", "m1/d2", "m1/d3"]);
        assert_eq!(
            scan("", None, 99),
            ["m0/d9", "m1/d1", "m1/d2", "m1/d3", "m10/d1", "m2/d1"]
        );
        assert_eq!(scan("m1/d2", None, 2), ["m1/d2", "m1/d3"]);
        assert!(scan("m3", None, 99).is_empty());
    }

    /// Point reads through the kept handle, copied and lent, see what was written to their own
    /// family only, from the memtable and from a flushed table, and what a reopened database
    /// holds.
    #[test]
    fn point_reads_see_their_family_before_and_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let lent = |s: &Arc<dyn StoreBackend>, key: &[u8]| {
            let mut seen = Vec::new();
            s.get_with(key, &mut |v| seen.push(v.map(<[u8]>::to_vec)))
                .unwrap();
            assert_eq!(seen.len(), 1, "lent once");
            assert_eq!(seen[0], s.get(key).unwrap(), "lent as copied");
            seen.pop().unwrap()
        };
        {
            let state = RocksState::open(dir.path()).unwrap();
            let a = state.open("w", 0).unwrap();
            let b = state.open("w", 1).unwrap();
            a.apply(&vec![(b"k1".to_vec(), Some(b"a1".to_vec()))]).unwrap();
            b.apply(&vec![(b"k2".to_vec(), Some(b"b2".to_vec()))]).unwrap();
            assert_eq!(lent(&a, b"k1"), Some(b"a1".to_vec()));
            assert_eq!(lent(&a, b"k2"), None, "another family's key");
            state.db.flush_cf(&state.db.cf_handle("w.0").unwrap()).unwrap();
            a.apply(&vec![
                (b"k1".to_vec(), None),
                (b"k3".to_vec(), Some(b"a3".to_vec())),
            ])
            .unwrap();
            assert_eq!(lent(&a, b"k1"), None, "deleted over the flushed table");
            assert_eq!(lent(&a, b"k3"), Some(b"a3".to_vec()));
        }
        let state = RocksState::open(dir.path()).unwrap();
        let a = state.open("w", 0).unwrap();
        assert_eq!(lent(&a, b"k3"), Some(b"a3".to_vec()), "after a reopen");
        assert_eq!(lent(&state.open("w", 1).unwrap(), b"k2"), Some(b"b2".to_vec()));
    }

    /// A load leaves what writing the same batch leaves: batches loaded as table files shadow
    /// what was written before them (values and deletes alike), small ones go the usual way,
    /// and the files are gone once ingested.
    #[test]
    fn loads_leave_what_writes_leave() {
        let dir = tempfile::tempdir().unwrap();
        let state = RocksState::open(dir.path()).unwrap();
        let loaded = state.open("s", 0).unwrap();
        let written = state.open("s", 1).unwrap();
        let key = |i: usize| format!("k{i:07}").into_bytes();
        let n = LOAD_AS_FILE * 2;
        // Three rounds over overlapping keys: puts, then puts and deletes, then a small batch.
        let rounds: Vec<WriteBatch> = vec![
            (0..n)
                .map(|i| (key(i), Some(format!("a{i}").into_bytes())))
                .collect(),
            (n / 2..n + n / 2)
                .map(|i| (key(i), (i % 3 != 0).then(|| format!("b{i}").into_bytes())))
                .collect(),
            (0..100).map(|i| (key(i * 7), None)).collect(),
        ];
        for batch in &rounds {
            loaded.load(batch).unwrap();
            written.apply(batch).unwrap();
        }
        let all = |s: &Arc<dyn StoreBackend>| {
            let mut seen = Vec::new();
            s.scan(b"", None, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
            seen
        };
        let expected = all(&written);
        assert!(expected.len() > n, "the rounds leave more than one batch's keys");
        assert_eq!(all(&loaded), expected);
        assert_eq!(
            loaded.get(&key(n / 2 + 3)).unwrap(),
            Some(format!("b{}", n / 2 + 3).into_bytes())
        );
        let deleted_later = (n / 2..n).find(|i| i % 3 == 0).unwrap();
        assert_eq!(loaded.get(&key(deleted_later)).unwrap(), None);
        assert_eq!(loaded.get(&key(7)).unwrap(), None, "deleted by the small batch");
        let files = fs::read_dir(dir.path().join("loading")).unwrap().count();
        assert_eq!(files, 0, "ingested files are moved into the database");
        // Reopened, the loaded state is there (ingested files are durable).
        drop((loaded, written));
        drop(state);
        let state = RocksState::open(dir.path()).unwrap();
        assert_eq!(all(&state.open("s", 0).unwrap()), expected);
    }

    /// Blocks read through one store's column family show in the cache that every other family
    /// reports: one cache per database, not one per store partition.
    #[test]
    fn every_column_family_shares_the_one_block_cache() {
        let dir = tempfile::tempdir().unwrap();
        let state = RocksState::open(dir.path()).unwrap();
        let a = state.open("a", 0).unwrap();
        let _b = state.open("b", 7).unwrap();
        let key = |i: u32| format!("k{i:06}").into_bytes();
        let batch: WriteBatch = (0..20_000).map(|i| (key(i), Some(vec![7u8; 100]))).collect();
        a.apply(&batch).unwrap();
        let cf = |name: &str| state.db.cf_handle(name).unwrap();
        state.db.flush_cf(&cf("a.0")).unwrap();
        for i in (0..20_000).step_by(97) {
            assert!(a.get(&key(i)).unwrap().is_some());
        }
        let property = |name: &str, property: &str| {
            state
                .db
                .property_int_value_cf(&cf(name), property)
                .unwrap()
                .unwrap()
        };
        let usage = property("a.0", "rocksdb.block-cache-usage");
        assert!(usage > 0, "reads from the flushed table went through the cache");
        assert_eq!(property("b.7", "rocksdb.block-cache-usage"), usage);
        for name in ["a.0", "b.7"] {
            assert_eq!(
                property(name, "rocksdb.block-cache-capacity"),
                BLOCK_CACHE_BYTES as u64
            );
        }
    }
}
