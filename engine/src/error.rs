//! The engine's error type, shared by every crate that implements an engine trait.

use std::io;
use std::path::PathBuf;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata. Variants that concern bytes on disk name the file and
/// the offset, so damage can be found with a hex editor.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("I/O error while {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "syncing", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Stored bytes do not match their checksum.
    #[error("checksum mismatch in {} at offset {offset} ({what}): stored {expected:#018x}, computed {actual:#018x}; the file is damaged", file.display())]
    ChecksumMismatch {
        /// The damaged file.
        file: PathBuf,
        /// Offset of the checksummed structure.
        offset: u64,
        /// What the checksum covers.
        what: &'static str,
        /// Checksum stored in the file.
        expected: u64,
        /// Checksum of the bytes as read.
        actual: u64,
    },
    /// Stored bytes are structurally invalid (bad magic, impossible length, out of order...).
    #[error("corrupt {what} in {} at offset {offset}: {detail}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Offset of the bad structure.
        offset: u64,
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A file of a format version this build does not read.
    #[error("{} is a {what} of format version {found}; this build of strata reads version {supported} only", file.display())]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// Which structure.
        what: &'static str,
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A key longer than [`crate::MAX_KEY_BYTES`].
    #[error("key of {len} bytes is longer than the limit of {limit} bytes (MAX_KEY_BYTES)")]
    KeyTooLarge {
        /// Length given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A value longer than [`crate::MAX_VALUE_BYTES`].
    #[error("value of {len} bytes is longer than the limit of {limit} bytes (MAX_VALUE_BYTES)")]
    ValueTooLarge {
        /// Length given.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch with more than [`crate::MAX_BATCH_OPS`] operations.
    #[error(
        "batch of {ops} operations is larger than the limit of {limit} (MAX_BATCH_OPS); split it"
    )]
    BatchTooLarge {
        /// Operations given.
        ops: usize,
        /// The limit.
        limit: usize,
    },
    /// The database directory does not exist.
    #[error("database directory {} does not exist; create it or set Options::create_if_missing", path.display())]
    NotFound {
        /// The directory.
        path: PathBuf,
    },
    /// The directory exists, holds files, and is not a strata database.
    #[error("{} is not a strata database (it is not empty and has no STRATA file); choose an empty or new directory", path.display())]
    NotADatabase {
        /// The directory.
        path: PathBuf,
    },
    /// The database was created with options that cannot change (its sharding rule).
    #[error("database {} was created with {stored}, but was opened with {requested}; open it with the same sharding", path.display())]
    OptionsMismatch {
        /// The directory.
        path: PathBuf,
        /// What the database has.
        stored: String,
        /// What the caller asked for.
        requested: String,
    },
    /// Another process (or another `Db` in this process) has the database open.
    #[error("database {} is in use by another process or handle (lock file held)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Options that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A shard stopped accepting writes after a failed write, sync or compaction.
    #[error("shard {shard} refuses writes after an earlier failure ({cause}); reopen the database to recover (if a file is damaged, `strata repair DIR` salvages every intact record)")]
    Poisoned {
        /// The shard.
        shard: u64,
        /// The first failure.
        cause: String,
    },
    /// A write to a sealed shard (or one being sealed); unseal it first.
    #[error("shard {shard} is sealed and refuses writes; unseal it (or roll back into it) first")]
    Sealed {
        /// The shard.
        shard: u64,
    },
    /// The database was closed.
    #[error("the database is closed")]
    Closed,
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        what: &'static str,
        detail: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            file: file.into(),
            offset,
            what,
            detail: detail.into(),
        }
    }

    /// The file this error is about, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. } | Error::NotFound { path } | Error::NotADatabase { path } => {
                Some(path)
            }
            Error::ChecksumMismatch { file, .. }
            | Error::Corrupt { file, .. }
            | Error::UnsupportedVersion { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The offset in [`Error::file`] this error is about, if any.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::ChecksumMismatch { offset, .. } | Error::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}
