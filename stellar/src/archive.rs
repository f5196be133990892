//! History archives: checkpoint states, bucket paths, the bucket list's merge schedule, and
//! the check that re-performs every merge whose inputs and output an archive holds.
//!
//! Layout (stellar-core's): `.well-known/stellar-history.json` is the latest history archive
//! state (HAS); `history/xx/yy/zz/history-XXXXXXXX.json` is the HAS of the checkpoint ending
//! at ledger `0xXXXXXXXX` (`xx/yy/zz` are its first three bytes in hex); a checkpoint ends
//! every [`CHECKPOINT_FREQUENCY`] ledgers. `bucket/pp/qq/rr/bucket-<hex>.xdr.gz` is the
//! gzipped bucket whose SHA-256 is `<hex>` (`pp/qq/rr`: its first three bytes).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bucket::{BucketReader, EMPTY_BUCKET};
use crate::error::{Error, Result};
use crate::merge::merge;
use crate::MAX_HAS_BYTES;

/// Ledgers per checkpoint.
pub const CHECKPOINT_FREQUENCY: u32 = 64;

/// Levels of the bucket list.
pub const NUM_LEVELS: usize = 11;

/// `levelSize(i) = 4^(i+1)`: the idealized number of ledgers level `i` holds.
pub fn level_size(level: u32) -> u32 {
    1 << (2 * (level + 1))
}

/// `levelHalf(i) = levelSize(i) / 2`.
pub fn level_half(level: u32) -> u32 {
    level_size(level) >> 1
}

fn round_down(v: u32, m: u32) -> u32 {
    v & !(m - 1)
}

/// Whether level `level` spills (its curr becomes its snap) at `ledger`.
pub fn level_should_spill(ledger: u32, level: u32) -> bool {
    if level as usize == NUM_LEVELS - 1 {
        return false;
    }
    ledger == round_down(ledger, level_half(level))
        || ledger == round_down(ledger, level_size(level))
}

/// Whether the merge into `level` started at `ledger` merges the incoming snap with an empty
/// curr (because the level's curr will itself be snapped when the merge is committed).
pub fn should_merge_with_empty_curr(ledger: u32, level: u32) -> bool {
    if level == 0 {
        return false;
    }
    let start = round_down(ledger, level_half(level - 1));
    level_should_spill(start + level_half(level - 1), level)
}

/// Whether a merge into `level` keeps DEADENTRY records (every level but the last).
pub fn keep_tombstones(level: u32) -> bool {
    (level as usize) < NUM_LEVELS - 1
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HasJson {
    current_ledger: u32,
    current_buckets: Vec<LevelJson>,
}

#[derive(Deserialize)]
struct LevelJson {
    curr: String,
    snap: String,
}

/// One level of a bucket list: the names of its curr and snap buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// The curr bucket (newer).
    pub curr: [u8; 32],
    /// The snap bucket (older).
    pub snap: [u8; 32],
}

/// A history archive state: the bucket list at the end of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryArchiveState {
    /// The checkpoint's last ledger.
    pub current_ledger: u32,
    /// The [`NUM_LEVELS`] levels, level 0 first.
    pub levels: Vec<Level>,
}

impl HistoryArchiveState {
    /// The bucket names in shadowing order, newest first: level 0 curr, level 0 snap, level 1
    /// curr, ... (22 slots; the empty bucket is [`EMPTY_BUCKET`]).
    pub fn slots(&self) -> Vec<[u8; 32]> {
        self.levels.iter().flat_map(|l| [l.curr, l.snap]).collect()
    }
}

fn parse_hash(path: &Path, s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::Archive {
        path: path.to_path_buf(),
        reason: format!("bucket name {s:?} is not 64 hex digits: {e}"),
    })?;
    Ok(out)
}

