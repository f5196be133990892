//! Keys, entries, sequence numbers, positions and the limits every write is checked against.

/// Per-shard sequence number: every write of a shard gets the next one.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The sequence number after this one.
    pub fn next(self) -> SeqNo {
        SeqNo(self.0 + 1)
    }
}

/// A shard's number. With range sharding it is `prefix / width`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u64);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A WAL segment's number, increasing within a shard.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

impl SegmentId {
    /// The segment after this one.
    pub fn next(self) -> SegmentId {
        SegmentId(self.0 + 1)
    }
}

/// What an entry is: a value, or a tombstone that hides older versions of its key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// A key with a value.
    Put = 1,
    /// A deletion marker.
    Delete = 2,
}

impl EntryKind {
    /// Decodes the on-disk byte; `None` for any other value.
    pub fn from_byte(b: u8) -> Option<EntryKind> {
        match b {
            1 => Some(EntryKind::Put),
            2 => Some(EntryKind::Delete),
            _ => None,
        }
    }
}

/// Where a value lives in a WAL: segment, offset of the value's first byte, its length.
/// The memtable keeps these instead of values, so its size follows keys, not bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WalPos {
    /// Segment holding the record.
    pub segment: SegmentId,
    /// Offset of the value's first byte in the segment file.
    pub value_offset: u64,
    /// Length of the value in bytes.
    pub value_len: u32,
}

/// Where a separated value lives: a byte range of a value file (a WAL segment kept after
/// compaction, see `docs/FORMAT.md`) and the checksum of the value's bytes. Runs store this
/// instead of values of at least `Options::value_log_threshold_bytes`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ValuePointer {
    /// The value file: the WAL segment the value was first written to.
    pub segment: SegmentId,
    /// Offset of the value's first byte in the file.
    pub offset: u64,
    /// Length of the value in bytes.
    pub len: u32,
    /// `checksum` (xxh3-64) of the value's bytes.
    pub checksum: u64,
}

const P_SEGMENT: usize = 0;
const P_OFFSET: usize = P_SEGMENT + 8;
const P_LEN: usize = P_OFFSET + 8;
const P_RESERVED: usize = P_LEN + 4;
const P_CHECKSUM: usize = P_RESERVED + 4;
/// Bytes of an encoded [`ValuePointer`]: segment u64, offset u64, length u32, 4 reserved
/// (zero) bytes, checksum u64; little-endian.
pub const VALUE_POINTER_BYTES: usize = P_CHECKSUM + 8;
const _: () = assert!(VALUE_POINTER_BYTES == 32);

/// The value pointer's layout.
pub(crate) const VALUE_POINTER_LAYOUT: crate::format::Layout = crate::format::Layout {
    name: "value_pointer",
    offsets: &[P_SEGMENT, P_OFFSET, P_LEN, P_RESERVED, P_CHECKSUM],
    bytes: VALUE_POINTER_BYTES,
    magics: &[],
    version: None,
};

impl ValuePointer {
    /// The WAL position the pointer names.
    pub fn pos(&self) -> WalPos {
        WalPos {
            segment: self.segment,
            value_offset: self.offset,
            value_len: self.len,
        }
    }

    /// The fixed-width encoding.
    pub fn encode(&self) -> [u8; VALUE_POINTER_BYTES] {
        let mut b = [0u8; VALUE_POINTER_BYTES];
        b[P_SEGMENT..P_OFFSET].copy_from_slice(&self.segment.0.to_le_bytes());
        b[P_OFFSET..P_LEN].copy_from_slice(&self.offset.to_le_bytes());
        b[P_LEN..P_RESERVED].copy_from_slice(&self.len.to_le_bytes());
        b[P_CHECKSUM..].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// Decodes `b`; `None` unless it is exactly [`VALUE_POINTER_BYTES`] long with zero
    /// reserved bytes and a length within [`crate::MAX_VALUE_BYTES`].
    pub fn decode(b: &[u8]) -> Option<ValuePointer> {
        if b.len() != VALUE_POINTER_BYTES || b[P_RESERVED..P_CHECKSUM] != [0; 4] {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(b[P_LEN..P_RESERVED].try_into().expect("4 bytes"));
        if len as usize > crate::limits::MAX_VALUE_BYTES {
            return None;
        }
        Some(ValuePointer {
            segment: SegmentId(u64_at(P_SEGMENT)),
            offset: u64_at(P_OFFSET),
            len,
            checksum: u64_at(P_CHECKSUM),
        })
    }
}

/// One operation of a batch, borrowed.
#[derive(Copy, Clone, Debug)]
pub struct OpRef<'a> {
    /// Put or delete.
    pub kind: EntryKind,
    /// Adapter tag (0 unless an adapter sets one; Stellar uses it for INIT vs LIVE).
    pub tag: u8,
    /// The key.
    pub key: &'a [u8],
    /// The value; empty for deletes.
    pub value: &'a [u8],
}

impl<'a> OpRef<'a> {
    /// A put of `value` under `key`.
    pub fn put(key: &'a [u8], value: &'a [u8]) -> OpRef<'a> {
        OpRef {
            kind: EntryKind::Put,
            tag: 0,
            key,
            value,
        }
    }

    /// A delete of `key`.
    pub fn delete(key: &'a [u8]) -> OpRef<'a> {
        OpRef {
            kind: EntryKind::Delete,
            tag: 0,
            key,
            value: &[],
        }
    }
}

/// An owned batch of writes, applied atomically per shard.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub(crate) ops: Vec<(EntryKind, u8, Vec<u8>, Vec<u8>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push((EntryKind::Put, 0, key.into(), value.into()));
        self
    }
    /// Adds a put carrying an adapter tag.
    pub fn put_tagged(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        tag: u8,
    ) -> &mut Self {
        self.ops
            .push((EntryKind::Put, tag, key.into(), value.into()));
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops
            .push((EntryKind::Delete, 0, key.into(), Vec::new()));
        self
    }
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The operations, borrowed, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = OpRef<'_>> {
        self.ops.iter().map(|(kind, tag, key, value)| OpRef {
            kind: *kind,
            tag: *tag,
            key,
            value,
        })
    }
}

/// The next key after every key that starts with `prefix`, or `None` when no such key exists
/// (the prefix is all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// xxh3-64 of `bytes`: the checksum of every on-disk structure.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_bumps_last_non_ff_byte() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
