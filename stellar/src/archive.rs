//! History archives: checkpoint states, bucket paths, the bucket list's merge schedule, and
//! the check that re-performs every merge whose inputs and output an archive holds.
//!
//! Layout (stellar-core's): `.well-known/stellar-history.json` is the latest history archive
//! state (HAS); `history/xx/yy/zz/history-XXXXXXXX.json` is the HAS of the checkpoint ending
//! at ledger `0xXXXXXXXX` (`xx/yy/zz` are its first three bytes in hex); a checkpoint ends
//! every [`CHECKPOINT_FREQUENCY`] ledgers. `bucket/pp/qq/rr/bucket-<hex>.xdr.gz` is the
//! gzipped bucket whose SHA-256 is `<hex>` (`pp/qq/rr`: its first three bytes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Deserialize;

use crate::bucket::{BucketReader, EMPTY_BUCKET};
use crate::error::{Error, Result};
use crate::merge::{merge, ListType, FIRST_PROTOCOL_SHADOWS_REMOVED};
use crate::{MAX_HAS_BYTES, MAX_SHADOWS};

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
    // Near u32::MAX there is no next spill to merge toward.
    start
        .checked_add(level_half(level - 1))
        .is_some_and(|next| level_should_spill(next, level))
}

/// Whether a merge into `level` keeps DEADENTRY records (every level but the last).
pub fn keep_tombstones(level: u32) -> bool {
    (level as usize) < NUM_LEVELS - 1
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HasJson {
    #[serde(default)]
    version: u32,
    current_ledger: u32,
    current_buckets: Vec<LevelJson>,
    #[serde(default)]
    hot_archive_buckets: Vec<LevelJson>,
}

#[derive(Deserialize)]
struct LevelJson {
    curr: String,
    snap: String,
    #[serde(default)]
    next: Option<NextJson>,
}

#[derive(Deserialize)]
struct NextJson {
    state: u32,
    output: Option<String>,
    curr: Option<String>,
    snap: Option<String>,
    #[serde(default)]
    shadow: Vec<String>,
}

/// A level's `next`: stellar-core's `FutureBucket` as a history archive state records it, the
/// merge into the level that was running when the state was taken.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FutureBucket {
    /// `state: 0`: no merge recorded (from protocol 12 on, stellar-core clears `next` before
    /// publishing, since the inputs can be found from the levels).
    #[default]
    Clear,
    /// `state: 1`: the merge's output.
    Output([u8; 32]),
    /// `state: 2`: the merge's inputs, shadows newest first.
    Inputs {
        /// The older input (the level's curr, or the empty bucket).
        curr: [u8; 32],
        /// The newer input (the level above's snap).
        snap: [u8; 32],
        /// The shadows.
        shadows: Vec<[u8; 32]>,
    },
}

/// One level of a bucket list: the names of its curr and snap buckets and its pending merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// The curr bucket (newer).
    pub curr: [u8; 32],
    /// The snap bucket (older).
    pub snap: [u8; 32],
    /// The merge into this level in progress, as recorded.
    pub next: FutureBucket,
}

/// A history archive state: the bucket lists at the end of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryArchiveState {
    /// The state file's `version` (2 from protocol 23, with the hot archive).
    pub version: u32,
    /// The checkpoint's last ledger.
    pub current_ledger: u32,
    /// The live bucket list's [`NUM_LEVELS`] levels, level 0 first.
    pub levels: Vec<Level>,
    /// The hot archive bucket list's levels (`hotArchiveBuckets`, version 2), level 0 first;
    /// empty before protocol 23.
    pub hot_archive: Vec<Level>,
}

impl HistoryArchiveState {
    /// The live bucket names in shadowing order, newest first: level 0 curr, level 0 snap,
    /// level 1 curr, ... (22 slots; the empty bucket is [`EMPTY_BUCKET`]).
    pub fn slots(&self) -> Vec<[u8; 32]> {
        self.levels.iter().flat_map(|l| [l.curr, l.snap]).collect()
    }

