//! Errors. Each names the file it concerns and, for bytes that failed a check, the offset of
//! the record in the uncompressed bucket stream (the offset of its record mark).

use std::io;
use std::path::PathBuf;

/// An error from reading, writing or merging buckets or from reading a history archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A download from a history archive failed (after retries, for a transient failure).
    #[error("{url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The gzip stream of a bucket could not be decompressed.
    #[error("bucket {bucket}: damaged gzip stream at uncompressed offset {offset}: {source}")]
    Gzip {
        /// The bucket file.
        bucket: PathBuf,
        /// Uncompressed bytes decoded before the failure.
        offset: u64,
        /// The decompressor's error.
        source: io::Error,
    },
    /// A record mark without its high bit (the last-fragment flag) set.
    #[error("bucket {bucket}: bad record mark {mark:#010x} at offset {offset}")]
    BadMark {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the mark.
        offset: u64,
        /// The mark.
        mark: u32,
    },
    /// A record longer than [`crate::MAX_RECORD_BYTES`].
    #[error("bucket {bucket}: record at offset {offset} claims {len} bytes, limit {limit}")]
    RecordTooLarge {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
        /// The length the mark gives.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// The stream ended inside a record mark or a record.
    #[error(
        "bucket {bucket}: short record at offset {offset}: wanted {wanted} bytes, found {found}"
    )]
    ShortRecord {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
        /// Bytes the mark and record need.
        wanted: u64,
        /// Bytes found before the end of the stream.
        found: u64,
    },
    /// A record that is not a valid XDR `BucketEntry` (or has bytes left over).
    #[error(
        "bucket {bucket}: record at offset {offset} does not decode as a BucketEntry: {reason}"
    )]
    Undecodable {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },
    /// A record whose key is not greater than the previous record's (`LedgerEntryIdCmp`).
    #[error("bucket {bucket}: record at offset {offset} is out of order (key not above the previous record's)")]
    OutOfOrder {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
    },
    /// A METAENTRY that is not the first record.
    #[error("bucket {bucket}: METAENTRY at offset {offset} is not the first record")]
    MisplacedMeta {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
    },
    /// A bucket whose SHA-256 is not the one its name or its history archive state gives.
    #[error("bucket {bucket}: SHA-256 of its {bytes} uncompressed bytes (checked at the end, offset {bytes}) is {actual}, expected {expected}")]
    HashMismatch {
        /// The bucket file.
        bucket: PathBuf,
        /// Uncompressed bytes hashed (the offset where the check failed: the end).
        bytes: u64,
        /// The expected hash, hex.
        expected: String,
        /// The computed hash, hex.
        actual: String,
    },
    /// Two entries that stellar-core refuses to merge (a new INITENTRY over an old entry that
    /// is not a DEADENTRY).
    #[error("merge: new bucket {new} record at offset {new_offset} is an INITENTRY over a non-DEAD entry in old bucket {old} at offset {old_offset}")]
    MalformedMerge {
        /// The older input.
        old: PathBuf,
        /// Offset of the old record.
        old_offset: u64,
        /// The newer input.
        new: PathBuf,
        /// Offset of the new record.
        new_offset: u64,
    },
    /// An entry that a merge of its protocol cannot hold (stellar-core's
    /// `checkProtocolLegality`: INITENTRY and METAENTRY need protocol 11; a hot archive bucket
    /// has no INITENTRY).
    #[error("bucket {bucket}: {entry} at offset {offset} in a protocol {protocol} merge of {list} buckets (INITENTRY and METAENTRY need protocol 11 or later; hot archive buckets have no INITENTRY)")]
    IllegalEntry {
        /// The input bucket.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
        /// `INITENTRY` or `METAENTRY`.
        entry: &'static str,
        /// The merge's protocol version.
        protocol: u32,
        /// `live` or `hot_archive`.
        list: &'static str,
    },
    /// Shadows given to a merge that takes none (protocol 12 or later, or a hot archive merge).
    #[error("merge: {shadows} shadow bucket(s) (the first {first}) given to a protocol {protocol} merge; stellar-core takes shadows only before protocol 12, and never for the hot archive")]
    ShadowsNotSupported {
        /// The first shadow.
        first: PathBuf,
        /// How many shadows were given.
        shadows: usize,
        /// The merge's protocol version.
        protocol: u32,
    },
    /// More shadows than any merge takes ([`crate::MAX_SHADOWS`]).
    #[error("merge: {given} shadow buckets given; a merge takes at most {limit} (the merge into level 10 shadows with levels 0 to 8)")]
    TooManyShadows {
        /// Shadows given.
        given: usize,
        /// The limit.
        limit: usize,
    },
    /// A hot archive bucket record that breaks the hot archive's rules.
    #[error("hot archive bucket {bucket}: record at offset {offset}: {reason}")]
    HotArchive {
        /// The bucket file.
        bucket: PathBuf,
        /// Offset of the record mark.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A history archive file that is missing, too large or not what the format says.
    #[error("history archive {path}: {reason}")]
    Archive {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// The file the error concerns (the URL, for a download).
    pub fn file(&self) -> &std::path::Path {
        match self {
            Error::Fetch { url, .. } => std::path::Path::new(url.as_str()),
            Error::Io { path, .. } | Error::Archive { path, .. } => path,
            Error::Gzip { bucket, .. }
            | Error::BadMark { bucket, .. }
            | Error::RecordTooLarge { bucket, .. }
            | Error::ShortRecord { bucket, .. }
            | Error::Undecodable { bucket, .. }
            | Error::OutOfOrder { bucket, .. }
            | Error::MisplacedMeta { bucket, .. }
            | Error::IllegalEntry { bucket, .. }
            | Error::HotArchive { bucket, .. }
            | Error::HashMismatch { bucket, .. } => bucket,
            Error::MalformedMerge { new, .. } => new,
            Error::ShadowsNotSupported { first, .. } => first,
            Error::TooManyShadows { .. } => std::path::Path::new(""),
        }
    }

    /// The offset in the uncompressed bucket stream the error concerns, if any.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Io { .. }
            | Error::Archive { .. }
            | Error::Fetch { .. }
            | Error::ShadowsNotSupported { .. }
            | Error::TooManyShadows { .. } => None,
            Error::Gzip { offset, .. }
            | Error::BadMark { offset, .. }
            | Error::RecordTooLarge { offset, .. }
            | Error::ShortRecord { offset, .. }
            | Error::Undecodable { offset, .. }
            | Error::OutOfOrder { offset, .. }
            | Error::MisplacedMeta { offset, .. }
            | Error::IllegalEntry { offset, .. }
            | Error::HotArchive { offset, .. } => Some(*offset),
            Error::HashMismatch { bytes, .. } => Some(*bytes),
            Error::MalformedMerge { new_offset, .. } => Some(*new_offset),
        }
    }
}

/// A result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
