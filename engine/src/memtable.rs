//! The memtable: for one WAL segment, each key's newest version as a *position* in the WAL.
//! It never holds values, so its size follows the number of keys, not their bytes.

use std::collections::BTreeMap;
use std::ops::Bound;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{EntryKind, SegmentId, SeqNo, WalPos};
use parking_lot::{Mutex, RwLock};

/// One key's newest version in a memtable.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MemEntry {
    /// Its sequence number.
    pub seq: SeqNo,
    /// Put or delete.
    pub kind: EntryKind,
    /// Adapter tag.
    pub tag: u8,
    /// Where its value is.
    pub pos: WalPos,
}

/// Estimated bytes a memtable entry costs beyond its key: the entry, the key's `Vec` header and
/// the B-tree's per-entry share.
pub const MEMTABLE_ENTRY_OVERHEAD_BYTES: u64 =
    (std::mem::size_of::<MemEntry>() + std::mem::size_of::<Vec<u8>>() + 8) as u64;

type OnRelease = Box<dyn FnOnce() + Send + Sync>;

/// The keys of one WAL segment.
pub struct Memtable {
    segment: SegmentId,
    map: RwLock<BTreeMap<Vec<u8>, MemEntry>>,
    bytes: AtomicU64,
    wal_bytes: AtomicU64,
    on_release: Mutex<Option<OnRelease>>,
    /// Distinct big-endian u64 key prefixes, counted when `count_prefixes` (range shards).
    prefixes: AtomicU64,
    count_prefixes: bool,
}

impl std::fmt::Debug for Memtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memtable")
            .field("segment", &self.segment)
            .field("len", &self.len())
            .finish()
    }
}

impl Memtable {
    /// An empty memtable for `segment` that counts distinct key prefixes if `count_prefixes`.
    pub fn counting(segment: SegmentId, count_prefixes: bool) -> Memtable {
        Memtable {
            segment,
            map: RwLock::new(BTreeMap::new()),
            bytes: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(0),
            on_release: Mutex::new(None),
            prefixes: AtomicU64::new(0),
            count_prefixes,
        }
    }

    /// Distinct big-endian u64 key prefixes (0 unless counted).
    pub fn prefixes(&self) -> u64 {
        self.prefixes.load(Ordering::Relaxed)
    }

    /// The WAL segment this memtable covers.
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// Records `entry` for `key` unless the memtable already has a newer version (writers that
    /// finished their WAL append in one order may insert in another).
    pub fn insert(&self, key: &[u8], entry: MemEntry) {
        debug_assert_eq!(
            entry.pos.segment, self.segment,
            "entry from another segment"
        );
        self.wal_bytes.fetch_add(
            key.len() as u64 + u64::from(entry.pos.value_len),
            Ordering::Relaxed,
        );
        let mut map = self.map.write();
        // Range shards count distinct prefixes; keys of one prefix are neighbours in key order.
        let new_prefix = self.count_prefixes && !map.contains_key(key) && {
            let prefix = crate::options::Sharding::prefix_u64(key);
            let same = |k: Option<(&Vec<u8>, &MemEntry)>| {
                k.is_some_and(|(k, _)| crate::options::Sharding::prefix_u64(k) == prefix)
            };
            let before = map
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(key)))
                .next_back();
            let after = map
                .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
                .next();
            !same(before) && !same(after)
        };
        // One search otherwise: the key is almost always new, and its copy is needed then.
        match map.entry(key.to_vec()) {
            std::collections::btree_map::Entry::Occupied(mut old) => {
                if old.get().seq < entry.seq {
                    *old.get_mut() = entry;
                }
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                if new_prefix {
                    self.prefixes.fetch_add(1, Ordering::Relaxed);
                }
                self.bytes.fetch_add(
                    key.len() as u64 + MEMTABLE_ENTRY_OVERHEAD_BYTES,
                    Ordering::Relaxed,
                );
                slot.insert(entry);
            }
        }
    }

    /// The newest version of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<MemEntry> {
        self.map.read().get(key).copied()
    }

    /// Up to `max` entries with keys after `after` and inside `end`, in key order.
    pub fn chunk(
        &self,
        after: Bound<&[u8]>,
        end: Bound<&[u8]>,
        max: usize,
    ) -> Vec<(Vec<u8>, MemEntry)> {
        let map = self.map.read();
        // BTreeMap::range panics on an empty or inverted range; such a range holds nothing.
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(e) | Bound::Excluded(e)) =
            (after, end)
        {
            let both_included = matches!((after, end), (Bound::Included(_), Bound::Included(_)));
            if a > e || (a == e && !both_included) {
                return Vec::new();
            }
        }
        map.range::<[u8], _>((after, end))
            .take(max)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Bytes of the values of at least `threshold` bytes (newest version of each key).
    pub fn value_bytes_at_least(&self, threshold: u64) -> u64 {
        self.map
            .read()
            .values()
            .map(|e| u64::from(e.pos.value_len))
            .filter(|&len| len > 0 && len >= threshold)
            .sum()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// True when no key was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated heap bytes: keys plus [`MEMTABLE_ENTRY_OVERHEAD_BYTES`] per key.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes of keys and values written to its WAL segment (every version): what freezing it
    /// adds to the WAL debt.
    pub fn wal_bytes(&self) -> u64 {
        self.wal_bytes.load(Ordering::Relaxed)
    }

    /// Sets what to do when the last reference goes (delete the compacted WAL segment): readers
    /// that still hold this memtable can still read its values until then.
    pub fn on_release(&self, f: OnRelease) {
        *self.on_release.lock() = Some(f);
    }
}

impl Drop for Memtable {
    fn drop(&mut self) {
        if let Some(f) = self.on_release.lock().take() {
            f();
        }
    }
}
