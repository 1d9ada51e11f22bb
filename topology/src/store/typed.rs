//! Typed handles and views over staged byte stores.

use std::sync::Arc;

use super::StoreBackend;
use super::staged::StagedStore;
use crate::codec::Codec;
use crate::error::StoreError;

/// Index of a store in its topology.
pub type StoreId = usize;

fn codec_err(store: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Codec {
        store: store.to_string(),
        detail: detail.to_string(),
    }
}

/// A declared key-value store. Cheap to clone; processors keep one and pass it to
/// `Context::kv` to read and write.
pub struct KvStore<K, V> {
    pub(crate) id: StoreId,
    pub(crate) name: Arc<str>,
    pub(crate) key: Codec<K>,
    pub(crate) value: Codec<V>,
}

impl<K, V> Clone for KvStore<K, V> {
    fn clone(&self) -> Self {
        KvStore {
            id: self.id,
            name: self.name.clone(),
            key: self.key,
            value: self.value,
        }
    }
}

impl<K, V> std::fmt::Debug for KvStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvStore({})", self.name)
    }
}

impl<K, V> KvStore<K, V> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> StoreId {
        self.id
    }

    pub fn encode_key(&self, key: &K) -> Vec<u8> {
        self.key.to_vec(key)
    }

    /// Reads committed state straight from a backend (interactive queries).
    pub fn read(&self, backend: &dyn StoreBackend, key: &K) -> Result<Option<V>, StoreError> {
        let mut decoded = None;
        backend.get_with(&self.key.to_vec(key), &mut |bytes| {
            decoded = Some(bytes.map(|bytes| self.value.decode(bytes)).transpose());
        })?;
        decoded
            .expect("the backend lends the value once")
            .map_err(|e| codec_err(&self.name, e))
    }

    /// Visits committed entries whose encoded key starts with `prefix`, until `visit` says stop.
    pub fn scan_committed(
        &self,
        backend: &dyn StoreBackend,
        prefix: &[u8],
        visit: &mut dyn FnMut(K, V) -> bool,
    ) -> Result<(), StoreError> {
        let mut error = None;
        let upper = prefix_end(prefix);
        backend.scan(
            prefix,
            upper.as_deref(),
            &mut |k, v| match (self.key.decode(k), self.value.decode(v)) {
                (Ok(k), Ok(v)) => visit(k, v),
                (Err(e), _) | (_, Err(e)) => {
                    error = Some(codec_err(&self.name, e));
                    false
                }
            },
        )?;
        error.map_or(Ok(()), Err)
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no upper bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A task's view of a key-value store, valid while processing one record.
pub struct KvView<'a, K, V> {
    pub(crate) store: &'a mut StagedStore,
    pub(crate) handle: &'a KvStore<K, V>,
}

impl<K, V> KvView<'_, K, V> {
    pub fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        self.store
            .get_with(&self.handle.key.to_vec(key), |bytes| {
                bytes.map(|bytes| self.handle.value.decode(bytes)).transpose()
            })?
            .map_err(|e| codec_err(&self.handle.name, e))
    }

    pub fn put(&mut self, key: &K, value: &V) {
        self.store
            .put(self.handle.key.to_vec(key), self.handle.value.to_vec(value));
    }

    pub fn delete(&mut self, key: &K) {
        self.store.delete(self.handle.key.to_vec(key));
    }

    /// Entries whose encoded key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(K, V)>, StoreError> {
        self.decode_all(self.store.scan(prefix, prefix_end(prefix).as_deref())?)
    }

    /// Calls `f` with each entry whose encoded key starts with `prefix`, in key order, without
    /// holding them all in memory (e.g. to rebuild an in-memory index when a task opens).
    pub fn for_each_prefix(&self, prefix: &[u8], mut f: impl FnMut(K, V)) -> Result<(), StoreError> {
        let mut failed = None;
        self.store
            .visit(prefix, prefix_end(prefix).as_deref(), &mut |k, v| {
                match self.decode_entry(k, v) {
                    Ok((k, v)) => f(k, v),
                    Err(e) => failed = Some(e),
                }
                failed.is_none()
            })?;
        failed.map_or(Ok(()), Err)
    }

    /// Entries with `from <= key < to` by encoded key.
    pub fn range(&self, from: &K, to: Option<&K>) -> Result<Vec<(K, V)>, StoreError> {
        let to = to.map(|k| self.handle.key.to_vec(k));
        self.decode_all(self.store.scan(&self.handle.key.to_vec(from), to.as_deref())?)
    }

    fn decode_entry(&self, k: &[u8], v: &[u8]) -> Result<(K, V), StoreError> {
        let k = self
            .handle
            .key
            .decode(k)
            .map_err(|e| codec_err(&self.handle.name, e))?;
        let v = self
            .handle
            .value
            .decode(v)
            .map_err(|e| codec_err(&self.handle.name, e))?;
        Ok((k, v))
    }

    fn decode_all(&self, raw: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>, StoreError> {
        raw.into_iter().map(|(k, v)| self.decode_entry(&k, &v)).collect()
    }
}

