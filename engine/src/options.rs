//! Options of an engine instance.

use std::sync::Arc;

use crate::event::{EventSink, NoEvents};
use crate::fs::{FileSystem, StdFs};
use crate::index::{IndexKind, IndexParams};
use crate::limits::{
    AUTO_INDEX_CUTOFF_BYTES, DEFAULT_MAX_OPEN_FILES, DEFAULT_STALL_SLOWDOWN_BYTES,
    DEFAULT_STALL_SLOWDOWN_DELAY_US, DEFAULT_STALL_STOP_BYTES, DEFAULT_STALL_STOP_MEMTABLE_BYTES,
    DEFAULT_VALUE_LOG_GC_RATIO, DEFAULT_VALUE_LOG_THRESHOLD_BYTES, MAX_HASH_SHARDS,
};
use crate::manifest::DbMeta;
use crate::policy::PolicyOptions;

/// How keys are spread over shards. Fixed when the database is created.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sharding {
    /// One shard holds everything.
    Single,
    /// `xxh3(key) % shards`.
    Hash {
        /// Number of shards (1 to 65,536).
        shards: u32,
    },
    /// The key's first 8 bytes as a big-endian `u64` (zero-padded if shorter), divided by
    /// `width`: shard `n` holds prefixes `[n * width, (n + 1) * width)`. Shards are created as
    /// keys arrive.
    Range {
        /// Prefixes per shard (at least 1).
        width: u64,
    },
}

impl Sharding {
    pub(crate) fn to_meta(self) -> DbMeta {
        match self {
            Sharding::Single => DbMeta {
                sharding_kind: 0,
                sharding_param: 0,
            },
            Sharding::Hash { shards } => DbMeta {
                sharding_kind: 1,
                sharding_param: u64::from(shards),
            },
            Sharding::Range { width } => DbMeta {
                sharding_kind: 2,
                sharding_param: width,
            },
        }
    }

    pub(crate) fn validate(self) -> Result<(), String> {
        match self {
            Sharding::Hash { shards } if shards == 0 || shards > MAX_HASH_SHARDS => Err(format!(
                "hash sharding needs 1 to {MAX_HASH_SHARDS} shards, got {shards}"
            )),
            Sharding::Range { width: 0 } => {
                Err("range sharding needs a width of at least 1".into())
            }
            _ => Ok(()),
        }
    }

    /// The big-endian `u64` prefix of `key`, zero-padded: monotone in key order.
    pub fn prefix_u64(key: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        let n = key.len().min(8);
        b[..n].copy_from_slice(&key[..n]);
        u64::from_be_bytes(b)
    }
}

impl std::fmt::Display for Sharding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sharding::Single => write!(f, "a single shard"),
            Sharding::Hash { shards } => write!(f, "{shards} hash shards"),
            Sharding::Range { width } => write!(f, "range shards of width {width}"),
        }
    }
}

/// When a write is durable.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written to the OS before the call returns: survives a process crash, not a power loss
    /// (the RocksDB and fjall default). `sync()` makes it durable.
    Buffered,
    /// fdatasync before the call returns; concurrent writers share syncs (group commit).
    SyncPerBatch,
    /// Written to the OS at once and synced by a background thread every `interval_ms`.
    Periodic {
        /// Milliseconds between syncs (at least 1).
        interval_ms: u64,
    },
}

/// Which index a new run gets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IndexPolicy {
    /// Always this kind.
    Always(IndexKind),
    /// `small` for runs whose expected size is under `cutoff_bytes`, `large` otherwise.
    BySize {
        /// Kind for small runs.
        small: IndexKind,
        /// Kind for large runs.
        large: IndexKind,
        /// The cutoff, in bytes of run.
        cutoff_bytes: u64,
    },
}

impl IndexPolicy {
    /// In-memory index for runs under [`AUTO_INDEX_CUTOFF_BYTES`], disk index from there.
    pub const AUTO: IndexPolicy = IndexPolicy::BySize {
        small: IndexKind::IN_MEMORY,
        large: IndexKind::DISK,
        cutoff_bytes: AUTO_INDEX_CUTOFF_BYTES,
    };

    /// The kind for a run expected to be `run_bytes` long.
    pub fn choose(&self, run_bytes: u64) -> IndexKind {
        match *self {
            IndexPolicy::Always(kind) => kind,
            IndexPolicy::BySize {
                small,
                large,
                cutoff_bytes,
            } => {
                if run_bytes < cutoff_bytes {
                    small
                } else {
                    large
                }
            }
        }
    }
}

