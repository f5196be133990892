//! The memtable: for one WAL segment, each key's newest version as a *position* in the WAL.
//! It never holds values, so its size follows the number of keys, not their bytes.
//!
//! Keys of up to [`MEMTABLE_INLINE_KEY_BYTES`] live inside the B-tree's nodes, and compare by
//! their first 8 bytes as an integer before any byte-wise comparison: an insert walks nodes
//! without chasing a pointer per key, and a memtable of small keys costs one allocation per
//! node, not one per key.

use std::borrow::Borrow;
use std::cmp::Ordering as CmpOrdering;
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

/// Keys of at most this many bytes are stored inside the memtable's B-tree nodes; longer keys
/// get their own heap allocation.
pub const MEMTABLE_INLINE_KEY_BYTES: usize = 46;

/// A memtable key: inline up to [`MEMTABLE_INLINE_KEY_BYTES`], zero-padded, else on the heap.
/// Ordered as its bytes are (it borrows as `[u8]` with the same order).
#[derive(Clone)]
enum MemKey {
    Inline {
        len: u8,
        bytes: [u8; MEMTABLE_INLINE_KEY_BYTES],
    },
    Heap(Box<[u8]>),
}

impl MemKey {
    fn new(key: &[u8]) -> MemKey {
        if key.len() <= MEMTABLE_INLINE_KEY_BYTES {
            let mut bytes = [0u8; MEMTABLE_INLINE_KEY_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            MemKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            MemKey::Heap(key.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            MemKey::Inline { len, bytes } => &bytes[..*len as usize],
            MemKey::Heap(b) => b,
        }
    }

    /// The first 8 bytes as a big-endian integer, zero-padded: monotone in key order.
    fn head(&self) -> u64 {
        match self {
            MemKey::Inline { bytes, .. } => {
                u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
            }
            MemKey::Heap(b) => crate::options::Sharding::prefix_u64(b),
        }
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for MemKey {}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for MemKey {
    /// Byte order. Zero-padded heads that differ order the keys as their bytes do (where one
    /// key ends inside the head, the other's differing byte is past its end and non-zero).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.head()
            .cmp(&other.head())
            .then_with(|| self.bytes().cmp(other.bytes()))
    }
}

impl Borrow<[u8]> for MemKey {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

/// What a memtable stores per key besides the key (the segment is the memtable's).
#[derive(Copy, Clone)]
struct Slot {
    seq: u64,
    value_offset: u64,
    value_len: u32,
    kind: EntryKind,
    tag: u8,
}

/// Estimated bytes a memtable entry costs beyond a long key's heap copy: the key and slot
/// in a B-tree node, times 3/2 for nodes about two-thirds full.
pub const MEMTABLE_ENTRY_OVERHEAD_BYTES: u64 =
    ((std::mem::size_of::<MemKey>() + std::mem::size_of::<Slot>()) * 3 / 2) as u64;

/// Heap bytes of a key beyond its entry: none inline; else its bytes and the allocator's 16.
fn key_heap_bytes(key: &[u8]) -> u64 {
    if key.len() <= MEMTABLE_INLINE_KEY_BYTES {
        0
    } else {
        key.len() as u64 + 16
    }
}

type OnRelease = Box<dyn FnOnce() + Send + Sync>;

/// The keys of one WAL segment.
pub struct Memtable {
    segment: SegmentId,
    map: RwLock<BTreeMap<MemKey, Slot>>,
    bytes: AtomicU64,
    wal_bytes: AtomicU64,
    on_release: Mutex<Option<OnRelease>>,
    /// Distinct big-endian u64 key prefixes, counted when `count_prefixes` (range shards).
    prefixes: AtomicU64,
    count_prefixes: bool,
    /// The longest value inserted (any version).
    max_value_len: AtomicU64,
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
            max_value_len: AtomicU64::new(0),
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
        self.max_value_len
            .fetch_max(u64::from(entry.pos.value_len), Ordering::Relaxed);
        let mut map = self.map.write();
        // Range shards count distinct prefixes; keys of one prefix are neighbours in key order.
        let new_prefix = self.count_prefixes && !map.contains_key(key) && {
            let prefix = crate::options::Sharding::prefix_u64(key);
            let same = |k: Option<(&MemKey, &Slot)>| k.is_some_and(|(k, _)| k.head() == prefix);
            let before = map
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(key)))
                .next_back();
            let after = map
                .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
                .next();
            !same(before) && !same(after)
        };
        let slot = Slot {
            seq: entry.seq.0,
            value_offset: entry.pos.value_offset,
            value_len: entry.pos.value_len,
            kind: entry.kind,
            tag: entry.tag,
        };
        // One search otherwise: the key is almost always new, and its copy is needed then.
        match map.entry(MemKey::new(key)) {
            std::collections::btree_map::Entry::Occupied(mut old) => {
                if old.get().seq < slot.seq {
                    *old.get_mut() = slot;
                }
            }
            std::collections::btree_map::Entry::Vacant(vacant) => {
                if new_prefix {
                    self.prefixes.fetch_add(1, Ordering::Relaxed);
                }
                self.bytes.fetch_add(
                    key_heap_bytes(key) + MEMTABLE_ENTRY_OVERHEAD_BYTES,
                    Ordering::Relaxed,
                );
                vacant.insert(slot);
            }
        }
    }

    fn entry(&self, slot: &Slot) -> MemEntry {
        MemEntry {
            seq: SeqNo(slot.seq),
            kind: slot.kind,
            tag: slot.tag,
            pos: WalPos {
                segment: self.segment,
                value_offset: slot.value_offset,
                value_len: slot.value_len,
            },
        }
    }

    /// The newest version of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<MemEntry> {
        self.map.read().get(key).map(|s| self.entry(s))
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
            .map(|(k, v)| (k.bytes().to_vec(), self.entry(v)))
            .collect()
    }

