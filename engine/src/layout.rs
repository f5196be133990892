//! The names of everything in a database directory, built and parsed here and nowhere else.
//!
//! ```text
//! DIR/STRATA                          database identity (sharding rule)
//! DIR/LOCK                            held by the open handle
//! DIR/shard-<id:016x>/MANIFEST        the shard's live runs and WAL floor
//! DIR/shard-<id:016x>/run-<n:016x>.run  a sorted run
//! DIR/shard-<id:016x>/run-<n:016x>.idx  its index
//! DIR/shard-<id:016x>/wal-<n:016x>.log  a WAL segment
//! any name + ".tmp"                   a file being written; removed at open
//! ```

use crate::types::{SegmentId, ShardId};

/// Name of the database identity file.
pub const DB_FILE: &str = "STRATA";
/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";
/// File name of a shard's manifest.
pub const SHARD_MANIFEST_FILE: &str = "MANIFEST";
/// Suffix of a file being written (renamed to its final name once complete and synced).
pub const TMP_SUFFIX: &str = ".tmp";

const SHARD_PREFIX: &str = "shard-";
const RUN_PREFIX: &str = "run-";
const RUN_SUFFIX: &str = ".run";
const INDEX_SUFFIX: &str = ".idx";
const WAL_PREFIX: &str = "wal-";
const WAL_SUFFIX: &str = ".log";

/// What a name in a database directory or a shard directory is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// The database identity file.
    DbIdentity,
    /// The lock file.
    Lock,
    /// A shard directory.
    ShardDir(ShardId),
    /// A shard manifest.
    ShardManifest,
    /// A sorted run file.
    Run(u64),
    /// A run's index file.
    Index(u64),
    /// A WAL segment.
    WalSegment(SegmentId),
    /// A file being written when the process stopped.
    Temporary,
}

/// Directory name of shard `id`.
pub fn shard_dir_name(id: ShardId) -> String {
    format!("{SHARD_PREFIX}{:016x}", id.0)
}

/// File name of run `id`.
pub fn run_file_name(id: u64) -> String {
    format!("{RUN_PREFIX}{id:016x}{RUN_SUFFIX}")
}

/// File name of the index of run `id`.
pub fn index_file_name(id: u64) -> String {
    format!("{RUN_PREFIX}{id:016x}{INDEX_SUFFIX}")
}

/// File name of WAL segment `id`.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{WAL_PREFIX}{:016x}{WAL_SUFFIX}", id.0)
}

/// The temporary name under which `name` is written.
pub fn tmp_name(name: &str) -> String {
    format!("{name}{TMP_SUFFIX}")
}

/// Exactly 16 lowercase or uppercase hex digits.
fn hex16(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

fn between<'a>(name: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)
}

/// What `name` is, or `None` for a name strata does not make.
pub fn parse(name: &str) -> Option<FileKind> {
    if name.ends_with(TMP_SUFFIX) {
        return Some(FileKind::Temporary);
    }
    match name {
        DB_FILE => return Some(FileKind::DbIdentity),
        LOCK_FILE => return Some(FileKind::Lock),
        SHARD_MANIFEST_FILE => return Some(FileKind::ShardManifest),
        _ => {}
    }
    if let Some(id) = name.strip_prefix(SHARD_PREFIX).and_then(hex16) {
        return Some(FileKind::ShardDir(ShardId(id)));
    }
    if let Some(id) = between(name, RUN_PREFIX, RUN_SUFFIX).and_then(hex16) {
        return Some(FileKind::Run(id));
    }
    if let Some(id) = between(name, RUN_PREFIX, INDEX_SUFFIX).and_then(hex16) {
        return Some(FileKind::Index(id));
    }
    if let Some(id) = between(name, WAL_PREFIX, WAL_SUFFIX).and_then(hex16) {
        return Some(FileKind::WalSegment(SegmentId(id)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_what_built_it() {
        let id = 0x0123_4567_89ab_cdef;
        assert_eq!(
            parse(&shard_dir_name(ShardId(id))),
            Some(FileKind::ShardDir(ShardId(id)))
        );
        assert_eq!(parse(&run_file_name(id)), Some(FileKind::Run(id)));
        assert_eq!(parse(&index_file_name(id)), Some(FileKind::Index(id)));
        assert_eq!(
            parse(&segment_file_name(SegmentId(id))),
            Some(FileKind::WalSegment(SegmentId(id)))
        );
        assert_eq!(
            parse(&tmp_name(&run_file_name(id))),
            Some(FileKind::Temporary)
        );
        assert_eq!(parse("MANIFEST.tmp"), Some(FileKind::Temporary));
        assert_eq!(parse(DB_FILE), Some(FileKind::DbIdentity));
        assert_eq!(parse(LOCK_FILE), Some(FileKind::Lock));
        assert_eq!(parse(SHARD_MANIFEST_FILE), Some(FileKind::ShardManifest));
        for other in [
            "run-12.run",
            "shard-",
            "wal-000000000000000g.log",
            "notes.txt",
            "run-0000000000000001.runx",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
