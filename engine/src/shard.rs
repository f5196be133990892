//! A shard: one WAL, its memtables (active and frozen), its runs and its manifest. Owns the
//! write path, point reads and the compaction of its own data.
//!
//! Lock order: `manifest` (held for a whole compaction), then `state`, then a memtable's map,
//! then the WAL's own locks. Writers hold `state` shared for the whole write, so rotation (which
//! takes it exclusively) never separates a WAL position from its memtable.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::event::{Event, EventSink};
use crate::fs::FileSystem;
use crate::index::IndexFactory;
use crate::layout::{
    self, index_file_name, run_file_name, shard_dir_name, tmp_name, FileKind, SHARD_MANIFEST_FILE,
};
use crate::manifest::{self, RunMeta, ShardManifest};
use crate::manifest::{ValueFile, ValueRef};
use crate::memtable::{MemEntry, Memtable};
use crate::merge::{MergeSource, Merger};
use crate::options::{Durability, IndexPolicy};
use crate::policy::{Plan, ShardShape};
use crate::run::{Run, RunStream, RunWriter, StoredValue};
use crate::stall::StallGate;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::limits::{
    COMPACTION_SEGMENT_LOAD_BYTES, COPY_CHUNK_BYTES, MEMTABLE_CHUNK_ENTRIES, RUN_READ_BUFFER_BYTES,
    RUN_WRITE_BUFFER_BYTES,
};
use crate::types::{EntryKind, OpRef, SegmentId, SeqNo, ShardId, ValuePointer};
use crate::wal::Wal;
use parking_lot::{Mutex, RwLock};

/// What readers see of a shard at one moment: memtables newest first, then runs newest first.
#[derive(Clone)]
pub(crate) struct ShardView {
    pub mems: Vec<Arc<Memtable>>,
    pub runs: Vec<Arc<Run>>,
}

struct ShardState {
    active: Arc<Memtable>,
    /// Frozen memtables, newest first, waiting for compaction.
    frozen: Vec<Arc<Memtable>>,
    /// Runs, newest first.
    runs: Vec<Arc<Run>>,
}

/// The index factories an engine knows, and its policy.
/// What opening a run needs: the index kinds, the policy for new runs, and the bounded cache
/// of descriptors runs read through.
pub(crate) struct Indexes {
    pub factories: Vec<Arc<dyn IndexFactory>>,
    pub policy: IndexPolicy,
    pub files: Arc<crate::files::FileCache>,
    pub value_log: ValueLogOptions,
}

/// Key-value separation: which values compaction leaves in their WAL segment (which becomes a
/// value file) and when a value file's garbage is collected.
#[derive(Copy, Clone, Debug)]
pub(crate) struct ValueLogOptions {
    /// Values of at least this many bytes are separated.
    pub threshold_bytes: u64,
    /// A value file whose garbage is above this share of its bytes is collected.
    pub gc_ratio: f64,
}

/// A live value file. Held by the runs (and memtables) that read from it; once no live run
/// points into it, it is given a removal that runs when the last holder lets go.
pub(crate) struct ValueFileHandle {
    remove: Mutex<Option<Box<dyn FnOnce() + Send + Sync>>>,
}

impl ValueFileHandle {
    fn new() -> Arc<ValueFileHandle> {
        Arc::new(ValueFileHandle {
            remove: Mutex::new(None),
        })
    }
}

impl Drop for ValueFileHandle {
    fn drop(&mut self) {
        if let Some(remove) = self.remove.lock().take() {
            remove();
        }
    }
}

/// Reads the value `p` points at from its value file in the shard directory `dir`, through
/// the bounded descriptor cache `files` (shared with run files), checked against the checksum
/// stored after it and the pointer's.
pub(crate) fn read_pointed(
    files: &crate::files::FileCache,
    dir: &Path,
    p: &ValuePointer,
) -> Result<Vec<u8>> {
    let path = dir.join(layout::segment_file_name(p.segment));
    let file = files.get(&path)?;
    crate::format::read_pointed_from(file.as_ref(), &path, p)
}

/// The value files of `m` with more garbage than `ratio` of their bytes: those a compaction
/// that merges every run collects.
fn over_gc_ratio(m: &ShardManifest, ratio: f64) -> std::collections::BTreeSet<u64> {
    m.value_files
        .iter()
        .filter(|v| {
            let live = m.live_value_bytes(v.segment).min(v.file_bytes);
            (v.file_bytes - live) as f64 > ratio * v.file_bytes as f64
        })
        .map(|v| v.segment)
        .collect()
}

impl Indexes {
    pub fn by_kind(&self, kind: u8) -> Option<&Arc<dyn IndexFactory>> {
        self.factories.iter().find(|f| f.kind().0 == kind)
    }
}

/// Shard figures for stats.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// The shard.
    pub id: ShardId,
    /// Keys in memtables (active and frozen).
    pub memtable_keys: u64,
    /// Estimated memtable heap bytes.
    pub memtable_bytes: u64,
    /// Frozen memtables waiting for compaction.
    pub frozen_memtables: u64,
    /// Bytes of values in frozen, uncompacted WAL segments.
    pub wal_debt_bytes: u64,
    /// Live runs, newest first.
    pub runs: Vec<RunStats>,
    /// WAL figures.
    pub wal: crate::wal::WalStats,
    /// Whether the shard refuses writes after a failure.
    pub poisoned: bool,
    /// The seal, while the shard is sealed.
    pub seal: Option<crate::manifest::ShardSeal>,
    /// Value files (WAL segments kept because runs point into them).
    pub value_files: u64,
    /// Their bytes.
    pub value_log_bytes: u64,
    /// Their bytes no live run points at.
    pub value_log_garbage_bytes: u64,
    /// A range shard known to hold a key for every prefix of its range.
    pub complete: bool,
}

/// Figures of one run.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Run id.
    pub id: u64,
    /// Records.
    pub entries: u64,
    /// File bytes.
    pub file_bytes: u64,
    /// Index kind name.
    pub index: &'static str,
    /// Index memory bytes.
    pub index_bytes: u64,
    /// Keys in the index.
    pub index_keys: u64,
    /// Bytes of records read through the run's map so far.
    pub bytes_touched: u64,
}

/// Result of one compaction.
#[derive(Clone, Debug, Default)]
pub struct CompactionReport {
    /// Input bytes.
    pub bytes_in: u64,
    /// Output bytes.
    pub bytes_out: u64,
    /// Output records.
    pub entries_out: u64,
    /// Bytes of buffers the compaction held for values and pages (read buffers, copy chunk,
    /// write buffer, frozen segments mapped whole: at most [`COMPACTION_SEGMENT_LOAD_BYTES`]).
    pub buffer_bytes: u64,
    /// Wall time.
    pub duration: std::time::Duration,
}

