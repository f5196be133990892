//! The engine: a database directory of shards, generic over the WAL, with index kinds chosen
//! per run. Routes writes and reads to shards, merges scans across them, and reports stats.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::{FileLock, FileSystem};
use crate::index::IndexFactory;
use crate::layout::{
    self, shard_dir_name, tmp_name, FileKind, DB_FILE, LOCK_FILE, SHARD_MANIFEST_FILE,
};
use crate::manifest::{self, DbMeta, DB_MAGIC};
use crate::options::{Durability, Options, Sharding};
use crate::scan::Scan;
use crate::shard::{
    create_shard_dir, leftover, load_shard, CompactionReport, Indexes, Leftover, Shard, ShardStats,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crate::compactor::{CompactionTarget, Compactor};
use crate::event::Event;
use crate::policy::{Plan, ShardShape};
use crate::stall::{Admission, StallGate};

use crate::limits::{MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::types::{prefix_successor, Batch, OpRef, ShardId};
use crate::wal::Wal;
use parking_lot::{Mutex, RwLock};

/// Whole-database figures, one line per holder of the memory model.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Per shard.
    pub shards: Vec<ShardStats>,
    /// Keys in memtables.
    pub memtable_keys: u64,
    /// Estimated memtable heap bytes (keys + fixed overhead per key; never values).
    pub memtable_bytes: u64,
    /// Live runs.
    pub runs: u64,
    /// Bytes of live run files.
    pub run_bytes: u64,
    /// Keys in run indexes.
    pub index_keys: u64,
    /// Memory of run indexes.
    pub index_bytes: u64,
    /// Bytes of live WAL segments, value files included.
    pub wal_bytes: u64,
    /// Value files (WAL segments kept because runs point into them).
    pub value_files: u64,
    /// Bytes of value files.
    pub value_log_bytes: u64,
    /// Bytes of value files no live run points at (what collection reclaims).
    pub value_log_garbage_bytes: u64,
    /// Bytes of frozen, uncompacted WAL values.
    pub wal_debt_bytes: u64,
    /// Bytes read from disk to recover the WALs at open.
    pub recovery_bytes_read: u64,
    /// Largest buffer bytes any compaction held (read buffers, copy chunk, write buffer).
    pub compaction_buffer_peak_bytes: u64,
}

/// A database: shards, each with a WAL of type `W`, runs indexed by the known index kinds.
pub struct Engine<W: Wal> {
    inner: Arc<Inner<W>>,
    periodic: Option<(crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>)>,
}

struct Inner<W: Wal> {
    dir: PathBuf,
    options: Options,
    indexes: Indexes,
    shards: RwLock<BTreeMap<ShardId, Arc<Shard<W>>>>,
    closed: AtomicBool,
    /// WAL debt against the stall thresholds.
    gate: StallGate,
    /// The background compactor, once attached.
    compactor: OnceLock<Arc<dyn Compactor>>,
    /// Held for every compaction, background or manual: one at a time, engine-wide.
    one_compaction: Mutex<()>,
    /// Compactions running now (checked to be at most one).
    in_flight: AtomicUsize,
    _lock: FileLock,
}

impl<W: Wal> Inner<W> {
    fn shard(&self, id: ShardId) -> Option<Arc<Shard<W>>> {
        self.shards.read().get(&id).cloned()
    }

    fn enqueue(&self, shard: ShardId) {
        if let Some(c) = self.compactor.get() {
            if c.enqueue(shard) {
                self.options
                    .events
                    .event(&Event::CompactionQueued { shard });
            }
        }
    }

    /// Runs one compaction of `shard` as `choose` plans it, holding the engine-wide lock.
    fn run_compaction(
        &self,
        shard: ShardId,
        choose: &dyn Fn(&ShardShape) -> Option<Plan>,
    ) -> Result<CompactionReport> {
        let Some(s) = self.shard(shard) else {
            return Ok(CompactionReport::default());
        };
        let _one = self.one_compaction.lock();
        self.compaction_locked(&s, choose)
    }

    /// [`Inner::run_compaction`] for a caller that holds `one_compaction`.
    fn compaction_locked(
        &self,
        s: &Shard<W>,
        choose: &dyn Fn(&ShardShape) -> Option<Plan>,
    ) -> Result<CompactionReport> {
        let running = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        debug_assert_eq!(running, 1, "two compactions at once");
        let result = s.compact(&self.indexes, &self.gate, choose);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if matches!(&result, Ok(r) if r.entries_out > 0 || r.bytes_in > 0) {
            release_free_heap();
        }
        result
    }
}

impl<W: Wal> CompactionTarget for Inner<W> {
    fn compact_shard(&self, shard: ShardId) -> Result<()> {
        let policy = self.options.compaction.policy;
        self.run_compaction(shard, &|shape| crate::policy::plan(shape, &policy))?;
        // A compaction that leaves frozen memtables (it takes the oldest that fit its memory),
        // or a value file over the garbage ratio, queues the next one.
        if self
            .shard(shard)
            .is_some_and(|s| (s.wants_collection() || s.frozen_len() > 0) && !s.is_poisoned())
        {
            self.enqueue(shard);
        }
        Ok(())
    }
}

impl<W: Wal> std::fmt::Debug for Engine<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl<W: Wal> Engine<W> {
    /// Opens (or creates) the database in `dir`. `indexes` lists every index kind the database
    /// may contain; `options.index_policy` picks among them for new runs.
    ///
    /// Errors, each before anything on disk is changed: [`Error::NotFound`] for a missing
    /// directory without `create_if_missing`, [`Error::NotADatabase`] for a non-empty directory
    /// without a `STRATA` file, [`Error::OptionsMismatch`] for another sharding rule,
    /// [`Error::UnsupportedVersion`] / [`Error::Corrupt`] for bad manifests, runs or indexes,
    /// [`Error::Locked`] when another handle has it open.
    pub fn open(
        dir: impl AsRef<Path>,
        options: Options,
        indexes: Vec<Arc<dyn IndexFactory>>,
    ) -> Result<Engine<W>> {
        let dir = dir.as_ref().to_path_buf();
        validate(&options, &indexes)?;
        let existing = prepare_dir(&dir, &options)?;
        let fs = options.fs.as_ref();
        let lock = take_lock(fs, &dir)?;
        if !existing {
            sync_ancestors(fs, &dir)?;
            let identity = manifest::encode(
                DB_MAGIC,
                manifest::MANIFEST_VERSION,
                &options.sharding.to_meta(),
            );
            manifest::write_atomic(fs, &dir.join(DB_FILE), &identity)?;
        }
        let indexes = Indexes {
            factories: indexes,
            policy: options.index_policy,
            files: Arc::new(crate::files::FileCache::new(
                crate::files::open_files_budget(options.max_open_files),
                options.fs.clone(),
            )),
            value_log: crate::shard::ValueLogOptions {
                threshold_bytes: options.value_log_threshold_bytes,
                gc_ratio: options.value_log_gc_ratio,
            },
        };
        let shards = open_shards(&dir, &indexes, &options)?;
        let c = options.compaction;
        let gate = StallGate::new(c.stall_slowdown_bytes, c.stall_stop_bytes)
            .with_memtable_limit(c.stall_stop_memtable_bytes);
        gate.add(
            shards.values().map(|s| s.frozen_wal_bytes()).sum(),
            shards.values().map(|s| s.frozen_memory_bytes()).sum(),
        );
        let inner = Arc::new(Inner {
            dir,
            options,
            indexes,
            shards: RwLock::new(shards),
            closed: AtomicBool::new(false),
            gate,
            compactor: OnceLock::new(),
            one_compaction: Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            _lock: lock,
        });
        let periodic = match inner.options.durability {
            Durability::Periodic { interval_ms } => Some(spawn_periodic_sync(
                inner.clone(),
                Duration::from_millis(interval_ms),
            )),
            _ => None,
        };
        Ok(Engine { inner, periodic })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The shard `key` belongs to.
    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        match self.inner.options.sharding {
            Sharding::Single => ShardId(0),
            Sharding::Hash { shards } => {
                ShardId(xxhash_rust::xxh3::xxh3_64(key) % u64::from(shards))
            }
            Sharding::Range { width } => ShardId(Sharding::prefix_u64(key) / width),
        }
    }

    /// Shards that exist.
    pub fn shards(&self) -> Vec<ShardId> {
        self.inner.shards.read().keys().copied().collect()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn shard(&self, id: ShardId) -> Option<Arc<Shard<W>>> {
        self.inner.shard(id)
    }

    fn shard_or_create(&self, id: ShardId) -> Result<Arc<Shard<W>>> {
        if let Some(s) = self.shard(id) {
            return Ok(s);
        }
        let mut shards = self.inner.shards.write();
        if let Some(s) = shards.get(&id) {
            return Ok(s.clone());
        }
        let dir = self.inner.dir.join(shard_dir_name(id));
        create_shard_dir(self.inner.options.fs.as_ref(), &dir, id)?;
        let loaded = load_shard(
            &dir,
            id,
            &self.inner.indexes,
            self.inner.options.events.as_ref(),
        )?;
        let shard = Arc::new(Shard::open(
            loaded,
            self.inner.options.events.clone(),
            self.inner.indexes.value_log,
            full_width(&self.inner.options),
            self.inner.indexes.files.clone(),
        )?);
        shards.insert(id, shard.clone());
        Ok(shard)
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = Batch::new();
        b.put(key, value);
        self.write(&b)
    }

    /// Deletes `key` (a tombstone; deleting an absent key is not an error).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = Batch::new();
        b.delete(key);
        self.write(&b)
    }

    /// Applies `batch` with the default durability: atomically within each shard (a crash
    /// keeps all or none of a shard's part). Every key and value is checked against the limits
    /// before anything is written.
    pub fn write(&self, batch: &Batch) -> Result<()> {
        self.write_with(batch, self.inner.options.durability)
    }

    /// [`Engine::write`] with an explicit durability for this batch.
    pub fn write_with(&self, batch: &Batch, durability: Durability) -> Result<()> {
        let ops: Vec<OpRef<'_>> = batch.iter().collect();
        self.write_ops(&ops, durability)
    }

    /// Applies borrowed operations as one batch (atomically per shard), so that callers can
    /// reuse their key and value buffers. Deletes must have empty values.
    pub fn write_ops(&self, ops: &[OpRef<'_>], durability: Durability) -> Result<()> {
        self.check_open()?;
        if ops.len() > MAX_BATCH_OPS {
            return Err(Error::BatchTooLarge {
                ops: ops.len(),
                limit: MAX_BATCH_OPS,
            });
        }
        let mut by_shard: BTreeMap<ShardId, Vec<OpRef<'_>>> = BTreeMap::new();
        for &op in ops {
            if op.kind == crate::types::EntryKind::Delete && !op.value.is_empty() {
                return Err(Error::InvalidOptions("a delete carries no value".into()));
            }
            if op.key.len() > MAX_KEY_BYTES {
                return Err(Error::KeyTooLarge {
                    len: op.key.len(),
                    limit: MAX_KEY_BYTES,
                });
            }
            if op.value.len() > MAX_VALUE_BYTES {
                return Err(Error::ValueTooLarge {
                    len: op.value.len(),
                    limit: MAX_VALUE_BYTES,
                });
            }
            by_shard.entry(self.shard_of(op.key)).or_default().push(op);
        }
        for id in by_shard.keys() {
            if self.shard(*id).is_some_and(|s| s.is_sealed()) {
                return Err(Error::Sealed { shard: id.0 });
            }
        }
        let auto = self.inner.compactor.get().is_some();
        if auto {
            self.pass_stall_gate(by_shard.keys().next().copied().unwrap_or_default());
        }
        for (id, ops) in by_shard {
            let shard = self.shard_or_create(id)?;
            shard.write(&ops, durability)?;
            if auto {
                if shard.active_should_rotate(&self.inner.options.compaction.policy) {
                    let (wal, memory) = shard.freeze()?;
                    self.inner.gate.add(wal, memory);
                    self.inner.enqueue(id);
                }
                if shard.check_full() {
                    self.inner.enqueue(id);
                }
            }
        }
        Ok(())
    }

    /// Slows or stops this writer while WAL debt is over the thresholds.
    fn pass_stall_gate(&self, shard: ShardId) {
        let c = &self.inner.options.compaction;
        let gate = &self.inner.gate;
        if gate.would_wait() {
            self.inner.options.events.event(&Event::WriteStallStart {
                shard,
                wal_debt_bytes: gate.debt(),
            });
        }
        let started = std::time::Instant::now();
        match gate.admit() {
            Admission::Free => {}
            Admission::Slow => std::thread::sleep(Duration::from_micros(c.stall_slowdown_delay_us)),
            Admission::Waited => {
                self.inner.options.events.event(&Event::WriteStallEnd {
                    shard,
                    duration: started.elapsed(),
                });
            }
        }
    }

    /// Attaches the background compactor (once): from now on WAL rotation, range-shard
    /// completion and write stalls are automatic. Shards with frozen WAL left from before are
    /// queued at once.
    pub fn attach_compactor(&self, compactor: Arc<dyn Compactor>) {
        if self.inner.compactor.set(compactor).is_err() {
            return;
        }
        let shards: Vec<_> = self.inner.shards.read().values().cloned().collect();
        for s in shards {
            if s.check_full() || s.frozen_wal_bytes() > 0 || s.wants_collection() {
                self.inner.enqueue(s.id);
            }
        }
    }

    /// What a compactor drives: this engine, held weakly (a compactor never keeps a closed
    /// database alive).
    pub fn compaction_target(&self) -> Weak<dyn CompactionTarget> {
        let strong: Arc<dyn CompactionTarget> = self.inner.clone();
        Arc::downgrade(&strong)
    }

    /// Bytes of frozen, uncompacted WAL (what write stalls are measured against).
    pub fn wal_debt_bytes(&self) -> u64 {
        self.inner.gate.debt()
    }

    /// Blocks until the background compactor has nothing queued or running.
    pub fn wait_for_compactions(&self) {
        if let Some(c) = self.inner.compactor.get() {
            c.wait_idle();
        }
    }

    /// The value of `key`, or `None` if it is absent or deleted.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        match self.shard(self.shard_of(key)) {
            Some(s) => Ok(s.get(key)?.flatten()),
            None => Ok(None),
        }
    }

    /// Key-value pairs with keys in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<Scan<W>> {
        let own = |b: Bound<&K>| b.map(|k| k.as_ref().to_vec());
        self.scan_bounds(own(range.start_bound()), own(range.end_bound()))
    }

    /// Key-value pairs whose keys start with `prefix`, in key order.
    pub fn prefix(&self, prefix: &[u8]) -> Result<Scan<W>> {
        let end = match prefix_successor(prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        self.scan_bounds(Bound::Included(prefix.to_vec()), end)
    }

    fn scan_bounds(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Scan<W>> {
        self.check_open()?;
        let shards: Vec<Arc<Shard<W>>> = {
            let all = self.inner.shards.read();
            match self.inner.options.sharding {
                Sharding::Range { .. } => {
                    let lo = match &start {
                        Bound::Included(k) | Bound::Excluded(k) => self.shard_of(k),
                        Bound::Unbounded => ShardId(0),
                    };
                    let hi = match &end {
                        Bound::Included(k) | Bound::Excluded(k) => self.shard_of(k),
                        Bound::Unbounded => ShardId(u64::MAX),
                    };
                    if lo > hi {
                        Vec::new()
                    } else {
                        all.range(lo..=hi).map(|(_, s)| s.clone()).collect()
                    }
                }
                _ => all.values().cloned().collect(),
            }
        };
        let views = shards.iter().map(|s| (s.view(), s.wal.clone())).collect();
        Scan::new(views, start, end)
    }

    /// Makes every write that returned before this call durable (fdatasync of every WAL).
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        let shards: Vec<_> = self.inner.shards.read().values().cloned().collect();
        for s in shards {
            s.sync()?;
        }
        Ok(())
    }

    /// Compacts one shard now: its frozen and active WAL contents and all its runs become one
    /// run, streamed in bounded chunks. Blocks until done. A shard that does not exist is a
    /// no-op. On failure the shard refuses writes until the database is reopened.
    pub fn compact(&self, shard: ShardId) -> Result<CompactionReport> {
        self.check_open()?;
        let report = self.inner.run_compaction(shard, &crate::policy::full)?;
        // A collection this compaction made due runs in the background, as after any other.
        if self.shard(shard).is_some_and(|s| s.wants_collection()) {
            self.inner.enqueue(shard);
        }
        Ok(report)
    }

    /// Seals `shard`: refuses writes to it from now on, compacts it whole into one run and
    /// records in its manifest a SHA-256 digest of its contents in key order (see
    /// [`crate::SealDigest`]), which `strata verify` checks. Sealing a sealed shard returns its
    /// seal; sealing a shard that does not exist creates it empty. Writes to a sealed shard
    /// fail with [`Error::Sealed`] until [`Engine::unseal`]. On an error the shard accepts
    /// writes again (unless the error poisoned it).
    pub fn seal(&self, shard: ShardId) -> Result<crate::manifest::ShardSeal> {
        self.check_open()?;
        let s = self.shard_or_create(shard)?;
        let _one = self.inner.one_compaction.lock();
        if let Some(seal) = s.seal() {
            return Ok(seal);
        }
        s.refuse_writes();
        let sealed = self.seal_locked(&s);
        if sealed.is_err() {
            s.accept_writes_unsealed();
        }
        sealed
    }

    fn seal_locked(&self, s: &Arc<Shard<W>>) -> Result<crate::manifest::ShardSeal> {
        self.inner.compaction_locked(s, &crate::policy::full)?;
        let mut digest = crate::manifest::SealDigest::new();
        let scan = Scan::new(
            vec![(s.view(), s.wal.clone())],
            Bound::Unbounded,
            Bound::Unbounded,
        )?;
        for item in scan {
            let (key, value) = item?;
            digest.add(&key, &value);
        }
        let seal = digest.finish();
        s.record_seal(seal.clone())?;
        self.inner.options.events.event(&Event::ShardSealed {
            shard: s.id,
            entries: seal.entries,
        });
        Ok(seal)
    }

    /// Removes the seal of `shard` (durably) so that it accepts writes again; a shard that is
    /// not sealed, or does not exist, is left as it is.
    pub fn unseal(&self, shard: ShardId) -> Result<()> {
        self.check_open()?;
        let Some(s) = self.shard(shard) else {
            return Ok(());
        };
        let _one = self.inner.one_compaction.lock();
        s.unseal()
    }

    /// Whether `shard` refuses writes because it is sealed or being sealed (no lock taken: the
    /// check a write path makes).
    pub fn is_sealed(&self, shard: ShardId) -> bool {
        self.shard(shard).is_some_and(|s| s.is_sealed())
    }

    /// The seal of `shard`, if it is sealed (waits for a compaction of the shard to finish).
    pub fn seal_of(&self, shard: ShardId) -> Option<crate::manifest::ShardSeal> {
        self.shard(shard).and_then(|s| s.seal())
    }

    /// Moves every memtable into runs the way the policy would on rotation (as RocksDB's
    /// `flush`): freezes each shard's active memtable, compacts what is frozen (merged into
    /// the newest runs by the growth factor, not the whole shard) and waits for it. Without a
    /// background compactor, compacts in the caller.
    pub fn flush(&self) -> Result<()> {
        self.check_open()?;
        let policy = self.inner.options.compaction.policy;
        for id in self.shards() {
            let Some(s) = self.shard(id) else { continue };
            let (wal, memory) = s.freeze()?;
            self.inner.gate.add(wal, memory);
            if self.inner.compactor.get().is_some() {
                self.inner.enqueue(id);
            } else {
                // A compaction takes the oldest frozen memtables that fit its memory.
                while s.frozen_len() > 0 {
                    self.inner
                        .run_compaction(id, &|shape| crate::policy::plan(shape, &policy))?;
                }
            }
        }
        self.wait_for_compactions();
        Ok(())
    }

    /// Compacts every shard, one after another.
    pub fn compact_all(&self) -> Result<()> {
        for id in self.shards() {
            self.compact(id)?;
        }
        Ok(())
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        let shards: Vec<_> = self.inner.shards.read().values().cloned().collect();
        let mut s = Stats {
            wal_debt_bytes: self.inner.gate.debt(),
            ..Stats::default()
        };
        for shard in shards {
            let st = shard.stats();
            s.memtable_keys += st.memtable_keys;
            s.memtable_bytes += st.memtable_bytes;
            s.wal_bytes += st.wal.bytes;
            s.recovery_bytes_read += st.wal.recovery_bytes_read;
            s.value_files += st.value_files;
            s.value_log_bytes += st.value_log_bytes;
            s.value_log_garbage_bytes += st.value_log_garbage_bytes;
            for r in &st.runs {
                s.runs += 1;
                s.run_bytes += r.file_bytes;
                s.index_keys += r.index_keys;
                s.index_bytes += r.index_bytes;
            }
            s.compaction_buffer_peak_bytes = s
                .compaction_buffer_peak_bytes
                .max(shard.compaction_buffer_peak.load(Ordering::Relaxed));
            s.shards.push(st);
        }
        s
    }

    /// Checks the in-memory invariants of every shard (runs newest first with disjoint sequence
    /// numbers, live runs equal to the manifest, memtables in segment order); panics with a
    /// description when one is broken. For tests.
    pub fn check_invariants(&self) {
        let shards: Vec<_> = self.inner.shards.read().values().cloned().collect();
        for s in shards {
            s.check_invariants();
        }
    }

    /// Syncs every WAL and closes the database. Later calls on other handles to it fail with
    /// [`Error::Closed`]; dropping without `close` keeps what the durability option promised.
    pub fn close(mut self) -> Result<()> {
        self.stop_background();
        let r = self.sync();
        self.inner.closed.store(true, Ordering::Release);
        r
    }

    fn stop_background(&mut self) {
        if let Some(c) = self.inner.compactor.get() {
            c.shutdown();
        }
        // Nobody compacts any more: let stalled writers through.
        self.inner.gate.open();
        self.stop_periodic();
    }

    fn stop_periodic(&mut self) {
        if let Some((tx, handle)) = self.periodic.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl<W: Wal> Drop for Engine<W> {
    fn drop(&mut self) {
        self.stop_background();
    }
}

/// Checks options against each other and against the index kinds the engine has.
/// The width that makes a range shard complete, when range shards complete when full.
fn full_width(options: &Options) -> Option<u64> {
    match options.sharding {
        Sharding::Range { width } if options.compaction.complete_when_full => Some(width),
        _ => None,
    }
}

fn validate(options: &Options, indexes: &[Arc<dyn IndexFactory>]) -> Result<()> {
    options.sharding.validate().map_err(Error::InvalidOptions)?;
    options
        .index_params
        .validate()
        .map_err(Error::InvalidOptions)?;
    if !(options.value_log_gc_ratio > 0.0 && options.value_log_gc_ratio <= 1.0) {
        return Err(Error::InvalidOptions(format!(
            "value_log_gc_ratio {} is not in (0, 1]",
            options.value_log_gc_ratio
        )));
    }
    if let Durability::Periodic { interval_ms: 0 } = options.durability {
        return Err(Error::InvalidOptions(
            "periodic durability needs an interval of at least 1 ms".into(),
        ));
    }
    for k in [
        options.index_policy.choose(0),
        options.index_policy.choose(u64::MAX),
    ] {
        if !indexes.iter().any(|f| f.kind() == k) {
            return Err(Error::InvalidOptions(format!(
                "index policy names kind {}, which is not among the engine's index kinds",
                k.0
            )));
        }
    }
    Ok(())
}

/// Makes sure `dir` is a database of `options`' sharding, or an empty directory to create
/// one in (made if missing and allowed). Returns whether the database exists. Changes nothing
/// on disk but the directory itself.
fn prepare_dir(dir: &Path, options: &Options) -> Result<bool> {
    let fs = options.fs.as_ref();
    if !fs.is_dir(dir) {
        if fs.exists(dir) {
            return Err(Error::NotADatabase { path: dir.into() });
        }
        if !options.create_if_missing {
            return Err(Error::NotFound { path: dir.into() });
        }
        fs.create_dir_all(dir)
            .map_err(|e| Error::io("creating", dir, e))?;
    }
    let db_file = dir.join(DB_FILE);
    if !fs.exists(&db_file) {
        // Empty, or left by a creation that stopped before its identity file was in place.
        let interrupted = [LOCK_FILE.to_string(), tmp_name(DB_FILE)];
        let entries = fs.list(dir).map_err(|e| Error::io("listing", dir, e))?;
        for entry in entries {
            if !interrupted.iter().any(|n| entry.name == n.as_str()) {
                return Err(Error::NotADatabase { path: dir.into() });
            }
        }
        return Ok(false);
    }
    let stored: DbMeta = manifest::read(fs, DB_MAGIC, &db_file, "database identity file")?;
    if stored != options.sharding.to_meta() {
        return Err(Error::OptionsMismatch {
            path: dir.into(),
            stored: describe(&stored),
            requested: options.sharding.to_string(),
        });
    }
    Ok(true)
}

/// Syncs every directory above `dir`, deepest first, so that the entries leading to a new
/// database survive a power loss (the open that made them may have failed before syncing them,
/// so every creation syncs them all). An ancestor this process may not open is skipped: it was
/// not made by this process.
fn sync_ancestors(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    for a in dir.ancestors().skip(1) {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        match fs.sync_dir(a) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            r => r.map_err(|e| Error::io("syncing directory", a, e))?,
        }
        if a == Path::new(".") {
            break;
        }
    }
    Ok(())
}

/// Takes the database's lock file, held for as long as the returned file is open.
fn take_lock(fs: &dyn FileSystem, dir: &Path) -> Result<FileLock> {
    let lock_path = dir.join(LOCK_FILE);
    match fs.try_lock(&lock_path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(Error::Locked { path: lock_path }),
        Err(e) => Err(Error::io("locking", &lock_path, e)),
    }
}

/// Opens every shard of `dir` in two phases: first, read-only, every manifest, run and index
/// (so that a bad file fails the open before anything changes); then the removal of what a
/// crash or an error left half made (with an event each) and WAL recovery.
fn open_shards<W: Wal>(
    dir: &Path,
    indexes: &Indexes,
    options: &Options,
) -> Result<BTreeMap<ShardId, Arc<Shard<W>>>> {
    let fs = options.fs.as_ref();
    let mut loaded = Vec::new();
    let mut half_made = Vec::new();
    let entries = fs.list(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let path = dir.join(&entry.name);
        let kind = entry.name.to_str().and_then(layout::parse);
        match kind {
            Some(FileKind::ShardDir(id)) if fs.exists(&path.join(SHARD_MANIFEST_FILE)) => {
                loaded.push(load_shard(&path, id, indexes, options.events.as_ref())?);
            }
            // A file being written when a process stopped (`STRATA.tmp`, or a `.tmp` of a
            // layer above, written and renamed the same way): never read, so removed.
            Some(FileKind::Temporary) if !entry.is_dir => {
                fs.remove_file(&path)
                    .map_err(|e| Error::io("removing", &path, e))?;
                options
                    .events
                    .event(&Event::StrayFileRemoved { file: path });
            }
            _ => {
                if let Leftover::HalfMade = leftover(fs, &path, entry.is_dir, kind)? {
                    half_made.push(path);
                }
            }
        }
    }
    for path in half_made {
        fs.remove_dir_all(&path)
            .map_err(|e| Error::io("removing", &path, e))?;
        options
            .events
            .event(&Event::StrayFileRemoved { file: path });
    }
    // Always, not only after a removal: an earlier process may have made a shard whose
    // directory sync failed, and what this open finds must be durable before anything
    // written into it is reported durable.
    manifest::sync_dir(fs, dir)?;
    let mut shards = BTreeMap::new();
    for l in loaded {
        let shard = Shard::open(
            l,
            options.events.clone(),
            indexes.value_log,
            full_width(options),
            indexes.files.clone(),
        )?;
        shards.insert(shard.id, Arc::new(shard));
    }
    Ok(shards)
}

/// The sharding rule a database was created with, read from its `STRATA` file on `fs`.
pub fn stored_sharding(fs: &dyn FileSystem, dir: &Path) -> Result<Sharding> {
    let path = dir.join(DB_FILE);
    if !fs.exists(&path) {
        return Err(if fs.is_dir(dir) {
            Error::NotADatabase {
                path: dir.to_path_buf(),
            }
        } else {
            Error::NotFound {
                path: dir.to_path_buf(),
            }
        });
    }
    let meta: DbMeta = manifest::read(fs, DB_MAGIC, &path, "database identity file")?;
    match meta.sharding_kind {
        0 => Ok(Sharding::Single),
        1 => Ok(Sharding::Hash {
            shards: meta.sharding_param as u32,
        }),
        2 => Ok(Sharding::Range {
            width: meta.sharding_param,
        }),
        k => Err(Error::corrupt(
            &path,
            16,
            "database identity file",
            format!("unknown sharding kind {k}"),
        )),
    }
}

fn describe(meta: &DbMeta) -> String {
    match meta.sharding_kind {
        0 => Sharding::Single.to_string(),
        1 => Sharding::Hash {
            shards: meta.sharding_param as u32,
        }
        .to_string(),
        2 => Sharding::Range {
            width: meta.sharding_param,
        }
        .to_string(),
        k => format!("unknown sharding kind {k}"),
    }
}

fn spawn_periodic_sync<W: Wal>(
    inner: Arc<Inner<W>>,
    every: Duration,
) -> (crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded::<()>(0);
    let handle = std::thread::Builder::new()
        .name("strata-sync".into())
        .spawn(move || {
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                let shards: Vec<_> = inner.shards.read().values().cloned().collect();
                for s in shards {
                    if let Err(e) = s.sync() {
                        inner
                            .options
                            .events
                            .event(&crate::event::Event::BackgroundError {
                                error: e.to_string(),
                            });
                    }
                }
            }
        })
        .expect("spawning the periodic sync thread");
    (tx, handle)
}

/// A compaction frees the memtables of the WAL it merged; glibc keeps freed chunks in the middle
/// of its heaps resident until told otherwise, and the heap ratchets up with every compaction
/// (the fragmentation of the original OOM). `malloc_trim` hands those pages back. A no-op with
/// other allocators (jemalloc purges on its own).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        #[expect(unsafe_code, reason = "calling glibc's malloc_trim")]
        // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own free
        // lists, and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}
