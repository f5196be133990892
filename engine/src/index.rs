//! The `Index` trait: how a sorted run finds a key without reading the run.
//!
//! An index is built while its run is written (the builder sees every key and record offset
//! once, in key order), persisted beside the run, and loaded at open from its own file only.

use std::io::Write;
use std::path::Path;

use crate::error::Result;

/// Which index implementation wrote an index file; stored in the manifest for each run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexKind(pub u8);

impl IndexKind {
    /// Every key and its offset in memory (`strata-index-inmem`).
    pub const IN_MEMORY: IndexKind = IndexKind(1);
    /// One key per page plus a filter, memory-mapped (`strata-index-disk`).
    pub const DISK: IndexKind = IndexKind(2);
}

/// Parameters of the index kinds that have them, chosen in the options.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct IndexParams {
    /// A page is 2^`page_size_exponent` bytes of run (6 to 30; default 14, 16 KiB, as
    /// stellar-core's BucketListDB).
    pub page_size_exponent: u8,
    /// Target false-positive rate of a filter (above 0, below 1; default 0.01).
    pub filter_false_positive_rate: f64,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            page_size_exponent: 14,
            filter_false_positive_rate: 0.01,
        }
    }
}

impl IndexParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(6..=30).contains(&self.page_size_exponent) {
            return Err(format!(
                "page_size_exponent must be 6 to 30, got {}",
                self.page_size_exponent
            ));
        }
        let fp = self.filter_false_positive_rate;
        if !(fp > 0.0 && fp < 1.0) {
            return Err(format!(
                "filter_false_positive_rate must be above 0 and below 1, got {fp}"
            ));
        }
        Ok(())
    }
}

/// Identity of the run an index belongs to. A persisted index stores it and is refused when it
/// does not match the run beside it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RunIdentity {
    /// The run's id.
    pub run_id: u64,
    /// Offset where the run's records end (its footer starts).
    pub data_end: u64,
    /// Length of the run file in bytes.
    pub file_len: u64,
    /// The run footer's checksum.
    pub footer_checksum: u64,
}

impl RunIdentity {
    /// Bytes of an encoded identity: run id, data end, file length, footer checksum, each a
    /// little-endian `u64`.
    pub const ENCODED_BYTES: usize = 32;

    /// The encoded identity.
    pub fn encode(&self) -> [u8; Self::ENCODED_BYTES] {
        let mut b = [0u8; Self::ENCODED_BYTES];
        for (i, v) in [
            self.run_id,
            self.data_end,
            self.file_len,
            self.footer_checksum,
        ]
        .iter()
        .enumerate()
        {
            b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes the identity at the start of `b` (all zeros where `b` is too short).
    pub fn decode(b: &[u8]) -> RunIdentity {
        let f = |i: usize| {
            b.get(8 * i..8 * i + 8)
                .map_or(0, |s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        };
        RunIdentity {
            run_id: f(0),
            data_end: f(1),
            file_len: f(2),
            footer_checksum: f(3),
        }
    }
}

/// Offset of the format version in every index file (after the 8-byte magic).
pub const INDEX_VERSION_OFFSET: usize = 8;
/// Offset of the run identity in every index file.
pub const INDEX_IDENTITY_OFFSET: usize = 16;

/// Checks the frame every index file shares (see [`crate::format::check_frame`]): at least
/// `header_bytes` plus the checksum, `magic` at offset 0, `version` at [`INDEX_VERSION_OFFSET`],
/// the checksum over every byte before the last 8; then, when `run` is given, the identity at
/// [`INDEX_IDENTITY_OFFSET`]. Returns the length before the checksum.
pub fn check_index_frame(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
    (magic, version): ([u8; 8], u32),
    header_bytes: usize,
    run: Option<&RunIdentity>,
) -> Result<usize> {
    let spec = crate::format::FrameSpec {
        what,
        magic,
        magic_at: 0,
        version,
        oldest_version: version,
        min_bytes: header_bytes + crate::format::FRAME_CHECKSUM_BYTES,
    };
    let body_end = crate::format::check_frame(bytes, path, 0, &spec)?;
    if let Some(run) = run {
        let stored = RunIdentity::decode(&bytes[INDEX_IDENTITY_OFFSET..]);
        if stored != *run {
            return Err(crate::error::Error::corrupt(
                path,
                INDEX_IDENTITY_OFFSET as u64,
                what,
                format!("belongs to another run ({stored:?}, expected {run:?})"),
            ));
        }
    }
    Ok(body_end)
}

/// Byte span of a run in which a key's record must start, if the key is present.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// First offset to look at (a record start).
    pub start: u64,
    /// The key's record, if any, starts before this offset. Records may extend past it.
    pub end: u64,
}

/// Builds an index while a run is written.
pub trait IndexBuilder: Send {
    /// Records that the record of `key` starts at `offset`. Called once per record, with keys in
    /// strictly increasing order and offsets increasing. Never fails; may allocate.
    fn add(&mut self, key: &[u8], offset: u64);

    /// Writes the finished index to `out` (the engine owns the file: temporary name, sync,
    /// rename). Returns I/O errors from `out` only.
    fn finish(self: Box<Self>, run: &RunIdentity, out: &mut dyn Write) -> std::io::Result<()>;
}

/// A loaded index of one run. Cheap to query, safe to share between threads.
pub trait Index: Send + Sync {
    /// False only if `key` is certainly absent from the run. Never does I/O.
    fn may_contain(&self, key: &[u8]) -> bool;

    /// The span where `key`'s record starts if the key is present; `None` if it is certainly
    /// absent. May read the index's own memory map, never the run.
    fn locate(&self, key: &[u8]) -> Option<Span>;

    /// A record-start offset such that every record before it has a key `< key`; scanning
    /// forward from it finds the first key `>= key`. Returns the run's data end when every key
    /// is smaller.
    fn seek(&self, key: &[u8]) -> u64;

    /// Number of keys indexed.
    fn key_count(&self) -> u64;

    /// Bytes of memory this index holds (heap, plus mapped bytes it touches on lookups).
    fn memory_bytes(&self) -> u64;
}

/// Makes builders and loads index files of one kind. Object-safe: the engine holds several and
/// picks per run.
pub trait IndexFactory: Send + Sync {
    /// The kind recorded in the manifest for runs indexed by this factory.
    fn kind(&self) -> IndexKind;

    /// A short name ("inmem", "disk").
    fn name(&self) -> &'static str;

    /// A builder for a new run that will hold about `expected_keys` keys (an upper bound; sizes
    /// filters).
    fn builder(&self, expected_keys: u64) -> Box<dyn IndexBuilder>;

    /// Loads the index file at `path` of `fs` for the run `run`, without reading the run. Errors name
    /// the file: [`crate::Error::UnsupportedVersion`] for another format version,
    /// [`crate::Error::Corrupt`] / [`crate::Error::ChecksumMismatch`] for damage or a file that
    /// belongs to another run, [`crate::Error::Io`] when it cannot be read.
    fn load(
        &self,
        fs: &dyn crate::fs::FileSystem,
        path: &Path,
        run: &RunIdentity,
    ) -> Result<Box<dyn Index>>;
}