pub(crate) struct Shard<W: Wal> {
    pub id: ShardId,
    pub dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    pub wal: Arc<W>,
    state: RwLock<ShardState>,
    /// The durable manifest; held for a whole compaction, so one runs per shard at a time.
    manifest: Mutex<ShardManifest>,
    poisoned: Mutex<Option<String>>,
    events: Arc<dyn EventSink>,
    name_of_kind: Mutex<BTreeMap<u64, &'static str>>,
    pub compaction_buffer_peak: AtomicU64,
    /// Writes have moved past this (range) shard: the policy merges it whole.
    complete: AtomicBool,
    /// Sealed, or being sealed: writes are refused. Set and cleared under the state's write
    /// lock, checked under its read lock, so no write lands after a seal begins.
    sealed: AtomicBool,
    /// The live value files by segment id (changed under the manifest lock).
    value_files: Mutex<BTreeMap<u64, Arc<ValueFileHandle>>>,
    /// A value file is over the garbage ratio: the policy merges every run.
    gc_wanted: AtomicBool,
    value_log: ValueLogOptions,
    /// The bounded cache of descriptors that run files and value files are read through.
    files: Arc<crate::files::FileCache>,
    /// Range shards that complete when full: the number of key prefixes (the shard's width)
    /// that makes the shard complete.
    full_width: Option<u64>,
    /// The shard may be full: the next compaction merges it whole and counts.
    full_pending: AtomicBool,
    /// Writes the shard must take after a count that found it short before it is counted
    /// again: doubled by each such count (overwrites inflate the bound), so a shard one key
    /// short is merged whole a logarithmic number of times in its writes, not on every write.
    full_backoff: AtomicU64,
    /// Writes since the last count.
    writes_since_count: AtomicU64,
}

/// A shard loaded read-only: manifest and runs. Phase one of opening, which changes nothing on
/// disk, so that an open that fails on a bad file leaves the directory as it was.
pub(crate) struct LoadedShard {
    id: ShardId,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    manifest: ShardManifest,
    runs: Vec<Arc<Run>>,
    kinds: BTreeMap<u64, &'static str>,
}

pub(crate) fn load_shard(
    dir: &Path,
    id: ShardId,
    indexes: &Indexes,
    events: &dyn EventSink,
) -> Result<LoadedShard> {
    let fs = indexes.files.fs();
    let path = dir.join(SHARD_MANIFEST_FILE);
    let manifest = manifest::read_shard(fs.as_ref(), &path)?;
    if manifest.shard != id.0 {
        return Err(Error::corrupt(
            &path,
            0,
            "shard manifest",
            format!(
                "belongs to shard {}, found in the directory of shard {id}",
                manifest.shard
            ),
        ));
    }
    check_manifest_fields(&manifest, &path)?;
    let mut runs = Vec::with_capacity(manifest.runs.len());
    let mut kinds = BTreeMap::new();
    for meta in &manifest.runs {
        let factory = indexes.by_kind(meta.index_kind).ok_or_else(|| {
            Error::corrupt(
                &path,
                0,
                "shard manifest",
                format!(
                    "run {} uses index kind {}, which this build does not have",
                    meta.id, meta.index_kind
                ),
            )
        })?;
        let (_, _, identity) =
            crate::run::read_run_frame(fs.as_ref(), &dir.join(run_file_name(meta.id)), meta.id)?;
        let index_path = dir.join(index_file_name(meta.id));
        let index = match factory.load(fs.as_ref(), &index_path, &identity) {
            Ok(index) => index,
            // An index is derived data: a missing, damaged, foreign or outdated one is rebuilt
            // from its run instead of failing the open.
            Err(e) => {
                let index = crate::run::rebuild_index(fs.as_ref(), dir, meta.id, factory.as_ref())?;
                events.event(&Event::IndexRebuilt {
                    file: index_path,
                    reason: e.to_string(),
                });
                index
            }
        };
        runs.push(Arc::new(Run::open(dir, meta.id, index, &indexes.files)?));
        kinds.insert(meta.id, factory.name());
    }
    Ok(LoadedShard {
        id,
        dir: dir.to_path_buf(),
        fs: fs.clone(),
        manifest,
        runs,
        kinds,
    })
}

/// Creates the directory and empty manifest of a new shard, atomically: both are made under
/// the directory's temporary name (`shard-<id>.tmp`), synced, then renamed into place and the
/// parent synced. A crash or an error leaves at most the temporary directory, which open
/// removes.
pub(crate) fn create_shard_dir(fs: &dyn FileSystem, dir: &Path, id: ShardId) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(tmp_name(&shard_dir_name(id)));
    let made = make_shard_dir(fs, &tmp, dir, parent, id);
    if made.is_err() {
        let _ = fs.remove_dir_all(&tmp);
    }
    made
}

fn make_shard_dir(
    fs: &dyn FileSystem,
    tmp: &Path,
    dir: &Path,
    parent: &Path,
    id: ShardId,
) -> Result<()> {
    if fs.exists(tmp) {
        fs.remove_dir_all(tmp)
            .map_err(|e| Error::io("removing", tmp, e))?;
    }
    fs.create_dir(tmp)
        .map_err(|e| Error::io("creating", tmp, e))?;
    let m = ShardManifest {
        shard: id.0,
        next_run_id: 1,
        wal_floor: 0,
        last_seq: 0,
        runs: Vec::new(),
        seal: None,
        value_files: Vec::new(),
        value_refs: Vec::new(),
    };
    // Writes MANIFEST.tmp, syncs it, renames it and syncs `tmp`.
    manifest::write_shard(fs, &tmp.join(SHARD_MANIFEST_FILE), &m)?;
    fs.rename(tmp, dir)
        .map_err(|e| Error::io("renaming", tmp, e))?;
    manifest::sync_dir(fs, parent)
}

/// What open does with a directory entry of the database that is not a whole shard.
pub(crate) enum Leftover {
    /// Not strata's: left alone.
    Foreign,
    /// Half made by a crash or an error (a temporary shard directory, or a shard directory
    /// with no manifest and no data): removed at open, with an event.
    HalfMade,
}

/// Classifies `path`, a directory entry of the database that is not a shard with a manifest.
/// A shard directory without a manifest that holds runs or WAL segments is an error: strata
/// never makes one, and removing it could lose data.
pub(crate) fn leftover(
    fs: &dyn FileSystem,
    path: &Path,
    is_dir: bool,
    kind: Option<FileKind>,
) -> Result<Leftover> {
    match kind {
        Some(FileKind::Temporary) if is_dir => Ok(Leftover::HalfMade),
        Some(FileKind::ShardDir(_)) => {
            let entries = fs.list(path).map_err(|e| Error::io("listing", path, e))?;
            for entry in entries {
                let name = entry.name;
                let kind = name.to_str().and_then(layout::parse);
                if kind != Some(FileKind::Temporary) {
                    return Err(Error::corrupt(
                        path,
                        0,
                        "shard directory",
                        format!(
                            "has no {SHARD_MANIFEST_FILE} but holds {}; strata never leaves \
                             data without a manifest, so it will not guess",
                            name.to_string_lossy()
                        ),
                    ));
                }
            }
            Ok(Leftover::HalfMade)
        }
        _ => Ok(Leftover::Foreign),
    }
}