    /// Bytes of the values of at least `threshold` bytes (newest version of each key).
    pub fn value_bytes_at_least(&self, threshold: u64) -> u64 {
        if self.max_value_len.load(Ordering::Relaxed) < threshold.max(1) {
            return 0;
        }
        self.map
            .read()
            .values()
            .map(|e| u64::from(e.value_len))
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

    /// Estimated heap bytes: [`MEMTABLE_ENTRY_OVERHEAD_BYTES`] per key, plus the bytes of keys
    /// longer than [`MEMTABLE_INLINE_KEY_BYTES`].
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys around the edges of the integer head and of the inline capacity, with zero bytes
    /// where padding would hide a difference.
    fn tricky_keys() -> Vec<Vec<u8>> {
        let mut keys = vec![Vec::new()];
        for len in [1, 7, 8, 9, 15, 16, 45, 46, 47, 60] {
            for fill in [0u8, 1, 0xff] {
                keys.push(vec![fill; len]);
                let mut k = vec![fill; len];
                k[len - 1] = fill.wrapping_add(1);
                keys.push(k);
                let mut k = vec![0u8; len];
                k[0] = fill;
                keys.push(k);
            }
        }
        keys
    }

    #[test]
    fn an_entry_costs_what_the_accounting_says() {
        // An inline key with its length and the enum's tag fills 48 bytes.
        assert_eq!(std::mem::size_of::<MemKey>(), 48);
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(MEMTABLE_ENTRY_OVERHEAD_BYTES, 108);
    }

    #[test]
    fn key_order_is_byte_order() {
        let keys = tricky_keys();
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    MemKey::new(a).cmp(&MemKey::new(b)),
                    a.as_slice().cmp(b.as_slice()),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(MemKey::new(a) == MemKey::new(b), a == b);
            }
        }
    }

    #[test]
    fn chunks_come_back_in_byte_order_with_their_entries() {
        let m = Memtable::counting(SegmentId(3), false);
        let keys = tricky_keys();
        for (i, k) in keys.iter().enumerate() {
            m.insert(
                k,
                MemEntry {
                    seq: SeqNo(i as u64 + 1),
                    kind: EntryKind::Put,
                    tag: i as u8,
                    pos: WalPos {
                        segment: SegmentId(3),
                        value_offset: i as u64 * 10,
                        value_len: i as u32,
                    },
                },
            );
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        let all = m.chunk(Bound::Unbounded, Bound::Unbounded, usize::MAX);
        let got: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(got, sorted);
        for (k, e) in &all {
            // The newest insert of each key wins.
            let i = keys.iter().rposition(|x| x == k).expect("inserted");
            assert_eq!(e.seq, SeqNo(i as u64 + 1));
            assert_eq!(e.pos.value_offset, i as u64 * 10);
            assert_eq!(m.get(k), Some(*e));
        }
        assert_eq!(m.len(), sorted.len());
        assert!(m.get(b"absent").is_none());
    }
}