/// Reads and checks a history archive state file.
pub fn read_has(path: &Path) -> Result<HistoryArchiveState> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io_err)?.len();
    if len > MAX_HAS_BYTES {
        return Err(Error::Archive {
            path: path.to_path_buf(),
            reason: format!("{len} bytes, limit {MAX_HAS_BYTES}"),
        });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    let json: HasJson = serde_json::from_slice(&bytes).map_err(|e| Error::Archive {
        path: path.to_path_buf(),
        reason: format!("not a history archive state: {e}"),
    })?;
    if json.current_buckets.len() != NUM_LEVELS {
        return Err(Error::Archive {
            path: path.to_path_buf(),
            reason: format!(
                "{} bucket list levels, expected {NUM_LEVELS}",
                json.current_buckets.len()
            ),
        });
    }
    let levels = json
        .current_buckets
        .iter()
        .map(|l| {
            Ok(Level {
                curr: parse_hash(path, &l.curr)?,
                snap: parse_hash(path, &l.snap)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(HistoryArchiveState {
        current_ledger: json.current_ledger,
        levels,
    })
}

/// Checks that `ledger` ends a checkpoint (63, 127, ...); the error names `path`.
pub fn check_checkpoint(ledger: u32, path: &Path) -> Result<()> {
    if ledger % CHECKPOINT_FREQUENCY != CHECKPOINT_FREQUENCY - 1 {
        return Err(Error::Archive {
            path: path.to_path_buf(),
            reason: format!(
                "ledger {ledger} is not a checkpoint (one ends every {CHECKPOINT_FREQUENCY} ledgers, at 63, 127, ...)"
            ),
        });
    }
    Ok(())
}

/// A history archive on the local file system.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    /// The archive rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Archive {
        Archive { root: root.into() }
    }

    /// The archive's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a checkpoint's state file.
    pub fn has_path(&self, checkpoint: u32) -> PathBuf {
        let hex = format!("{checkpoint:08x}");
        self.root
            .join("history")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex[4..6])
            .join(format!("history-{hex}.json"))
    }

    /// The path of a bucket file.
    pub fn bucket_path(&self, hash: &[u8; 32]) -> PathBuf {
        let hex = hex::encode(hash);
        self.root
            .join("bucket")
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex[4..6])
            .join(format!("bucket-{hex}.xdr.gz"))
    }

    /// The latest state (`.well-known/stellar-history.json`).
    pub fn latest(&self) -> Result<HistoryArchiveState> {
        read_has(&self.root.join(".well-known").join("stellar-history.json"))
    }

    /// The state at a checkpoint.
    pub fn state(&self, checkpoint: u32) -> Result<HistoryArchiveState> {
        check_checkpoint(checkpoint, &self.has_path(checkpoint))?;
        read_has(&self.has_path(checkpoint))
    }

    /// The checkpoints whose state file exists, from the first up to the latest, ascending.
    pub fn checkpoints(&self) -> Result<Vec<u32>> {
        let latest = self.latest()?.current_ledger;
        Ok((0..=latest / CHECKPOINT_FREQUENCY)
            .map(|i| i * CHECKPOINT_FREQUENCY + CHECKPOINT_FREQUENCY - 1)
            .filter(|&c| c <= latest && self.has_path(c).is_file())
            .collect())
    }

    /// A reader over a bucket (the empty bucket has no file), checking its SHA-256.
    pub fn open_bucket(&self, hash: &[u8; 32]) -> Result<BucketReader> {
        if *hash == EMPTY_BUCKET {
            return Ok(BucketReader::empty());
        }
        BucketReader::open(&self.bucket_path(hash), Some(*hash))
    }
}

/// A merge of the bucket list whose inputs and output are named by checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMerge {
    /// The level merged into.
    pub level: u32,
    /// The ledger at which the merge starts (level `level - 1` spills).
    pub ledger: u32,
    /// The older input: the level's curr (or the empty bucket).
    pub curr: [u8; 32],
    /// The newer input: the spilling level's curr, which becomes its snap.
    pub snap: [u8; 32],
    /// The output the archive records: the level's curr once the merge is committed.
    pub output: [u8; 32],
    /// Whether the merge keeps DEADENTRY records.
    pub keep_tombstones: bool,
}

