//! A store as a task sees it: writes since the last commit held in memory in front of the
//! backend, so that a commit can first make them durable in the changelog and only then apply
//! them locally. Within one commit interval, repeated writes to a key collapse into one
//! changelog record (as Kafka Streams' record cache does).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::StoreBackend;
use crate::error::StoreError;

/// Entries as (key, value) bytes.
pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) struct StagedStore {
    pub(crate) name: Arc<str>,
    backend: Arc<dyn StoreBackend>,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl StagedStore {
    pub(crate) fn new(name: Arc<str>, backend: Arc<dyn StoreBackend>) -> Self {
        StagedStore {
            name,
            backend,
            pending: BTreeMap::new(),
        }
    }

    /// Lends the value of `key` (a pending write, or the backend's) to `read` without copying
    /// it, and returns what `read` made of it.
    pub(crate) fn get_with<R>(
        &self,
        key: &[u8],
        read: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StoreError> {
        if let Some(v) = self.pending.get(key) {
            return Ok(read(v.as_deref()));
        }
        let mut read = Some(read);
        let mut out = None;
        self.backend.get_with(key, &mut |value| {
            if let Some(read) = read.take() {
                out = Some(read(value));
            }
        })?;
        Ok(out.expect("the backend lends the value once"))
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Entries with `from <= key < to`, pending writes merged over the backend, in key order.
    pub(crate) fn scan(&self, from: &[u8], to: Option<&[u8]>) -> Result<Entries, StoreError> {
        let mut base = Vec::new();
        self.backend.scan(from, to, &mut |k, v| {
            base.push((k.to_vec(), v.to_vec()));
            true
        })?;
        let upper = match to {
            Some(to) => std::ops::Bound::Excluded(to),
            None => std::ops::Bound::Unbounded,
        };
        let staged = self
            .pending
            .range::<[u8], _>((std::ops::Bound::Included(from), upper));
        let mut out = Vec::with_capacity(base.len());
        let mut base = base.into_iter().peekable();
        let mut staged = staged.peekable();
        loop {
            match (base.peek(), staged.peek()) {
                (None, None) => break,
                (Some(_), None) => out.push(base.next().expect("peeked")),
                (None, Some(_)) => {
                    let (k, v) = staged.next().expect("peeked");
                    if let Some(v) = v {
                        out.push((k.clone(), v.clone()));
                    }
                }
                (Some((bk, _)), Some((sk, _))) => {
                    if bk.as_slice() < sk.as_slice() {
                        out.push(base.next().expect("peeked"));
                    } else {
                        if bk.as_slice() == sk.as_slice() {
                            base.next();
                        }
                        let (k, v) = staged.next().expect("peeked");
                        if let Some(v) = v {
                            out.push((k.clone(), v.clone()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Visits the entries with `from <= key < to` in key order, pending writes merged over the
    /// backend, until `visit` returns false. Streams from the backend when nothing in the range
    /// is pending (a store being read whole after a restore), so no copy of it is held.
    pub(crate) fn visit(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let upper = match to {
            Some(to) => std::ops::Bound::Excluded(to),
            None => std::ops::Bound::Unbounded,
        };
        let mut staged = self
            .pending
            .range::<[u8], _>((std::ops::Bound::Included(from), upper));
        if staged.next().is_none() {
            return self.backend.scan(from, to, visit);
        }
        for (k, v) in self.scan(from, to)? {
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn approximate_len(&self) -> u64 {
        self.backend.approximate_len()
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The writes since the last commit, in key order, without clearing them.
    pub(crate) fn pending(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.pending.iter()
    }

    /// Applies the pending writes to the backend once their commit landed.
    pub(crate) fn apply_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let applied = self
            .backend
            .apply_each(&mut self.pending.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
        self.pending.clear();
        applied
    }

    /// Drops the pending writes (a commit that failed, a task closed dirty).
    pub(crate) fn discard_pending(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryBackend;

    #[test]
    fn scan_merges_pending_over_backend() {
        let backend = Arc::new(MemoryBackend::default());
        backend
            .apply(&vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), Some(b"2".to_vec())),
                (b"d".to_vec(), Some(b"4".to_vec())),
            ])
            .unwrap();
        let mut store = StagedStore::new("s".into(), backend.clone());
        store.put(b"c".to_vec(), b"3".to_vec());
        store.delete(b"b".to_vec());
        store.put(b"d".to_vec(), b"44".to_vec());
        let all = store.scan(b"", None).unwrap();
        let keys: Vec<_> = all.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        assert_eq!(keys, vec![(&b"a"[..], &b"1"[..]), (b"c", b"3"), (b"d", b"44")]);
        let get = |key: &[u8]| store.get_with(key, |v| v.map(<[u8]>::to_vec)).unwrap();
        assert_eq!(get(b"b"), None, "deleted, pending");
        assert_eq!(get(b"d"), Some(b"44".to_vec()), "written, pending");
        assert_eq!(get(b"a"), Some(b"1".to_vec()), "from the backend");
        assert_eq!(
            backend.get(b"b").unwrap(),
            Some(b"2".to_vec()),
            "not applied before commit"
        );
        let mut visited = Vec::new();
        store
            .visit(b"b", Some(b"z"), &mut |k, v| {
                visited.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(
            visited,
            vec![(b"c".to_vec(), b"3".to_vec()), (b"d".to_vec(), b"44".to_vec())]
        );
        store.apply_pending().unwrap();
        let mut visited = Vec::new();
        store
            .visit(b"", None, &mut |k, _| {
                visited.push(k.to_vec());
                visited.len() < 2
            })
            .unwrap();
        assert_eq!(
            visited,
            vec![b"a".to_vec(), b"c".to_vec()],
            "streams from the backend, stops when told"
        );
        assert_eq!(backend.get(b"b").unwrap(), None);
        assert_eq!(backend.get(b"d").unwrap(), Some(b"44".to_vec()));
    }
}
