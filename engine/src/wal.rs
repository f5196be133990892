//! The `Wal` trait: a shard's write-ahead log as the engine uses it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::EventSink;
use crate::fs::{FileSystem, Mapped};
use crate::types::{checksum, EntryKind, OpRef, SegmentId, SeqNo, WalPos};

/// One record found by recovery, delivered only once its whole batch is known to be intact.
#[derive(Clone, Copy, Debug)]
pub struct RecoveredRecord<'a> {
    /// The record's sequence number.
    pub seq: SeqNo,
    /// Put or delete.
    pub kind: EntryKind,
    /// Adapter tag.
    pub tag: u8,
    /// The key.
    pub key: &'a [u8],
    /// Where the value is.
    pub pos: WalPos,
}

/// What an append produced.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Sequence number of the first operation; the others follow consecutively.
    pub first_seq: SeqNo,
    /// Position of each operation's value, in order.
    pub positions: Vec<WalPos>,
}

/// Bytes and files of a WAL, for stats.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalStats {
    /// Live segment files.
    pub segments: u64,
    /// Their total length in bytes.
    pub bytes: u64,
    /// Bytes read from disk by the last recovery.
    pub recovery_bytes_read: u64,
}

/// A frozen WAL segment mapped whole (see [`Wal::load_segment`]).
pub struct LoadedSegment {
    /// The segment file, named in errors.
    pub path: PathBuf,
    /// The file's bytes.
    pub map: Box<dyn Mapped>,
}

impl std::fmt::Debug for LoadedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSegment")
            .field("path", &self.path)
            .field("bytes", &self.map.bytes().len())
            .finish()
    }
}

impl LoadedSegment {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    /// True for an empty segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `pos`, checked against the 8-byte checksum stored after it (the WAL
    /// record layout of `docs/FORMAT.md`). A position past the end is an error, not a panic.
    pub fn value(&self, pos: WalPos) -> Result<&[u8]> {
        let start = usize::try_from(pos.value_offset).unwrap_or(usize::MAX);
        let end = start.checked_add(pos.value_len as usize);
        let sum_end = end.and_then(|e| e.checked_add(8));
        let (Some(end), Some(sum_end)) = (end, sum_end) else {
            return Err(self.past_end(pos));
        };
        let bytes = self.map.bytes();
        if sum_end > bytes.len() {
            return Err(self.past_end(pos));
        }
        let value = &bytes[start..end];
        let expected = u64::from_le_bytes(bytes[end..sum_end].try_into().expect("8 bytes"));
        let actual = checksum(value);
        if expected != actual {
            return Err(Error::ChecksumMismatch {
                file: self.path.clone(),
                offset: pos.value_offset,
                what: "WAL value",
                expected,
                actual,
            });
        }
        Ok(value)
    }

    fn past_end(&self, pos: WalPos) -> Error {
        Error::corrupt(
            &self.path,
            pos.value_offset,
            "WAL value",
            format!(
                "{} bytes and checksum run past the segment's end ({} bytes)",
                pos.value_len,
                self.len()
            ),
        )
    }
}

/// A shard's write-ahead log: segmented, append-only, read back by position.
pub trait Wal: Send + Sync + Sized + 'static {
    /// Opens (or creates) the log in `dir` of `fs`. Segments numbered below `floor` are already
    /// compacted: they are deleted, except the `values` ones (value files runs point into),
    /// which stay open for reads and are not replayed; a missing or damaged one is an error. Every intact record of the remaining segments is passed to
    /// `replay`, in log order, by walking headers only (values are not read). A torn tail of the
    /// newest segment is truncated (with an event); damage anywhere else is an error naming the
    /// file and offset. New records get sequence numbers above `last_seq` and above every
    /// recovered one.
    fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        floor: SegmentId,
        values: &[SegmentId],
        last_seq: SeqNo,
        events: Arc<dyn EventSink>,
        replay: &mut dyn FnMut(RecoveredRecord<'_>) -> Result<()>,
    ) -> Result<Self>;

    /// Appends `ops` as one batch (recovered all or nothing) and hands them to the OS. Blocks
    /// for the write, not for a sync. After an error the log refuses further appends.
    fn append(&self, ops: &[OpRef<'_>]) -> Result<Appended>;

    /// Makes every append that returned before this call durable (fdatasync). Concurrent callers
    /// share one sync (group commit). After an error the log refuses further appends.
    fn sync(&self) -> Result<()>;

    /// Syncs and closes the current segment and starts a new one, returned. Later appends go to
    /// the new segment; earlier positions stay readable until [`Wal::remove_segment`].
    fn rotate(&self) -> Result<SegmentId>;

    /// The segment appends currently go to.
    fn active_segment(&self) -> SegmentId;

    /// Reads one value whole and checks its checksum.
    fn read_value(&self, pos: WalPos) -> Result<Vec<u8>>;

    /// The checksum stored with the value at `pos` (what a value pointer records), read
    /// without reading the value.
    fn value_checksum(&self, pos: WalPos) -> Result<u64>;

    /// Streams one value to `sink` through `chunk` (its length is the chunk size), checking the
    /// checksum at the end: on a mismatch, `sink` has seen bytes but an error is returned.
    fn copy_value(
        &self,
        pos: WalPos,
        chunk: &mut [u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()>;

    /// Maps frozen segment `segment` whole, if it is at most `max_bytes` long (`None`
    /// otherwise): a compaction that copies every value of a segment reads it through the
    /// map instead of with one read call per value.
    fn load_segment(&self, segment: SegmentId, max_bytes: u64) -> Result<Option<LoadedSegment>>;

    /// Deletes a frozen segment whose contents are compacted, or a value file no run points
    /// into any more. Never the active one.
    fn remove_segment(&self, segment: SegmentId) -> Result<()>;

    /// Current figures.
    fn stats(&self) -> WalStats;

    /// Closes the descriptors of segments whose every write is synced; they are reopened by
    /// the next append or read. The engine calls it for idle shards, so that a database of
    /// many shards does not hold one descriptor per shard. Never closes a file with unsynced
    /// writes (a new descriptor would not see a writeback error reported before it was
    /// opened). Returns how many were closed. The default closes none.
    fn release_files(&self) -> usize {
        0
    }
}