/// Every merge into levels whose spill period is a multiple of the checkpoint frequency
/// (levels 4 and up) whose inputs and output are visible in the archive's checkpoint states.
///
/// The merge into level `i` that starts at ledger `L` (a multiple of `levelHalf(i-1)`) takes
/// level `i-1`'s curr at the checkpoint ending at `L-1` as its newer input, level `i`'s curr
/// right after `L` (the previous merge's output, visible at the checkpoint ending at `L+63`)
/// as its older input, unless [`should_merge_with_empty_curr`], and its output is level `i`'s
/// curr at the checkpoint ending at `L + levelHalf(i-1) + 63`.
pub fn planned_merges(archive: &Archive) -> Result<Vec<PlannedMerge>> {
    let checkpoints = archive.checkpoints()?;
    let Some(&last) = checkpoints.last() else {
        return Ok(Vec::new());
    };
    let state = |c: u32| -> Result<Option<HistoryArchiveState>> {
        if checkpoints.binary_search(&c).is_ok() {
            archive.state(c).map(Some)
        } else {
            Ok(None)
        }
    };
    let mut merges = Vec::new();
    for level in 1..NUM_LEVELS as u32 {
        let half = level_half(level - 1);
        if !half.is_multiple_of(CHECKPOINT_FREQUENCY) {
            continue;
        }
        let mut ledger = half;
        // Ledger numbers come from the archive: near u32::MAX the sum would overflow.
        while let Some(commit) = ledger
            .checked_add(half + CHECKPOINT_FREQUENCY - 1)
            .filter(|&c| c <= last)
        {
            let before = state(ledger - 1)?;
            let after_start = state(ledger + CHECKPOINT_FREQUENCY - 1)?;
            let after_commit = state(commit)?;
            let empty_curr = should_merge_with_empty_curr(ledger, level);
            if let (Some(before), Some(after_start), Some(after_commit)) =
                (before, after_start, after_commit)
            {
                let l = level as usize;
                merges.push(PlannedMerge {
                    level,
                    ledger,
                    curr: if empty_curr {
                        EMPTY_BUCKET
                    } else {
                        after_start.levels[l].curr
                    },
                    snap: before.levels[l - 1].curr,
                    output: after_commit.levels[l].curr,
                    keep_tombstones: keep_tombstones(level),
                });
            }
            ledger += half;
        }
    }
    Ok(merges)
}

/// The outcome of one re-performed merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCheck {
    /// The merge.
    pub merge: PlannedMerge,
    /// The SHA-256 of the output strata wrote.
    pub actual: [u8; 32],
    /// Entries in the output (METAENTRY included).
    pub records: u64,
    /// The merge's protocol version (the larger of the inputs').
    pub protocol: u32,
}

impl MergeCheck {
    /// Whether the output is byte-identical to the archive's (same SHA-256).
    pub fn matched(&self) -> bool {
        self.actual == self.merge.output
    }

    /// Whether strata can reproduce this merge exactly: its protocol takes no shadows
    /// ([`crate::merge::FIRST_PROTOCOL_WITHOUT_SHADOWS`]).
    pub fn checkable(&self) -> bool {
        self.protocol >= crate::merge::FIRST_PROTOCOL_WITHOUT_SHADOWS
    }
}

/// Performs every [`planned_merges`] merge into files under `scratch` (each removed after it
/// is hashed) and reports each outcome. Inputs are checked against their names as they are
/// read.
pub fn check_archive(archive: &Archive, scratch: &Path) -> Result<Vec<MergeCheck>> {
    let mut checks = Vec::new();
    for planned in planned_merges(archive)? {
        let out = scratch.join(format!("merge-{}-{}.xdr", planned.level, planned.ledger));
        let (curr, snap) = (
            archive.open_bucket(&planned.curr)?,
            archive.open_bucket(&planned.snap)?,
        );
        let protocol = curr.ledger_version().max(snap.ledger_version());
        let summary = merge(curr, snap, &out, planned.keep_tombstones)?;
        std::fs::remove_file(&out).map_err(|source| Error::Io {
            path: out.clone(),
            source,
        })?;
        checks.push(MergeCheck {
            merge: planned,
            actual: summary.hash,
            records: summary.records,
            protocol,
        });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_stellar_core_tables() {
        // levelShouldSpill's first values per level, from stellar-core's comments.
        assert!(level_should_spill(2, 0) && level_should_spill(8, 1) && level_should_spill(128, 3));
        assert!(!level_should_spill(6 * 64, 4) && level_should_spill(512, 4));
        assert!(!level_should_spill(1 << 30, 10));
        // snap(4) at 384 and 896: merges into level 4 that start there use an empty curr.
        for l in [384, 896] {
            assert!(should_merge_with_empty_curr(l, 4), "{l}");
        }
        for l in [128, 256, 512, 640, 768] {
            assert!(!should_merge_with_empty_curr(l, 4), "{l}");
        }
        assert_eq!(level_half(10), 2_097_152);
        assert!(keep_tombstones(9) && !keep_tombstones(10));
    }
}
