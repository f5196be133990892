//! strata: an embedded key-value store whose memory has a bound you can state before you start.
//!
//! [`Db`] is the engine wired with the streaming [`FileWal`] and both index kinds: the
//! [`InMemoryIndexFactory`] for small runs and the [`DiskIndexFactory`] for large ones, chosen
//! per run by `Options::index_policy` (default: by size, cutoff 20 MiB).
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let mut options = strata::Options::new();
//! options.create_if_missing = true;
//! let db = strata::Db::open(dir.path(), options)?;
//! db.put(b"block-1", b"payload")?;
//! assert_eq!(db.get(b"block-1")?, Some(b"payload".to_vec()));
//! db.compact_all()?;
//! for item in db.prefix(b"block-")? {
//!     let (key, value) = item?;
//!     assert_eq!((key.as_slice(), value.as_slice()), (&b"block-1"[..], &b"payload"[..]));
//! }
//! db.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod repair;
pub mod verify;

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

pub use strata_compactor::ThreadCompactor;
pub use strata_engine::{
    fused_next, prefix_successor, Batch, CompactionOptions, CompactionReport, DirEntry, Durability,
    EntryKind, Error, Event, EventLog, EventSink, FileLock, FileSystem, FsFile, IndexKind,
    IndexParams, IndexPolicy, Mapped, MergeSource, Merger, Metadata, NoEvents, OpRef, OpenMode,
    Options, PolicyOptions, Result, RunStats, SealDigest, ShardId, ShardSeal, ShardStats, Sharding,
    Stats, StdFs, AUTO_INDEX_CUTOFF_BYTES, COPY_CHUNK_BYTES, DEFAULT_MAX_OPEN_FILES, MAX_BATCH_OPS,
    MAX_HASH_SHARDS, MAX_KEY_BYTES, MAX_VALUE_BYTES, RLIMIT_NOFILE_DIVISOR,
    WAL_RECOVERY_WINDOW_BYTES,
};
pub use strata_index_disk::{DiskIndexFactory, DISK_KIND};
pub use strata_index_inmem::{InMemoryIndexFactory, INMEM_KIND};
pub use strata_wal::FileWal;

/// WAL bytes per record besides its key and value (record header and value checksum): what a
/// write costs on disk beyond its payload.
pub const WAL_RECORD_OVERHEAD_BYTES: usize = strata_wal::RECORD_OVERHEAD_BYTES;

/// The file that makes a directory a strata database (its identity: the sharding rule).
pub const DB_FILE: &str = strata_engine::format::DB_FILE;

/// An iterator over a key range, in key order.
pub type Scan = strata_engine::Scan<FileWal>;

/// An open database.
#[derive(Debug)]
pub struct Db {
    engine: strata_engine::Engine<FileWal>,
}

impl Db {
    /// Opens the database in `path` (creating it if `options.create_if_missing`). See
    /// [`strata_engine::Engine::open`] for the errors; each leaves the directory unchanged.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        let disk = DiskIndexFactory::new(options.index_params);
        let indexes: Vec<Arc<dyn strata_engine::IndexFactory>> =
            vec![Arc::new(InMemoryIndexFactory), Arc::new(disk)];
        let auto = options.compaction.auto;
        let engine = strata_engine::Engine::open(path, options, indexes)?;
        if auto {
            engine.attach_compactor(Arc::new(ThreadCompactor::start(engine.compaction_target())));
        }
        Ok(Db { engine })
    }

    /// Opens an existing database with the sharding it was created with and default options
    /// otherwise (for tools).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_existing_with(path, Options::new())
    }

    /// Opens an existing database with `options`, whose sharding is replaced by the one the
    /// database was created with (for tools that need other options, such as no background
    /// compaction). Never creates a database.
    pub fn open_existing_with(path: impl AsRef<Path>, mut options: Options) -> Result<Db> {
        options.sharding = strata_engine::stored_sharding(options.fs.as_ref(), path.as_ref())?;
        options.create_if_missing = false;
        Db::open(path, options)
    }

    /// The sharding rule the database was opened with.
    pub fn sharding(&self) -> Sharding {
        self.engine.options().sharding
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.engine.path()
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.engine.put(key, value)
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.engine.delete(key)
    }

    /// Applies a batch, atomically per shard.
    pub fn write_batch(&self, batch: &Batch) -> Result<()> {
        self.engine.write(batch)
    }

    /// Applies borrowed operations as one batch (atomically per shard) with the default
    /// durability, so that callers can reuse their buffers.
    pub fn write_ops(&self, ops: &[OpRef<'_>]) -> Result<()> {
        self.engine.write_ops(ops, self.engine.options().durability)
    }

    /// Bytes of frozen, uncompacted WAL.
    pub fn wal_debt_bytes(&self) -> u64 {
        self.engine.wal_debt_bytes()
    }

    /// Applies a batch with an explicit durability.
    pub fn write_batch_with(&self, batch: &Batch, durability: Durability) -> Result<()> {
        self.engine.write_with(batch, durability)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.engine.get(key)
    }

    /// Pairs with keys in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<Scan> {
        self.engine.range(range)
    }

    /// Pairs whose keys start with `prefix`, in key order.
    pub fn prefix(&self, prefix: &[u8]) -> Result<Scan> {
        self.engine.prefix(prefix)
    }

    /// Makes every finished write durable.
    pub fn sync(&self) -> Result<()> {
        self.engine.sync()
    }

    /// Compacts one shard now (WAL and runs into one run, streaming).
    pub fn compact(&self, shard: ShardId) -> Result<CompactionReport> {
        self.engine.compact(shard)
    }

    /// Blocks until the background compactor has nothing queued or running.
    pub fn wait_for_compactions(&self) {
        self.engine.wait_for_compactions()
    }

    /// Seals `shard`: compacts it whole into one run, records a digest of its contents in its
    /// manifest (checked by [`verify`]) and refuses writes to it until [`Db::unseal`]. See
    /// [`strata_engine::Engine::seal`].
    pub fn seal(&self, shard: ShardId) -> Result<ShardSeal> {
        self.engine.seal(shard)
    }

    /// Removes the seal of `shard`, durably, so that it accepts writes again.
    pub fn unseal(&self, shard: ShardId) -> Result<()> {
        self.engine.unseal(shard)
    }

    /// Whether `shard` refuses writes because it is sealed or being sealed.
    pub fn is_sealed(&self, shard: ShardId) -> bool {
        self.engine.is_sealed(shard)
    }

    /// The seal of `shard`, if it is sealed.
    pub fn seal_of(&self, shard: ShardId) -> Option<ShardSeal> {
        self.engine.seal_of(shard)
    }

    /// Compacts every shard, one at a time.
    pub fn compact_all(&self) -> Result<()> {
        self.engine.compact_all()
    }

    /// Moves every memtable into runs as a rotation would (RocksDB's `flush`), and waits. See
    /// [`strata_engine::Engine::flush`].
    pub fn flush(&self) -> Result<()> {
        self.engine.flush()
    }

    /// The shard `key` belongs to.
    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        self.engine.shard_of(key)
    }

    /// Shards that exist.
    pub fn shards(&self) -> Vec<ShardId> {
        self.engine.shards()
    }

    /// Memory and disk figures.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Checks in-memory invariants; panics when one is broken. For tests.
    pub fn check_invariants(&self) {
        self.engine.check_invariants()
    }

    /// Syncs and closes.
    pub fn close(self) -> Result<()> {
        self.engine.close()
    }
}