/// A declared window store: values per key and window start.
pub struct WindowStore<K, V> {
    pub(crate) id: StoreId,
    pub(crate) name: Arc<str>,
    pub(crate) key: Codec<K>,
    pub(crate) value: Codec<V>,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            id: self.id,
            name: self.name.clone(),
            key: self.key,
            value: self.value,
        }
    }
}

impl<K, V> std::fmt::Debug for WindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WindowStore({})", self.name)
    }
}

impl<K, V> WindowStore<K, V> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> StoreId {
        self.id
    }

    /// `len (u16) | key | start (order-preserving i64)`: keys never prefix one another, and one
    /// key's windows sort by start.
    pub fn encode(&self, key: &K, start: i64) -> Vec<u8> {
        let mut out = self.key_prefix(key);
        out.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
        out
    }

    fn key_prefix(&self, key: &K) -> Vec<u8> {
        let k = self.key.to_vec(key);
        let mut out = Vec::with_capacity(k.len() + 10);
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(&k);
        out
    }

    fn decode(&self, raw: &[u8]) -> Result<(K, i64), StoreError> {
        let bad = || codec_err(&self.name, "malformed window key");
        let len = u16::from_be_bytes(raw.get(0..2).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
        let key = self
            .key
            .decode(raw.get(2..2 + len).ok_or_else(bad)?)
            .map_err(|e| codec_err(&self.name, e))?;
        let start: [u8; 8] = raw
            .get(2 + len..)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        Ok((key, (u64::from_be_bytes(start) ^ (1 << 63)) as i64))
    }

    /// Every committed window of every key (interactive queries).
    pub fn scan_committed(
        &self,
        backend: &dyn StoreBackend,
        visit: &mut dyn FnMut(K, i64, V) -> bool,
    ) -> Result<(), StoreError> {
        let mut error = None;
        backend.scan(
            &[],
            None,
            &mut |k, v| match (self.decode(k), self.value.decode(v)) {
                (Ok((key, start)), Ok(value)) => visit(key, start, value),
                (Err(e), _) => {
                    error = Some(e);
                    false
                }
                (_, Err(e)) => {
                    error = Some(codec_err(&self.name, e));
                    false
                }
            },
        )?;
        error.map_or(Ok(()), Err)
    }

    /// The committed windows of one key with `from <= start < to`.
    pub fn fetch_committed(
        &self,
        backend: &dyn StoreBackend,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, V)>, StoreError> {
        let mut out = Vec::new();
        let mut error = None;
        backend.scan(
            &self.encode(key, from),
            Some(&self.encode(key, to)),
            &mut |k, v| match (self.decode(k), self.value.decode(v)) {
                (Ok((_, start)), Ok(value)) => {
                    out.push((start, value));
                    true
                }
                (Err(e), _) => {
                    error = Some(e);
                    false
                }
                (_, Err(e)) => {
                    error = Some(codec_err(&self.name, e));
                    false
                }
            },
        )?;
        error.map_or(Ok(out), Err)
    }
}

/// A task's view of a window store.
pub struct WindowView<'a, K, V> {
    pub(crate) store: &'a mut StagedStore,
    pub(crate) handle: &'a WindowStore<K, V>,
}

impl<K, V> WindowView<'_, K, V> {
    pub fn get(&self, key: &K, start: i64) -> Result<Option<V>, StoreError> {
        self.store
            .get_with(&self.handle.encode(key, start), |bytes| {
                bytes.map(|bytes| self.handle.value.decode(bytes)).transpose()
            })?
            .map_err(|e| codec_err(&self.handle.name, e))
    }

    pub fn put(&mut self, key: &K, start: i64, value: &V) {
        self.store
            .put(self.handle.encode(key, start), self.handle.value.to_vec(value));
    }

    pub fn delete(&mut self, key: &K, start: i64) {
        self.store.delete(self.handle.encode(key, start));
    }

    /// The windows of `key` with `from <= start < to`, by start.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, V)>, StoreError> {
        let raw = self
            .store
            .scan(&self.handle.encode(key, from), Some(&self.handle.encode(key, to)))?;
        raw.into_iter()
            .map(|(k, v)| {
                let (_, start) = self.handle.decode(&k)?;
                let value = self
                    .handle
                    .value
                    .decode(&v)
                    .map_err(|e| codec_err(&self.handle.name, e))?;
                Ok((start, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