    /// The levels of one bucket list (empty when the state has none of it).
    pub fn list(&self, list: ListType) -> &[Level] {
        match list {
            ListType::Live => &self.levels,
            ListType::HotArchive => &self.hot_archive,
        }
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

fn parse_levels(path: &Path, what: &str, levels: &[LevelJson]) -> Result<Vec<Level>> {
    let archive_err = |reason: String| Error::Archive {
        path: path.to_path_buf(),
        reason,
    };
    if levels.len() != NUM_LEVELS {
        return Err(archive_err(format!(
            "{what}: {} bucket list levels, expected {NUM_LEVELS}",
            levels.len()
        )));
    }
    let field = |name: &str, v: &Option<String>, level: usize| -> Result<[u8; 32]> {
        let v = v
            .as_deref()
            .ok_or_else(|| archive_err(format!("{what} level {level}: next has no {name}")))?;
        parse_hash(path, v)
    };
    levels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let next = match &l.next {
                None => FutureBucket::Clear,
                Some(n) => match n.state {
                    0 => FutureBucket::Clear,
                    1 => FutureBucket::Output(field("output", &n.output, i)?),
                    2 => {
                        if n.shadow.len() > MAX_SHADOWS {
                            return Err(archive_err(format!(
                                "{what} level {i}: {} shadows, at most {MAX_SHADOWS}",
                                n.shadow.len()
                            )));
                        }
                        FutureBucket::Inputs {
                            curr: field("curr", &n.curr, i)?,
                            snap: field("snap", &n.snap, i)?,
                            shadows: n
                                .shadow
                                .iter()
                                .map(|s| parse_hash(path, s))
                                .collect::<Result<_>>()?,
                        }
                    }
                    s => {
                        return Err(archive_err(format!(
                            "{what} level {i}: next.state {s} is not 0, 1 or 2"
                        )))
                    }
                },
            };
            Ok(Level {
                curr: parse_hash(path, &l.curr)?,
                snap: parse_hash(path, &l.snap)?,
                next,
            })
        })
        .collect()
}