impl<W: Wal> Shard<W> {
    /// Phase two of opening: removes stray files and recovers the WAL into memtables.
    pub fn open(
        loaded: LoadedShard,
        events: Arc<dyn EventSink>,
        value_log: ValueLogOptions,
        full_width: Option<u64>,
        files: Arc<crate::files::FileCache>,
    ) -> Result<Shard<W>> {
        let LoadedShard {
            id,
            dir,
            fs,
            manifest,
            runs,
            kinds,
        } = loaded;
        remove_strays(fs.as_ref(), &dir, &manifest, events.as_ref())?;
        // What an earlier process created here (a WAL segment whose directory sync failed)
        // must be durable before anything written into it is reported durable.
        manifest::sync_dir(fs.as_ref(), &dir)?;
        let sealed = manifest.seal.is_some();
        let mut mems: BTreeMap<SegmentId, Memtable> = BTreeMap::new();
        let values: Vec<SegmentId> = manifest
            .value_files
            .iter()
            .map(|v| SegmentId(v.segment))
            .collect();
        let wal = W::open(
            fs.clone(),
            &dir,
            SegmentId(manifest.wal_floor),
            &values,
            SeqNo(manifest.last_seq),
            events.clone(),
            &mut |rec| {
                let mem = mems
                    .entry(rec.pos.segment)
                    .or_insert_with(|| Memtable::counting(rec.pos.segment, full_width.is_some()));
                mem.insert(
                    rec.key,
                    MemEntry {
                        seq: rec.seq,
                        kind: rec.kind,
                        tag: rec.tag,
                        pos: rec.pos,
                    },
                );
                Ok(())
            },
        )?;
        let active_seg = wal.active_segment();
        let active = Arc::new(
            mems.remove(&active_seg)
                .unwrap_or_else(|| Memtable::counting(active_seg, full_width.is_some())),
        );
        let frozen: Vec<Arc<Memtable>> = mems.into_values().rev().map(Arc::new).collect();
        debug_assert!(frozen.iter().all(|m| m.segment() < active_seg));
        // Every recovered byte is synced by now: no shard holds a descriptor until it is
        // written or read, however many shards hold WAL data.
        wal.release_files();
        let handles: BTreeMap<u64, Arc<ValueFileHandle>> = manifest
            .value_files
            .iter()
            .map(|v| (v.segment, ValueFileHandle::new()))
            .collect();
        for r in &manifest.value_refs {
            if let (Some(run), Some(h)) = (
                runs.iter().find(|x| x.id() == r.run),
                handles.get(&r.segment),
            ) {
                run.hold(h.clone());
            }
        }
        let gc_wanted = !over_gc_ratio(&manifest, value_log.gc_ratio).is_empty();
        Ok(Shard {
            id,
            dir,
            fs,
            wal: Arc::new(wal),
            state: RwLock::new(ShardState {
                active,
                frozen,
                runs,
            }),
            manifest: Mutex::new(manifest),
            poisoned: Mutex::new(None),
            events,
            name_of_kind: Mutex::new(kinds),
            compaction_buffer_peak: AtomicU64::new(0),
            complete: AtomicBool::new(false),
            sealed: AtomicBool::new(sealed),
            value_files: Mutex::new(handles),
            gc_wanted: AtomicBool::new(gc_wanted),
            value_log,
            files,
            full_width,
            full_pending: AtomicBool::new(false),
            full_backoff: AtomicU64::new(0),
            writes_since_count: AtomicU64::new(0),
        })
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(cause) => Err(Error::Poisoned {
                shard: self.id.0,
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the first failure; later writes get [`Error::Poisoned`].
    pub fn poison(&self, e: Error) -> Error {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            *p = Some(e.to_string());
        }
        e
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.lock().is_some()
    }

    /// Appends `ops` to the WAL and records them in the active memtable.
    pub fn write(&self, ops: &[OpRef<'_>], durability: Durability) -> Result<()> {
        self.check_poisoned()?;
        // Holding the read side keeps rotation out until the memtable insert is done, so every
        // position lands in the memtable of its own segment.
        let state = self.state.read();
        if self.is_sealed() {
            return Err(Error::Sealed { shard: self.id.0 });
        }
        let appended = self.wal.append(ops).map_err(|e| self.poison(e))?;
        if durability == Durability::SyncPerBatch {
            self.wal.sync().map_err(|e| self.poison(e))?;
        }
        let mut seq = appended.first_seq;
        for (op, pos) in ops.iter().zip(&appended.positions) {
            state.active.insert(
                op.key,
                MemEntry {
                    seq,
                    kind: op.kind,
                    tag: op.tag,
                    pos: *pos,
                },
            );
            seq = seq.next();
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.wal.sync().map_err(|e| self.poison(e))
    }

    pub fn view(&self) -> ShardView {
        let st = self.state.read();
        let mut mems = Vec::with_capacity(1 + st.frozen.len());
        mems.push(st.active.clone());
        mems.extend(st.frozen.iter().cloned());
        ShardView {
            mems,
            runs: st.runs.clone(),
        }
    }

    /// The newest version of `key`: `Some(None)` for a tombstone, `None` when never written.
    pub fn get(&self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>> {
        // Memtables are searched under the lock (no I/O); the one that has the key is held
        // while its value is read, so that its segment stays.
        let (hit, runs) = {
            let st = self.state.read();
            let hit = std::iter::once(&st.active)
                .chain(st.frozen.iter())
                .find_map(|mem| mem.get(key).map(|e| (mem.clone(), e)));
            let runs = if hit.is_none() {
                st.runs.clone()
            } else {
                Vec::new()
            };
            (hit, runs)
        };
        if let Some((_held, e)) = hit {
            return match e.kind {
                EntryKind::Delete => Ok(Some(None)),
                EntryKind::Put => Ok(Some(Some(self.wal.read_value(e.pos)?))),
            };
        }
        for run in &runs {
            if let Some((kind, stored)) = run.get_owned(key)? {
                return match (kind, stored) {
                    (EntryKind::Delete, _) => Ok(Some(None)),
                    (EntryKind::Put, StoredValue::Inline(value)) => Ok(Some(Some(value))),
                    (EntryKind::Put, StoredValue::Pointer(p)) => {
                        Ok(Some(Some(read_pointed(run.files(), &self.dir, &p)?)))
                    }
                };
            }
        }
        Ok(None)
    }

    /// Freezes the active memtable if it holds anything: rotates the WAL. Returns the WAL bytes
    /// and memtable bytes frozen (what the caller adds to the stall gate), zeros when the
    /// memtable was empty.
    pub fn freeze(&self) -> Result<(u64, u64)> {
        let mut st = self.state.write();
        if st.active.is_empty() {
            return Ok((0, 0));
        }
        let seg = self.wal.rotate().map_err(|e| self.poison(e))?;
        let counting = self.full_width.is_some();
        let old = std::mem::replace(&mut st.active, Arc::new(Memtable::counting(seg, counting)));
        let bytes = (old.wal_bytes(), old.memory_bytes());
        st.frozen.insert(0, old);
        drop(st);
        self.events.event(&Event::WalRotated {
            shard: self.id,
            new_segment: seg,
        });
        Ok(bytes)
    }

    /// What the policy sees of this shard.
    pub fn shape(&self) -> ShardShape {
        let st = self.state.read();
        ShardShape {
            active_bytes: st.active.wal_bytes(),
            active_entries: st.active.len() as u64,
            frozen_bytes: st.frozen.iter().map(|m| m.wal_bytes()).collect(),
            run_bytes: st.runs.iter().map(|r| r.file_len()).collect(),
            complete: self.complete.load(Ordering::Relaxed)
                || self.full_pending.load(Ordering::Relaxed),
            value_garbage: self.gc_wanted.load(Ordering::Relaxed),
        }
    }

    /// Whether the active WAL has passed a rotation threshold (the write path's check: no
    /// allocation, unlike [`Shard::shape`]).
    pub fn active_should_rotate(&self, o: &crate::policy::PolicyOptions) -> bool {
        let st = self.state.read();
        let shape = ShardShape {
            active_bytes: st.active.wal_bytes(),
            active_entries: st.active.len() as u64,
            ..ShardShape::default()
        };
        crate::policy::should_rotate(&shape, o)
    }

    /// Memory of the frozen memtables.
    pub fn frozen_memory_bytes(&self) -> u64 {
        self.state
            .read()
            .frozen
            .iter()
            .map(|m| m.memory_bytes())
            .sum()
    }

    /// WAL bytes of the frozen memtables (this shard's share of the WAL debt).
    pub fn frozen_wal_bytes(&self) -> u64 {
        self.state.read().frozen.iter().map(|m| m.wal_bytes()).sum()
    }

    /// Whether writes are refused because the shard is sealed or being sealed.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// The durable seal, if the shard is sealed.
    pub fn seal(&self) -> Option<crate::manifest::ShardSeal> {
        self.manifest.lock().seal.clone()
    }

    /// Starts refusing writes; every write that got in before is in the memtables. Returns
    /// whether writes were refused already.
    pub fn refuse_writes(&self) -> bool {
        let _st = self.state.write();
        self.sealed.swap(true, Ordering::AcqRel)
    }

    /// Records `seal` durably in the manifest. The shard must hold at most one run and no
    /// memtable data (a whole compaction just ran with writes refused).
    pub fn record_seal(&self, seal: crate::manifest::ShardSeal) -> Result<()> {
        let mut manifest = self.manifest.lock();
        {
            let st = self.state.read();
            if !self.is_sealed() || !st.active.is_empty() || !st.frozen.is_empty() {
                return Err(Error::InvalidOptions(format!(
                    "shard {} changed while it was being sealed",
                    self.id
                )));
            }
        }
        let next = ShardManifest {
            seal: Some(seal),
            ..manifest.clone()
        };
        manifest::write_shard(self.fs.as_ref(), &self.dir.join(SHARD_MANIFEST_FILE), &next)?;
        *manifest = next;
        Ok(())
    }

    /// Accepts writes again after a seal that failed before it was recorded.
    pub fn accept_writes_unsealed(&self) {
        if self.manifest.lock().seal.is_none() {
            let _st = self.state.write();
            self.sealed.store(false, Ordering::Release);
        }
    }

    /// Removes the seal durably (if any) and accepts writes again.
    pub fn unseal(&self) -> Result<()> {
        let mut manifest = self.manifest.lock();
        if manifest.seal.is_some() {
            let next = ShardManifest {
                seal: None,
                ..manifest.clone()
            };
            manifest::write_shard(self.fs.as_ref(), &self.dir.join(SHARD_MANIFEST_FILE), &next)?;
            *manifest = next;
        }
        let _st = self.state.write();
        self.sealed.store(false, Ordering::Release);
        Ok(())
    }

    /// For a range shard that completes when full: whether it may hold a key for every
    /// prefix of its range now (the distinct prefixes of its memtables and runs, an upper
    /// bound, reach its width) and was not known to before. The caller queues a compaction,
    /// which merges the shard whole and counts exactly.
    pub fn check_full(&self) -> bool {
        let Some(width) = self.full_width else {
            return false;
        };
        if self.complete.load(Ordering::Relaxed) || self.full_pending.load(Ordering::Relaxed) {
            return false;
        }
        let upper: u64 = {
            let st = self.state.read();
            std::iter::once(&st.active)
                .chain(st.frozen.iter())
                .map(|m| m.prefixes())
                .chain(st.runs.iter().map(|r| r.prefixes()))
                .sum()
        };
        let writes = self.writes_since_count.fetch_add(1, Ordering::Relaxed) + 1;
        if writes < self.full_backoff.load(Ordering::Relaxed) {
            return false;
        }
        upper >= width && !self.full_pending.swap(true, Ordering::Relaxed)
    }

    /// After a compaction planned while the shard may be full (so it merged it whole): one run
    /// holding every prefix of its range makes it complete; otherwise it waits for more
    /// writes.
    fn settle_full(&self) {
        let Some(width) = self.full_width else {
            return;
        };
        if !self.full_pending.swap(false, Ordering::Relaxed) {
            return;
        }
        let st = self.state.read();
        if st.active.is_empty()
            && st.frozen.is_empty()
            && st.runs.len() == 1
            && st.runs[0].prefixes() >= width
        {
            self.complete.store(true, Ordering::Relaxed);
        } else {
            let backoff = self.full_backoff.load(Ordering::Relaxed);
            self.full_backoff
                .store((backoff * 2).max(1), Ordering::Relaxed);
            self.writes_since_count.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the shard is complete (holds a key for every prefix of its range).
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Relaxed)
    }

    /// Runs one compaction chosen by `choose` from the shard's shape: optionally freezes the
    /// active memtable, then merges every frozen memtable and the newest runs into one run,
    /// streaming. Writers keep writing to the active memtable meanwhile. WAL debt goes through
    /// `gate`: frozen bytes are added, compacted ones removed; on failure the shard is poisoned
    /// and its whole debt removed (nobody will compact it before a reopen).
    pub fn compact(
        &self,
        indexes: &Indexes,
        gate: &StallGate,
        choose: &dyn Fn(&ShardShape) -> Option<Plan>,
    ) -> Result<CompactionReport> {
        let mut manifest = self.manifest.lock();
        self.check_poisoned()?;
        let result = self.compact_locked(&mut manifest, indexes, gate, choose);
        if let Err(e) = result {
            self.events.event(&Event::CompactionFailed {
                shard: self.id,
                error: e.to_string(),
            });
            gate.remove(self.frozen_wal_bytes(), self.frozen_memory_bytes());
            return Err(self.poison(e));
        }
        self.release_files_if_idle();
        result
    }

    /// Lets the WAL close its synced descriptors after a compaction (value files a
    /// collection read included; the active segment only when the shard holds no unflushed
    /// data, a complete range shard after its last compaction): idle shards hold none.
    fn release_files_if_idle(&self) {
        // Closes every synced descriptor: frozen segments and value files always, the active
        // segment when synced (the next append reopens it).
        self.wal.release_files();
    }

    fn compact_locked(
        &self,
        manifest: &mut ShardManifest,
        indexes: &Indexes,
        gate: &StallGate,
        choose: &dyn Fn(&ShardShape) -> Option<Plan>,
    ) -> Result<CompactionReport> {
        // Set before this plan is made: the plan merges the shard whole, and counts it.
        let counts_full = self.full_pending.load(Ordering::Relaxed);
        let Some((frozen, runs, merged_runs)) = self.plan_inputs(gate, choose)? else {
            // Nothing to merge: a shard that may be full is already one run (after a reopen).
            if counts_full {
                self.settle_full();
            }
            return Ok(CompactionReport::default());
        };
        let (inputs, older) = runs.split_at(merged_runs);
        let drop_tombstones = older.is_empty();
        let started = Instant::now();
        let wal_bytes: u64 = frozen.iter().map(|m| m.wal_bytes()).sum();
        let memtable_bytes: u64 = frozen.iter().map(|m| m.memory_bytes()).sum();
        let bytes_in = wal_bytes + inputs.iter().map(|r| r.file_len()).sum::<u64>();
        self.events.event(&Event::CompactionStart {
            shard: self.id,
            wal_segments: frozen.len(),
            runs: inputs.len(),
            bytes_in,
        });
        let run_id = manifest.next_run_id;
        // Value files over the garbage ratio are collected by a compaction that merges every
        // run (no run left behind can point into them afterwards).
        let mut values = ValueCopy {
            threshold_bytes: self.value_log.threshold_bytes,
            collected: if older.is_empty() {
                over_gc_ratio(manifest, self.value_log.gc_ratio)
            } else {
                Default::default()
            },
            ..Default::default()
        };
        self.size_segments(&frozen, &mut values)?;
        let merged = self.merge_into_run(
            run_id,
            &frozen,
            inputs,
            older,
            drop_tombstones,
            bytes_in,
            indexes,
            &mut values,
        );
        let (new_run, mut report, kind_name) = merged.inspect_err(|_| {
            let _ = self
                .fs
                .remove_file(&self.dir.join(tmp_name(&run_file_name(run_id))));
            let _ = self
                .fs
                .remove_file(&self.dir.join(tmp_name(&index_file_name(run_id))));
        })?;
        // Every frozen segment up to the newest one merged is now in the run.
        let wal_floor = frozen
            .first()
            .map_or(manifest.wal_floor, |m| m.segment().0 + 1);
        let mut next = next_manifest(manifest, run_id, merged_runs, wal_floor, new_run.as_ref());
        self.next_value_files(&mut next, inputs, new_run.as_ref(), &values);
        manifest::write_shard(self.fs.as_ref(), &self.dir.join(SHARD_MANIFEST_FILE), &next)?;
        *manifest = next;
        self.install(wal_floor, new_run.as_ref().map(|(r, _)| r), older);
        self.update_value_files(manifest, new_run.as_ref().map(|(r, _)| r));
        if counts_full {
            self.settle_full();
        }
        if new_run.is_some() {
            self.name_of_kind.lock().insert(run_id, kind_name);
        }
        self.retire(frozen, inputs);
        gate.remove(wal_bytes, memtable_bytes);
        self.compaction_buffer_peak
            .fetch_max(report.buffer_bytes, Ordering::Relaxed);
        report.duration = started.elapsed();
        self.events.event(&Event::CompactionEnd {
            shard: self.id,
            bytes_in,
            bytes_out: report.bytes_out,
            entries_out: report.entries_out,
            duration: report.duration,
        });
        Ok(report)
    }

    /// What a compaction chosen by `choose` merges: the frozen memtables (after freezing the
    /// active one if the plan says so) and the runs, of which the newest `merged_runs`; `None`
    /// when there is nothing to do.
    #[allow(clippy::type_complexity)]
    fn plan_inputs(
        &self,
        gate: &StallGate,
        choose: &dyn Fn(&ShardShape) -> Option<Plan>,
    ) -> Result<Option<(Vec<Arc<Memtable>>, Vec<Arc<Run>>, usize)>> {
        // Only this thread removes frozen memtables; writers add newer ones at the front. So
        // the oldest `taken` read here are still the oldest below.
        let taken = self.frozen_taken();
        let mut shape = self.shape();
        let newer = shape.frozen_bytes.len() - taken.min(shape.frozen_bytes.len());
        shape.frozen_bytes.drain(..newer);
        let Some(plan) = choose(&shape) else {
            return Ok(None);
        };
        if plan.freeze_active {
            let (wal, memory) = self.freeze()?;
            gate.add(wal, memory);
        }
        let (frozen, runs) = {
            let st = self.state.read();
            let mut frozen = st.frozen.clone();
            if !plan.freeze_active {
                frozen.drain(..frozen.len() - taken.min(frozen.len()));
            }
            (frozen, st.runs.clone())
        };
        let merged_runs = plan.runs.min(runs.len());
        let collects = merged_runs == runs.len() && self.gc_wanted.load(Ordering::Relaxed);
        if frozen.is_empty() && merged_runs <= 1 && !(collects && merged_runs == 1) {
            return Ok(None);
        }
        Ok(Some((frozen, runs, merged_runs)))
    }

    /// How many of the oldest frozen memtables a compaction takes (unless it merges the shard
    /// whole): all of them, but where that would read more than
    /// [`COMPACTION_SEGMENT_LOAD_BYTES`] of segments of small values whole, only as many as
    /// fit (at least one). The others wait for the next compaction.
    fn frozen_taken(&self) -> usize {
        let frozen = self.state.read().frozen.clone();
        let threshold = self.value_log.threshold_bytes;
        let mut loaded = 0u64;
        let mut taken = 0;
        for mem in frozen.iter().rev() {
            if mem.value_bytes_at_least(threshold) == 0 {
                loaded += mem.wal_bytes();
                if loaded > COMPACTION_SEGMENT_LOAD_BYTES && taken > 0 {
                    break;
                }
            }
            taken += 1;
        }
        taken
    }

    /// Frozen memtables waiting for compaction.
    pub fn frozen_len(&self) -> usize {
        self.state.read().frozen.len()
    }

    /// Makes a compaction's output visible to readers: the frozen memtables it merged leave,
    /// its run replaces the runs it merged.
    fn install(&self, wal_floor: u64, new_run: Option<&Arc<Run>>, older: &[Arc<Run>]) {
        let mut st = self.state.write();
        st.frozen.retain(|m| m.segment().0 >= wal_floor);
        let mut runs: Vec<Arc<Run>> = new_run.into_iter().cloned().collect();
        runs.extend(older.iter().cloned());
        st.runs = runs;
    }

    /// Lets go of a compaction's inputs: each merged WAL segment is removed once the last
    /// reader of its memtable is gone, each merged run once its last reader is.
    /// A merged segment that became a value file stays; the memtable holds its handle, so
    /// that its readers can still read it after a later collection.
    fn retire(&self, frozen: Vec<Arc<Memtable>>, inputs: &[Arc<Run>]) {
        let files = self.value_files.lock();
        for mem in frozen {
            let seg = mem.segment();
            if let Some(handle) = files.get(&seg.0) {
                let handle = handle.clone();
                mem.on_release(Box::new(move || drop(handle)));
                continue;
            }
            mem.on_release(self.segment_removal(seg));
        }
        for run in inputs {
            run.mark_obsolete();
            self.name_of_kind.lock().remove(&run.id());
        }
    }

    /// Records in `values` the length of each frozen segment with values of at least the
    /// threshold (one metadata read each), and which of them keep those values inline: those
    /// where they would be less than `1 - value_log_gc_ratio` of the file (mostly small values,
    /// already copied), which as a value file would start over the garbage ratio.
    fn size_segments(&self, frozen: &[Arc<Memtable>], values: &mut ValueCopy) -> Result<()> {
        let threshold = self.value_log.threshold_bytes;
        for mem in frozen {
            let large = mem.value_bytes_at_least(threshold);
            if large > 0 {
                let path = self.dir.join(layout::segment_file_name(mem.segment()));
                let file_bytes = self
                    .fs
                    .metadata(&path)
                    .map_err(|e| Error::io("reading metadata of", &path, e))?
                    .len;
                values.segment_bytes.insert(mem.segment().0, file_bytes);
                if (large as f64) < (1.0 - self.value_log.gc_ratio) * file_bytes as f64 {
                    values.inline_segments.insert(mem.segment().0);
                }
            }
            // Every value of this segment is copied: map it whole while that fits.
            if large == 0 || values.inline_segments.contains(&mem.segment().0) {
                let room = COMPACTION_SEGMENT_LOAD_BYTES.saturating_sub(values.loaded_bytes());
                if let Some(loaded) = self.wal.load_segment(mem.segment(), room)? {
                    values.loaded.insert(mem.segment().0, loaded);
                }
            }
        }
        Ok(())
    }

    /// Removes WAL segment (or value file) `seg`, reporting a failure as an event.
    fn segment_removal(&self, seg: SegmentId) -> Box<dyn FnOnce() + Send + Sync> {
        let wal = self.wal.clone();
        let events = self.events.clone();
        let files = self.files.clone();
        let path = self.dir.join(layout::segment_file_name(seg));
        Box::new(move || {
            // A value file read through the descriptor cache: close it there first.
            files.forget(&path);
            if let Err(e) = wal.remove_segment(seg) {
                events.event(&Event::BackgroundError {
                    error: e.to_string(),
                });
            }
        })
    }

    /// After a compaction's manifest is durable: new value files get handles, the new run
    /// holds the files it points into, and the files no live run points into any more are
    /// removed once their last reader lets go. Then decides whether a collection is due.
    fn update_value_files(&self, manifest: &ShardManifest, new_run: Option<&Arc<Run>>) {
        let mut files = self.value_files.lock();
        for v in &manifest.value_files {
            files.entry(v.segment).or_insert_with(ValueFileHandle::new);
        }
        let live: std::collections::BTreeSet<u64> =
            manifest.value_files.iter().map(|v| v.segment).collect();
        let dead: Vec<u64> = files
            .keys()
            .filter(|s| !live.contains(s))
            .copied()
            .collect();
        for seg in dead {
            if let Some(handle) = files.remove(&seg) {
                *handle.remove.lock() = Some(self.segment_removal(SegmentId(seg)));
            }
        }
        if let Some(run) = new_run {
            for r in manifest.value_refs.iter().filter(|r| r.run == run.id()) {
                if let Some(h) = files.get(&r.segment) {
                    run.hold(h.clone());
                }
            }
        }
        let wanted = !over_gc_ratio(manifest, self.value_log.gc_ratio).is_empty();
        self.gc_wanted.store(wanted, Ordering::Relaxed);
    }

    /// The value files and references of `next`, the manifest after a compaction that merged
    /// `inputs` (and the frozen segments `values` sized) into `new_run`: the inputs'
    /// references leave, the new run's come, merged segments it points into become value
    /// files, and files no run points into any more leave the list.
    fn next_value_files(
        &self,
        next: &mut ShardManifest,
        inputs: &[Arc<Run>],
        new_run: Option<&(Arc<Run>, u8)>,
        values: &ValueCopy,
    ) {
        let merged: Vec<u64> = inputs.iter().map(|r| r.id()).collect();
        next.value_refs.retain(|r| !merged.contains(&r.run));
        if let Some((run, _)) = new_run {
            for (&segment, &bytes) in &values.refs {
                next.value_refs.push(ValueRef {
                    run: run.id(),
                    segment,
                    bytes,
                });
                // A merged segment the run points into (it was sized: it holds large values).
                if let Some(&file_bytes) = values.segment_bytes.get(&segment) {
                    next.value_files.push(ValueFile {
                        segment,
                        file_bytes,
                    });
                }
            }
        }
        next.value_files.sort_by_key(|v| v.segment);
        let live: std::collections::BTreeSet<u64> =
            next.value_refs.iter().map(|r| r.segment).collect();
        next.value_files.retain(|v| live.contains(&v.segment));
    }

    /// Whether a value file is over the garbage ratio (a collection is due).
    pub fn wants_collection(&self) -> bool {
        self.gc_wanted.load(Ordering::Relaxed)
    }

    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn merge_into_run(
        &self,
        run_id: u64,
        frozen: &[Arc<Memtable>],
        runs: &[Arc<Run>],
        older: &[Arc<Run>],
        drop_tombstones: bool,
        bytes_in: u64,
        indexes: &Indexes,
        values: &mut ValueCopy,
    ) -> Result<(Option<(Arc<Run>, u8)>, CompactionReport, &'static str)> {
        let kind = indexes.policy.choose(bytes_in);
        let factory = indexes.by_kind(kind.0).ok_or_else(|| {
            Error::InvalidOptions(format!(
                "index policy names kind {}, which this engine does not have",
                kind.0
            ))
        })?;
        let inputs = self.open_inputs(frozen, runs)?;
        // The value and page buffers this compaction holds, whatever the data size.
        let buffer_bytes =
            (COPY_CHUNK_BYTES + RUN_WRITE_BUFFER_BYTES + runs.len() * RUN_READ_BUFFER_BYTES) as u64
                + values.loaded_bytes();
        let expected_keys = frozen.iter().map(|m| m.len() as u64).sum::<u64>()
            + runs.iter().map(|r| r.footer().entries).sum::<u64>();
        let mut writer =
            RunWriter::create(&self.fs, &self.dir, run_id, factory.builder(expected_keys))?;
        // A tombstone is kept while a run older than this compaction may hold the key.
        let keep_tombstone =
            |key: &[u8]| !drop_tombstones && older.iter().any(|r| r.index().may_contain(key));
        self.copy_merged(Merger::new(inputs), &mut writer, &keep_tombstone, values)?;
        let entries_out = writer.entries();
        let prefixes = writer.prefixes();
        if entries_out == 0 {
            drop(writer);
            let _ = self
                .fs
                .remove_file(&self.dir.join(tmp_name(&run_file_name(run_id))));
            return Ok((
                None,
                CompactionReport {
                    bytes_in,
                    bytes_out: 0,
                    entries_out: 0,
                    buffer_bytes,
                    ..Default::default()
                },
                factory.name(),
            ));
        }
        let finished = writer.finish()?;
        manifest::sync_dir(self.fs.as_ref(), &self.dir)?;
        let index = factory.load(
            self.fs.as_ref(),
            &self.dir.join(index_file_name(run_id)),
            &finished.identity,
        )?;
        let run = Arc::new(Run::open(&self.dir, run_id, index, &indexes.files)?);
        run.set_prefixes(prefixes);
        let report = CompactionReport {
            bytes_in,
            bytes_out: run.file_len(),
            entries_out,
            buffer_bytes,
            ..Default::default()
        };
        Ok((Some((run, kind.0)), report, factory.name()))
    }

    /// Merge inputs, newest first: the frozen memtables, then the runs.
    fn open_inputs(&self, frozen: &[Arc<Memtable>], runs: &[Arc<Run>]) -> Result<Vec<Input>> {
        let mut inputs: Vec<Input> = Vec::with_capacity(frozen.len() + runs.len());
        for mem in frozen {
            let all = MemCursor::new(mem.clone(), Bound::Unbounded, Bound::Unbounded);
            inputs.push(Input::Mem(all));
        }
        for run in runs {
            inputs.push(Input::Run(Box::new(RunStream::open(
                self.fs.as_ref(),
                &self.dir,
                run.id(),
            )?)));
        }
        Ok(inputs)
    }

    /// Streams the newest version of every key into `writer`, one value chunk at a time;
    /// tombstones only where `keep_tombstone` says an older run may still hold the key.
    ///
    /// Values go by `values`: a memtable value of at least the threshold becomes a pointer
    /// into its WAL segment (not read, not copied); a run's pointer is copied as it is, unless
    /// it points into a file being collected, whose value is then copied into the run.
    fn copy_merged(
        &self,
        mut merge: Merger<Input>,
        writer: &mut RunWriter,
        keep_tombstone: &dyn Fn(&[u8]) -> bool,
        values: &mut ValueCopy,
    ) -> Result<()> {
        let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
        let mut copy_record = |key: Vec<u8>, input: &mut Input| -> Result<Option<()>> {
            let (kind, tag, seq, value_len) = input.meta();
            if kind == EntryKind::Delete && !keep_tombstone(&key) {
                return Ok(Some(()));
            }
            let pointer = match input {
                Input::Mem(m)
                    if kind == EntryKind::Put
                        && value_len as u64 >= values.threshold_bytes
                        && value_len > 0
                        && !values
                            .inline_segments
                            .contains(&m.current().1.pos.segment.0) =>
                {
                    let pos = m.current().1.pos;
                    Some(ValuePointer {
                        segment: pos.segment,
                        offset: pos.value_offset,
                        len: pos.value_len,
                        checksum: self.wal.value_checksum(pos)?,
                    })
                }
                Input::Mem(_) => None,
                Input::Run(s) => s.pointer()?,
            };
            if let Some(p) = pointer {
                if !values.collected.contains(&p.segment.0) {
                    match input {
                        Input::Run(s) if s.whole_record().is_some() => {
                            writer.copy_record(&key, seq, s.whole_record().expect("checked"))?
                        }
                        _ => writer.add_pointer(&key, tag, seq, &p)?,
                    }
                    *values.refs.entry(p.segment.0).or_default() += p.len as u64;
                    return Ok(Some(()));
                }
                // Collected: the value moves into the run, checked against the stored checksum
                // (by the WAL) and the pointer's on the way.
                writer.begin_record(&key, kind, tag, seq, p.len as usize)?;
                let mut hash = xxhash_rust::xxh3::Xxh3::new();
                self.wal.copy_value(p.pos(), &mut chunk, &mut |c| {
                    hash.update(c);
                    writer.value_chunk(c)
                })?;
                let actual = hash.digest();
                if actual != p.checksum {
                    return Err(Error::ChecksumMismatch {
                        file: self.dir.join(layout::segment_file_name(p.segment)),
                        offset: p.offset,
                        what: "value a run points at",
                        expected: p.checksum,
                        actual,
                    });
                }
                writer.end_record()?;
                return Ok(Some(()));
            }
            // A run's record read whole goes out as it came in, its checksum checked and kept.
            if let Input::Run(s) = input {
                if let Some(record) = s.whole_record() {
                    writer.copy_record(&key, seq, record)?;
                    return Ok(Some(()));
                }
            }
            writer.begin_record(&key, kind, tag, seq, value_len)?;
            match input {
                Input::Mem(m) => {
                    if value_len > 0 {
                        let pos = m.current().1.pos;
                        match values.loaded.get(&pos.segment.0) {
                            Some(loaded) => writer.value_chunk(loaded.value(pos)?)?,
                            None => self
                                .wal
                                .copy_value(pos, &mut chunk, &mut |c| writer.value_chunk(c))?,
                        }
                    }
                }
                Input::Run(s) => s.stream_value(&mut |c| writer.value_chunk(c))?,
            }
            writer.end_record()?;
            Ok(Some(()))
        };
        while merge.next_resolved(&mut copy_record)?.is_some() {}
        Ok(())
    }

    /// Checks in-memory invariants; panics with a description when one is broken.
    pub fn check_invariants(&self) {
        // Lock order, as in compaction: manifest, then state.
        let manifest = self.manifest.lock();
        let st = self.state.read();
        let active = st.active.segment();
        let mut last = active;
        for m in &st.frozen {
            assert!(
                m.segment() < last,
                "shard {}: frozen memtables not newest first",
                self.id
            );
            last = m.segment();
        }
        assert_eq!(
            self.wal.active_segment(),
            active,
            "shard {}: active memtable and WAL segment differ",
            self.id
        );
        for pair in st.runs.windows(2) {
            assert!(
                pair[0].id() > pair[1].id(),
                "shard {}: runs not newest first",
                self.id
            );
            assert!(
                pair[0].footer().min_seq > pair[1].footer().max_seq,
                "shard {}: run sequence numbers overlap",
                self.id
            );
        }
        let ids: Vec<u64> = st.runs.iter().map(|r| r.id()).collect();
        let durable: Vec<u64> = manifest.runs.iter().map(|r| r.id).collect();
        assert_eq!(
            ids, durable,
            "shard {}: live runs differ from the manifest",
            self.id
        );
        assert!(
            st.runs.iter().all(|r| r.id() < manifest.next_run_id),
            "shard {}: run id not below next_run_id",
            self.id
        );
    }

    pub fn stats(&self) -> ShardStats {
        // The manifest lock comes before the state lock (a compaction holds the manifest while
        // it installs into the state): read the seal first.
        let (seal, value_files, value_log_bytes, value_log_garbage_bytes) = {
            let m = self.manifest.lock();
            let bytes: u64 = m.value_files.iter().map(|v| v.file_bytes).sum();
            let live: u64 = m
                .value_files
                .iter()
                .map(|v| m.live_value_bytes(v.segment).min(v.file_bytes))
                .sum();
            (
                m.seal.clone(),
                m.value_files.len() as u64,
                bytes,
                bytes - live,
            )
        };
        let st = self.state.read();
        let names = self.name_of_kind.lock();
        let mut s = ShardStats {
            id: self.id,
            wal: self.wal.stats(),
            poisoned: self.is_poisoned(),
            seal,
            value_files,
            value_log_bytes,
            value_log_garbage_bytes,
            complete: self.is_complete(),
            ..Default::default()
        };
        for m in std::iter::once(&st.active).chain(st.frozen.iter()) {
            s.memtable_keys += m.len() as u64;
            s.memtable_bytes += m.memory_bytes();
        }
        s.frozen_memtables = st.frozen.len() as u64;
        s.wal_debt_bytes = st.frozen.iter().map(|m| m.wal_bytes()).sum();
        for r in &st.runs {
            s.runs.push(RunStats {
                id: r.id(),
                entries: r.footer().entries,
                file_bytes: r.file_len(),
                index: names.get(&r.id()).copied().unwrap_or("?"),
                index_bytes: r.index().memory_bytes(),
                index_keys: r.index().key_count(),
                bytes_touched: r.bytes_touched(),
            });
        }
        s
    }
}

/// Checks what a checksum cannot: fields that would make compaction overwrite a live run (a
/// next run id at or below one in use) or sequence numbers overflow.
fn check_manifest_fields(manifest: &ShardManifest, path: &Path) -> Result<()> {
    let bad = |detail: String| Err(Error::corrupt(path, 0, "shard manifest", detail));
    if let Some(run) = manifest.runs.iter().find(|r| r.id >= manifest.next_run_id) {
        return bad(format!(
            "names run {} but its next run id is {}",
            run.id, manifest.next_run_id
        ));
    }
    if manifest.seal.is_some() && manifest.runs.len() > 1 {
        return bad(format!(
            "is sealed but names {} runs; a sealed shard has at most one",
            manifest.runs.len()
        ));
    }
    let runs: std::collections::BTreeSet<u64> = manifest.runs.iter().map(|r| r.id).collect();
    let mut last = None;
    for v in &manifest.value_files {
        if v.segment >= manifest.wal_floor || last.is_some_and(|l| l >= v.segment) {
            return bad(format!(
                "lists value file {} out of order or at or above its WAL floor {}",
                v.segment, manifest.wal_floor
            ));
        }
        last = Some(v.segment);
    }
    if let Some(r) = manifest.value_refs.iter().find(|r| {
        !runs.contains(&r.run) || manifest.value_files.iter().all(|v| v.segment != r.segment)
    }) {
        return bad(format!(
            "says run {} points into value file {}, but lists no such run or file",
            r.run, r.segment
        ));
    }
    if manifest.last_seq >= u64::MAX / 2 {
        return bad(format!(
            "last sequence number {} is beyond any a database reaches",
            manifest.last_seq
        ));
    }
    Ok(())
}

/// The manifest after a compaction that merged the newest `merged_runs` runs (and the WAL
/// below `wal_floor`) into `new_run` (none when everything merged away).
fn next_manifest(
    manifest: &ShardManifest,
    run_id: u64,
    merged_runs: usize,
    wal_floor: u64,
    new_run: Option<&(Arc<Run>, u8)>,
) -> ShardManifest {
    let mut next = manifest.clone();
    next.next_run_id = run_id + 1;
    next.wal_floor = wal_floor;
    let kept: Vec<RunMeta> = next.runs.split_off(merged_runs);
    next.runs = match new_run {
        Some((run, kind)) => vec![RunMeta {
            id: run.id(),
            index_kind: *kind,
            entries: run.footer().entries,
            file_bytes: run.file_len(),
        }],
        None => Vec::new(),
    };
    next.runs.extend(kept);
    if let Some((run, _)) = new_run {
        next.last_seq = next.last_seq.max(run.footer().max_seq.0);
    }
    next
}

/// Removes files of the shard directory that no live state refers to: temporary files and runs
/// or indexes not in the manifest (left by a crash before or after a manifest update).
fn remove_strays(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &ShardManifest,
    events: &dyn EventSink,
) -> Result<()> {
    let live: std::collections::BTreeSet<u64> = manifest.runs.iter().map(|r| r.id).collect();
    let entries = fs.list(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let Some(name) = entry.name.to_str() else {
            continue;
        };
        let stray = match layout::parse(name) {
            Some(FileKind::Temporary) => true,
            Some(FileKind::Run(id) | FileKind::Index(id)) => !live.contains(&id),
            _ => false,
        };
        if stray {
            let path = dir.join(name);
            fs.remove_file(&path)
                .map_err(|e| Error::io("removing", &path, e))?;
            events.event(&Event::StrayFileRemoved { file: path });
        }
    }
    Ok(())
}

/// Walks a memtable in key order in chunks of [`MEMTABLE_CHUNK_ENTRIES`], without holding its
/// lock between chunks.
pub(crate) struct MemCursor {
    mem: Arc<Memtable>,
    buf: VecDeque<(Vec<u8>, MemEntry)>,
    last: Option<Vec<u8>>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    cur: Option<(Vec<u8>, MemEntry)>,
    done: bool,
}

impl MemCursor {
    pub fn new(mem: Arc<Memtable>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> MemCursor {
        MemCursor {
            mem,
            buf: VecDeque::new(),
            last: None,
            start,
            end,
            cur: None,
            done: false,
        }
    }

    /// Moves to the next entry; false at the end.
    pub fn advance(&mut self) -> bool {
        if self.buf.is_empty() && !self.done {
            let after = match &self.last {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => self.start.as_ref().map(|k| k.as_slice()),
            };
            let chunk = self.mem.chunk(
                after,
                self.end.as_ref().map(|k| k.as_slice()),
                MEMTABLE_CHUNK_ENTRIES,
            );
            self.done = chunk.len() < MEMTABLE_CHUNK_ENTRIES;
            if let Some((k, _)) = chunk.last() {
                self.last = Some(k.clone());
            }
            self.buf.extend(chunk);
        }
        self.cur = self.buf.pop_front();
        self.cur.is_some()
    }

    pub fn current(&self) -> &(Vec<u8>, MemEntry) {
        self.cur.as_ref().expect("cursor positioned")
    }
}

enum Input {
    Mem(MemCursor),
    Run(Box<RunStream>),
}

/// How one compaction treats values, and what it found.
#[derive(Debug, Default)]
struct ValueCopy {
    /// Memtable values of at least this many bytes become pointers.
    threshold_bytes: u64,
    /// Frozen segments whose values are copied whatever their size.
    inline_segments: std::collections::BTreeSet<u64>,
    /// Value files being collected: values they hold are copied into the run.
    collected: std::collections::BTreeSet<u64>,
    /// Bytes the new run points at, per value file.
    refs: BTreeMap<u64, u64>,
    /// Length of each merged frozen segment that holds values of at least the threshold.
    segment_bytes: BTreeMap<u64, u64>,
    /// Frozen segments mapped whole (every value of theirs is copied), by segment.
    loaded: BTreeMap<u64, crate::wal::LoadedSegment>,
}

impl ValueCopy {
    /// Bytes of the segments mapped whole.
    fn loaded_bytes(&self) -> u64 {
        self.loaded.values().map(|l| l.len()).sum()
    }
}

impl MergeSource for Input {
    fn advance(&mut self) -> Result<bool> {
        match self {
            Input::Mem(m) => Ok(m.advance()),
            Input::Run(s) => s.advance(),
        }
    }
    fn key(&self) -> &[u8] {
        match self {
            Input::Mem(m) => &m.current().0,
            Input::Run(s) => s.key(),
        }
    }
}

impl Input {
    fn meta(&self) -> (EntryKind, u8, SeqNo, usize) {
        match self {
            Input::Mem(m) => {
                let e = m.current().1;
                (e.kind, e.tag, e.seq, e.pos.value_len as usize)
            }
            Input::Run(s) => {
                let m = s.meta().expect("stream positioned");
                (m.kind, m.tag, m.seq, m.value_len)
            }
        }
    }
}