/// Automatic compaction and write stalls.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CompactionOptions {
    /// Run a background compactor (default true). Without it, only `compact` compacts, and
    /// writes never stall.
    pub auto: bool,
    /// When the WAL rotates and what a compaction merges.
    pub policy: PolicyOptions,
    /// WAL debt (bytes of frozen, uncompacted WAL, whole database) from which each write is
    /// delayed by `stall_slowdown_delay_us` (default 256 MiB: four rotations).
    pub stall_slowdown_bytes: u64,
    /// WAL debt from which writers wait for compaction (default 512 MiB: eight rotations).
    pub stall_stop_bytes: u64,
    /// Delay of a slowed write, in microseconds (default 1,000).
    pub stall_slowdown_delay_us: u64,
    /// Memory of frozen memtables from which writers wait for compaction, and from half of
    /// which they are slowed (default 64 MiB). Bounds memtable memory for small entries, where
    /// the WAL-byte thresholds admit millions of keys.
    pub stall_stop_memtable_bytes: u64,
    /// Range sharding only: a shard of width W is complete once it holds a key for each of
    /// its W big-endian u64 prefixes; it is then merged whole, once, into its final run
    /// (default true). Counting is exact: a shard that may be full (the distinct prefixes of
    /// its memtables and runs reach W) is merged whole and its one run counted. Stores that
    /// decide themselves when a shard is done turn this off and call `Engine::seal`.
    pub complete_when_full: bool,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            auto: true,
            policy: PolicyOptions::default(),
            stall_slowdown_bytes: DEFAULT_STALL_SLOWDOWN_BYTES,
            stall_stop_bytes: DEFAULT_STALL_STOP_BYTES,
            stall_slowdown_delay_us: DEFAULT_STALL_SLOWDOWN_DELAY_US,
            stall_stop_memtable_bytes: DEFAULT_STALL_STOP_MEMTABLE_BYTES,
            complete_when_full: true,
        }
    }
}

/// Options of an engine.
#[derive(Clone)]
pub struct Options {
    /// Create the directory if it does not exist (default: false).
    pub create_if_missing: bool,
    /// The sharding rule; must match the one the database was created with.
    pub sharding: Sharding,
    /// Durability of writes that do not say otherwise.
    pub durability: Durability,
    /// Index kind for new runs. Runs keep the kind they were written with; a changed policy
    /// applies from the next compaction.
    pub index_policy: IndexPolicy,
    /// Page size and filter false-positive rate, for index kinds that use them.
    pub index_params: IndexParams,
    /// Automatic compaction and write stalls.
    pub compaction: CompactionOptions,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// Most run files held open at once (default [`DEFAULT_MAX_OPEN_FILES`]), and never more
    /// than the soft `ulimit -n` divided by
    /// [`RLIMIT_NOFILE_DIVISOR`](crate::RLIMIT_NOFILE_DIVISOR); others are opened on
    /// demand and the least recently used closed. Each shard's WAL adds one descriptor while
    /// its active segment holds unsynced data.
    pub max_open_files: usize,
    /// The file system everything is read from and written to (default [`StdFs`], the host's).
    /// Tests put a simulated one here.
    pub fs: Arc<dyn FileSystem>,
    /// Key-value separation (as RocksDB's `min_blob_size`): values of at least this many
    /// bytes stay in the WAL segment they were written to, which becomes a value file, and
    /// runs hold a 32-byte pointer to them; smaller values are copied into runs. Default
    /// [`DEFAULT_VALUE_LOG_THRESHOLD_BYTES`] (1 KiB); `u64::MAX` keeps every value inline.
    pub value_log_threshold_bytes: u64,
    /// A value file whose garbage (bytes no live run points at) passes this share of its
    /// bytes is collected: the next compaction that merges every run copies its live values
    /// into the run and the file is deleted. In `(0, 1]`; 1 never collects. Default
    /// [`DEFAULT_VALUE_LOG_GC_RATIO`] (0.5).
    pub value_log_gc_ratio: f64,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("create_if_missing", &self.create_if_missing)
            .field("sharding", &self.sharding)
            .field("durability", &self.durability)
            .field("index_policy", &self.index_policy)
            .field("index_params", &self.index_params)
            .field("compaction", &self.compaction)
            .field("max_open_files", &self.max_open_files)
            .field("fs", &self.fs)
            .field("value_log_threshold_bytes", &self.value_log_threshold_bytes)
            .field("value_log_gc_ratio", &self.value_log_gc_ratio)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Defaults: no creation, one shard, buffered durability, in-memory indexes for runs under
    /// 20 MiB and disk indexes above ([`IndexPolicy::AUTO`]), 16 KiB pages, 1% filter false
    /// positives, no events.
    pub fn new() -> Options {
        Options {
            create_if_missing: false,
            sharding: Sharding::Single,
            durability: Durability::Buffered,
            index_policy: IndexPolicy::AUTO,
            index_params: IndexParams::default(),
            compaction: CompactionOptions::default(),
            events: Arc::new(NoEvents),
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            fs: StdFs::shared(),
            value_log_threshold_bytes: DEFAULT_VALUE_LOG_THRESHOLD_BYTES,
            value_log_gc_ratio: DEFAULT_VALUE_LOG_GC_RATIO,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}