/// Reads and checks a history archive state file.
pub fn read_has(path: &Path) -> Result<HistoryArchiveState> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: a FIFO would block the open, and a device has no length.
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(Error::Archive {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(io_err)?,
            MAX_HAS_BYTES + 1,
        ),
        &mut bytes,
    )
    .map_err(io_err)?;
    if bytes.len() as u64 > MAX_HAS_BYTES {
        return Err(Error::Archive {
            path: path.to_path_buf(),
            reason: format!("more than {MAX_HAS_BYTES} bytes"),
        });
    }
    let json: HasJson = serde_json::from_slice(&bytes).map_err(|e| Error::Archive {
        path: path.to_path_buf(),
        reason: format!("not a history archive state: {e}"),
    })?;
    let levels = parse_levels(path, "currentBuckets", &json.current_buckets)?;
    let hot_archive = if json.hot_archive_buckets.is_empty() {
        Vec::new()
    } else {
        parse_levels(path, "hotArchiveBuckets", &json.hot_archive_buckets)?
    };
    Ok(HistoryArchiveState {
        version: json.version,
        current_ledger: json.current_ledger,
        levels,
        hot_archive,
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
        let path = self.root.join(".well-known").join("stellar-history.json");
        let state = read_has(&path)?;
        check_checkpoint(state.current_ledger, &path)?;
        Ok(state)
    }

    /// The state at a checkpoint.
    pub fn state(&self, checkpoint: u32) -> Result<HistoryArchiveState> {
        check_checkpoint(checkpoint, &self.root)?;
        let path = self.has_path(checkpoint);
        if !path.exists() {
            let latest = match self.latest() {
                Ok(l) => format!("its latest checkpoint is {}", l.current_ledger),
                Err(e) => format!("its latest state does not read either: {e}"),
            };
            return Err(Error::Archive {
                path: self.root.clone(),
                reason: format!(
                    "no state for checkpoint {checkpoint} ({} is missing); {latest}",
                    path.display()
                ),
            });
        }
        let state = read_has(&path)?;
        if state.current_ledger != checkpoint {
            return Err(Error::Archive {
                path,
                reason: format!(
                    "names ledger {}, but its place in the archive is checkpoint {checkpoint}",
                    state.current_ledger
                ),
            });
        }
        Ok(state)
    }

    /// The checkpoints whose state file exists (a regular file at its place in
    /// `history/xx/yy/zz/`), ascending. Found by listing the folders, so the work is that of the
    /// files there, whatever ledger numbers they claim.
    pub fn checkpoints(&self) -> Result<Vec<u32>> {
        let list = |dir: &Path| -> Result<Vec<(String, PathBuf)>> {
            match std::fs::read_dir(dir) {
                Ok(entries) => Ok(entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(source) => Err(Error::Io {
                    path: dir.to_path_buf(),
                    source,
                }),
            }
        };
        let mut found = Vec::new();
        for (_, a) in list(&self.root.join("history"))? {
            for (_, b) in list(&a)? {
                for (_, c) in list(&b)? {
                    for (name, file) in list(&c)? {
                        let Some(hex) = name
                            .strip_prefix("history-")
                            .and_then(|n| n.strip_suffix(".json"))
                            .filter(|h| h.len() == 8)
                        else {
                            continue;
                        };
                        let Ok(ledger) = u32::from_str_radix(hex, 16) else {
                            continue;
                        };
                        if ledger % CHECKPOINT_FREQUENCY == CHECKPOINT_FREQUENCY - 1
                            && self.has_path(ledger) == file
                            && file.is_file()
                        {
                            found.push(ledger);
                        }
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// A reader over a bucket (the empty bucket has no file), checking its SHA-256.
    pub fn open_bucket(&self, hash: &[u8; 32]) -> Result<BucketReader> {
        if *hash == EMPTY_BUCKET {
            return Ok(BucketReader::empty());
        }
        BucketReader::open(&self.bucket_path(hash), Some(*hash))
    }
}

/// Where the older input of a merge comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrInput {
    /// A bucket the archive names (the empty bucket when the merge starts with an empty curr).
    Bucket([u8; 32]),
    /// The output of the level's previous merge, which no state records: re-performed first
    /// (a chained merge).
    PreviousMerge,
}

/// A merge of a bucket list, with what the archive's checkpoint states say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMerge {
    /// The bucket list.
    pub list: ListType,
    /// The level merged into (1 to 10).
    pub level: u32,
    /// The ledger at which the merge starts (level `level - 1` spills).
    pub ledger: u32,
    /// The older input, if the archive lets it be found.
    pub curr: Option<CurrInput>,
    /// The newer input (level `level - 1`'s curr as the merge starts), if found.
    pub snap: Option<[u8; 32]>,
    /// The shadows (levels `0..level-1` as the merge starts, newest first), if found. They
    /// are used only when the snap's protocol is below 12.
    pub shadows: Option<Vec<[u8; 32]>>,
    /// The output the archive records, if any.
    pub output: Option<[u8; 32]>,
    /// Whether the merge keeps tombstones (every level but the last).
    pub keep_tombstones: bool,
    /// Two states that must name the same bucket (the level's curr between two commits, the
    /// level above's snap between two spills) and do not: the archive contradicts itself.
    pub disagreement: Option<String>,
}

/// The checkpoint states of an archive, read as needed and a few kept (their number is bounded
/// by [`STATE_CACHE_ENTRIES`], whatever the archive's length).
struct States<'a> {
    archive: &'a Archive,
    checkpoints: Vec<u32>,
    cache: HashMap<u32, Rc<HistoryArchiveState>>,
}

/// Checkpoint states a [`check_archive`] keeps parsed at once.
pub const STATE_CACHE_ENTRIES: usize = 64;

/// How many merges in a row [`check_archive`] re-performs to find one merge's older input.
pub const MAX_CHAINED_MERGES: u32 = 2;

impl States<'_> {
    fn at(&mut self, checkpoint: u32) -> Result<Option<Rc<HistoryArchiveState>>> {
        if self.checkpoints.binary_search(&checkpoint).is_err() {
            return Ok(None);
        }
        if let Some(s) = self.cache.get(&checkpoint) {
            return Ok(Some(s.clone()));
        }
        if self.cache.len() >= STATE_CACHE_ENTRIES {
            self.cache.clear();
        }
        let state = Rc::new(self.archive.state(checkpoint)?);
        self.cache.insert(checkpoint, state.clone());
        Ok(Some(state))
    }

    /// What each of `picks` names in every state taken at a ledger in `lo..=hi` must be the
    /// same (one pass over the states); a description of the first two states that disagree,
    /// if any do. A pick is what it names (for the message) and how to read it from a state.
    fn constant(
        &mut self,
        list: ListType,
        lo: u64,
        hi: u64,
        picks: &[Pick<'_>],
    ) -> Result<Option<String>> {
        let from = self.checkpoints.partition_point(|&c| u64::from(c) < lo);
        let to = self.checkpoints.partition_point(|&c| u64::from(c) <= hi);
        let window: Vec<u32> = self.checkpoints[from..to.max(from)].to_vec();
        let mut first: Vec<Option<(u32, [u8; 32])>> = vec![None; picks.len()];
        for c in window {
            let Some(state) = self.at(c)? else { continue };
            let levels = state.list(list);
            if levels.is_empty() {
                continue;
            }
            for ((what, pick), first) in picks.iter().zip(first.iter_mut()) {
                let named = pick(levels);
                match *first {
                    None => *first = Some((c, named)),
                    Some((c0, n0)) if n0 != named => {
                        return Ok(Some(format!(
                            "checkpoint {c0} names {} as {what} and checkpoint {c} names {}, \
                             though nothing changes it between them",
                            hex::encode(n0),
                            hex::encode(named)
                        )))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(None)
    }

    /// The first state taken at a ledger in `lo..=hi` (ledgers past `u32::MAX` have none).
    fn first_in(&mut self, lo: u64, hi: u64) -> Result<Option<Rc<HistoryArchiveState>>> {
        let i = self.checkpoints.partition_point(|&c| u64::from(c) < lo);
        match self.checkpoints.get(i) {
            Some(&c) if u64::from(c) <= hi => self.at(c),
            _ => Ok(None),
        }
    }
}

/// A bucket a state names, for [`States::constant`]: what it is (for messages), how to read it.
type Pick<'a> = (&'a str, &'a dyn Fn(&[Level]) -> [u8; 32]);

/// What the archive says about the merge into `level` of `list` that starts at `ledger`.
///
/// The merge into level `i` starting at ledger `L` (a multiple of `h = levelHalf(i-1)`) takes
/// level `i-1`'s curr at the end of `L-1` as its newer input (the snap); the level's curr after
/// the commit at `L` as its older input, or the empty bucket when
/// [`should_merge_with_empty_curr`] (or when `L = h`: no merge came before); the curr and snap
/// of levels `0..i-1` at the end of `L-1` as shadows; it is committed at `L + h`, where its
/// output becomes the level's curr. A state taken at a ledger `C` shows:
/// - `C = L-1`: the snap (level `i-1`'s curr), the shadows, and the previous merge's output
///   (the older input) if its `next` holds an output;
/// - `L <= C < L+h`: the snap (level `i-1`'s snap), the older input (level `i`'s curr), the
///   merge's inputs or output if its `next` holds them;
/// - `L+h <= C < L+2h`: the output (level `i`'s curr).
///
/// A level's curr and snap change only when the level above spills, so each of these holds for
/// every `C` in its range.
fn plan(states: &mut States<'_>, list: ListType, level: u32, ledger: u32) -> Result<PlannedMerge> {
    let (i, l) = (level as usize, ledger);
    let half = level_half(level - 1);
    // Windows are computed in u64: a merge near u32::MAX has ledgers past it, which no state
    // was taken at (saturating would fold them onto the last ledger).
    let (l64, h) = (u64::from(ledger), u64::from(half));
    // States that hold this list (a state from before protocol 23 has no hot archive).
    let with_list = |s: Rc<HistoryArchiveState>| (!s.list(list).is_empty()).then_some(s);
    let before_state = match l.checked_sub(1) {
        Some(c) => states.at(c)?.and_then(with_list),
        None => None,
    };
    let during_state = states.first_in(l64, l64 + h - 1)?.and_then(with_list);
    let after_state = states
        .first_in(l64 + h, l64 + 2 * h - 1)?
        .and_then(with_list);
    let before = before_state.as_deref().map(|s| s.list(list));
    let during = during_state.as_deref().map(|s| s.list(list));
    let after = after_state.as_deref().map(|s| s.list(list));
    let recorded = during.as_ref().map(|d| &d[i].next);
    let inputs = match recorded {
        Some(FutureBucket::Inputs {
            curr,
            snap,
            shadows,
        }) => Some((*curr, *snap, shadows.clone())),
        _ => None,
    };
    let snap = inputs
        .as_ref()
        .map(|x| x.1)
        .or_else(|| before.as_ref().map(|b| b[i - 1].curr))
        .or_else(|| during.as_ref().map(|d| d[i - 1].snap));
    let curr = if let Some(x) = &inputs {
        Some(CurrInput::Bucket(x.0))
    } else if l == half || should_merge_with_empty_curr(l, level) {
        Some(CurrInput::Bucket(EMPTY_BUCKET))
    } else if let Some(d) = &during {
        Some(CurrInput::Bucket(d[i].curr))
    } else if let Some(FutureBucket::Output(o)) = before.as_ref().map(|b| &b[i].next) {
        Some(CurrInput::Bucket(*o))
    } else {
        Some(CurrInput::PreviousMerge)
    };
    let shadows = match (&inputs, list) {
        (Some(x), _) => Some(x.2.clone()),
        (None, ListType::HotArchive) => Some(Vec::new()),
        (None, ListType::Live) => before
            .as_ref()
            .map(|b| b[..i - 1].iter().flat_map(|l| [l.curr, l.snap]).collect()),
    };
    let output = match recorded {
        Some(FutureBucket::Output(o)) => Some(*o),
        _ => after.as_ref().map(|a| a[i].curr),
    };
    // The level's curr between the commits at L+h and L+2h (the output), and the level's
    // curr and the level above's snap while the merge runs.
    let l2 = l64 + h;
    let curr_name = format!("level {level}'s curr");
    let snap_name = format!("level {}'s snap", level - 1);
    let curr_of = |ls: &[Level]| ls[i].curr;
    let snap_of = |ls: &[Level]| ls[i - 1].snap;
    let disagreement = match states.constant(list, l2, l2 + h - 1, &[(&curr_name, &curr_of)])? {
        Some(d) => Some(d),
        None => states.constant(
            list,
            l64,
            l2 - 1,
            &[(&curr_name, &curr_of), (&snap_name, &snap_of)],
        )?,
    };
    Ok(PlannedMerge {
        list,
        level,
        ledger,
        curr,
        snap,
        shadows,
        output,
        keep_tombstones: keep_tombstones(level),
        disagreement,
    })
}

/// The ledgers at which merges into a level with incoming spill period `half` start, about
/// which some checkpoint state says something: for each checkpoint `C`, the merge running at
/// `C`, the one before and the one after (ascending, without repeats).
fn candidate_ledgers(checkpoints: &[u32], half: u32) -> impl Iterator<Item = u32> + '_ {
    let mut last = 0u32;
    checkpoints.iter().flat_map(move |&c| {
        let start = round_down(c, half);
        let mut out = [None; 3];
        for (slot, l) in out.iter_mut().zip([
            start.checked_sub(half),
            Some(start),
            start.checked_add(half),
        ]) {
            if let Some(l) = l.filter(|&l| l >= half && l > last) {
                last = l;
                *slot = Some(l);
            }
        }
        out.into_iter().flatten()
    })
}

/// The outcome of one merge whose output an archive records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Re-performed; the output's SHA-256 is the archive's.
    Reproduced,
    /// Re-performed; the output differs.
    Mismatch {
        /// The SHA-256 of strata's output.
        actual: [u8; 32],
    },
    /// stellar-core's rules refuse the merge (or an input is damaged): the error.
    Failed(String),
    /// An input is not in the archive.
    NotCheckable {
        /// Which input: `snap`, `curr` or `shadows`.
        input: &'static str,
        /// Why, with the level, ledger or bucket.
        why: String,
    },
}

/// One merge whose output an archive records, and what re-performing it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCheck {
    /// The merge.
    pub merge: PlannedMerge,
    /// The output the archive records.
    pub expected: [u8; 32],
    /// What happened.
    pub outcome: Outcome,
    /// The merge's protocol version, when it was performed.
    pub protocol: Option<u32>,
    /// Entries in the output (METAENTRY included), when it was performed.
    pub records: u64,
    /// Shadows the merge took.
    pub shadows: usize,
    /// Entries the shadows dropped.
    pub shadowed: u64,
    /// Merges re-performed first to find the older input (0: the archive names it).
    pub chained: u32,
}

impl MergeCheck {
    /// Whether the output is byte-identical to the archive's.
    pub fn matched(&self) -> bool {
        self.outcome == Outcome::Reproduced
    }

    /// Whether the merge could be re-performed from the archive's contents.
    pub fn checkable(&self) -> bool {
        !matches!(self.outcome, Outcome::NotCheckable { .. })
    }
}

/// The inputs of a merge, ready to run, or why they cannot be found.
enum Ready {
    Inputs(Box<Inputs>),
    Missing(&'static str, String),
}

/// The opened inputs of a merge, and how many merges were re-performed to find them.
struct Inputs {
    curr: BucketReader,
    snap: BucketReader,
    shadows: Vec<BucketReader>,
    chained: u32,
}

/// Opens a bucket the archive names; one the archive lacks is an error (the archive is
/// incomplete), not a merge that cannot be checked.
fn open_named(archive: &Archive, hash: &[u8; 32]) -> Result<BucketReader> {
    let path = archive.bucket_path(hash);
    if *hash != EMPTY_BUCKET && !path.is_file() {
        return Err(Error::Archive {
            path,
            reason: "a bucket that a checkpoint state names is missing from the archive (or is \
                     not a regular file)"
                .into(),
        });
    }
    archive.open_bucket(hash)
}

/// Finds and opens the inputs of `planned`, re-performing up to `depth` earlier merges of the
/// level (into files under `scratch`) when the older input is the previous merge's output.
fn ready(
    archive: &Archive,
    states: &mut States<'_>,
    planned: &PlannedMerge,
    scratch: &Path,
    depth: u32,
) -> Result<Ready> {
    let (level, ledger) = (planned.level, planned.ledger);
    let Some(snap_hash) = planned.snap else {
        return Ok(Ready::Missing(
            "snap",
            format!(
                "the snap (level {}'s curr at ledger {}) is in no checkpoint state",
                level - 1,
                ledger - 1
            ),
        ));
    };
    let snap = open_named(archive, &snap_hash)?;
    let needs_shadows = planned.list == ListType::Live
        && snap.ledger_version() < FIRST_PROTOCOL_SHADOWS_REMOVED
        && level >= 2;
    let mut shadows = Vec::new();
    if needs_shadows {
        let Some(hashes) = &planned.shadows else {
            return Ok(Ready::Missing(
                "shadows",
                format!(
                "the shadows (levels 0 to {} at ledger {}) are in no checkpoint state, and this \
                 merge's snap is protocol {}, which takes shadows",
                level - 2,
                ledger - 1,
                snap.ledger_version()
            ),
            ));
        };
        for h in hashes {
            shadows.push(open_named(archive, h)?);
        }
    }
    let (curr, chained) = match &planned.curr {
        Some(CurrInput::Bucket(h)) => (open_named(archive, h)?, 0),
        Some(CurrInput::PreviousMerge) | None => {
            let previous = ledger - level_half(level - 1);
            if depth == 0 {
                return Ok(Ready::Missing(
                    "curr",
                    format!(
                    "the curr (level {level}'s curr after ledger {ledger}) is in no checkpoint \
                     state and is more than {MAX_CHAINED_MERGES} merges from one"
                ),
                ));
            }
            let earlier = plan(states, planned.list, level, previous)?;
            let (c, s, sh, chained) = match ready(archive, states, &earlier, scratch, depth - 1)? {
                Ready::Inputs(i) => (i.curr, i.snap, i.shadows, i.chained),
                Ready::Missing(_, why) => {
                    return Ok(Ready::Missing(
                        "curr",
                        format!(
                        "the curr is the output of the merge at ledger {previous}, whose inputs \
                         are not all in the archive: {why}"
                    ),
                    ))
                }
            };
            let path = scratch.join(format!(
                "chain-{}-{level}-{previous}.xdr",
                planned.list.name()
            ));
            let merged = merge(c, s, sh, &path, earlier.keep_tombstones)?;
            let reader = BucketReader::open(&path, Some(merged.summary.hash))?;
            // The reader holds the file open; the name can go now.
            std::fs::remove_file(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            (reader, chained + 1)
        }
    };
    Ok(Ready::Inputs(Box::new(Inputs {
        curr,
        snap,
        shadows,
        chained,
    })))
}

/// Re-performs every merge of levels 1 to 10 (of the live bucket list and, from protocol 23,
/// the hot archive) whose output the archive's checkpoint states record, and reports each to
/// `report`, in order of list, level and ledger. Outputs are written under `scratch` and
/// removed once hashed; inputs are checked against their names as they are read.
///
/// Level 0 merges take each ledger's fresh batch of changes, which an archive does not hold as
/// a bucket: they are never checkable and are not reported.
pub fn check_archive(
    archive: &Archive,
    scratch: &Path,
    mut report: impl FnMut(&MergeCheck),
) -> Result<()> {
    let mut states = States {
        archive,
        checkpoints: archive.checkpoints()?,
        cache: HashMap::new(),
    };
    for list in [ListType::Live, ListType::HotArchive] {
        for level in 1..NUM_LEVELS as u32 {
            let checkpoints = std::mem::take(&mut states.checkpoints);
            let ledgers: Vec<u32> =
                candidate_ledgers(&checkpoints, level_half(level - 1)).collect();
            states.checkpoints = checkpoints;
            for ledger in ledgers {
                let planned = plan(&mut states, list, level, ledger)?;
                let Some(expected) = planned.output else {
                    continue;
                };
                let check = run_check(archive, &mut states, planned, expected, scratch)?;
                report(&check);
            }
        }
    }
    Ok(())
}

/// Performs one planned merge and compares its output with `expected`.
fn run_check(
    archive: &Archive,
    states: &mut States<'_>,
    planned: PlannedMerge,
    expected: [u8; 32],
    scratch: &Path,
) -> Result<MergeCheck> {
    let mut check = MergeCheck {
        merge: planned,
        expected,
        outcome: Outcome::Reproduced,
        protocol: None,
        records: 0,
        shadows: 0,
        shadowed: 0,
        chained: 0,
    };
    if let Some(d) = &check.merge.disagreement {
        check.outcome = Outcome::Failed(format!("the archive's states disagree: {d}"));
        return Ok(check);
    }
    let ready = match ready(archive, states, &check.merge, scratch, MAX_CHAINED_MERGES) {
        Ok(r) => r,
        Err(e) => {
            check.outcome = Outcome::Failed(e.to_string());
            return Ok(check);
        }
    };
    let (curr, snap, shadows, chained) = match ready {
        Ready::Inputs(i) => (i.curr, i.snap, i.shadows, i.chained),
        Ready::Missing(input, why) => {
            check.outcome = Outcome::NotCheckable { input, why };
            return Ok(check);
        }
    };
    check.chained = chained;
    check.shadows = shadows.len();
    let m = &check.merge;
    let out = scratch.join(format!(
        "merge-{}-{}-{}.xdr",
        m.list.name(),
        m.level,
        m.ledger
    ));
    let result = merge(curr, snap, shadows, &out, m.keep_tombstones);
    let _ = std::fs::remove_file(&out);
    match result {
        Ok(merged) if merged.list != m.list && merged.summary.records > 0 => {
            check.outcome = Outcome::Failed(format!(
                "the {} list names {} buckets",
                m.list.name(),
                merged.list.name()
            ));
        }
        Ok(merged) => {
            check.protocol = Some(merged.protocol);
            check.records = merged.summary.records;
            check.shadowed = merged.shadowed;
            check.outcome = if merged.summary.hash == expected {
                Outcome::Reproduced
            } else {
                Outcome::Mismatch {
                    actual: merged.summary.hash,
                }
            };
        }
        Err(e) => check.outcome = Outcome::Failed(e.to_string()),
    }
    Ok(check)
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
        // Near u32::MAX there is no next spill: no overflow, no merge with an empty curr.
        for level in 1..NUM_LEVELS as u32 {
            assert!(!should_merge_with_empty_curr(u32::MAX, level));
        }
        assert!(keep_tombstones(9) && !keep_tombstones(10));
    }
}
