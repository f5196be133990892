//! Every limit of the engine and of the parts that plug into it (WAL, indexes), in one place:
//! each with its unit in its name and the reason for its value. The relations between limits
//! that the formats and the memory model rely on are asserted at compile time at the end.
//!
//! Defaults of options (thresholds a user may change) are here too, named `DEFAULT_*`.

// ---- What a write may carry -------------------------------------------------------------------

/// Largest key accepted, in bytes. Keys are compared with `memcmp`; the run and WAL formats store
/// the key length as a `u16`, and every index keeps whole keys, so keys stay small.
pub const MAX_KEY_BYTES: usize = 4096;

/// Largest value accepted, in bytes (64 MiB). Values are streamed in chunks everywhere except
/// when returned whole to a caller, so this bounds the one allocation a `get` makes.
pub const MAX_VALUE_BYTES: usize = 64 << 20;

/// Most operations in one batch. Recovery holds the keys of one uncommitted batch in memory, so
/// this bounds that buffer.
pub const MAX_BATCH_OPS: usize = 65_536;

/// Largest number of hash shards (each shard holds a directory, a WAL and a memtable).
pub const MAX_HASH_SHARDS: u32 = 65_536;

// ---- Buffers: the fixed part of the memory model ----------------------------------------------

/// Bytes of a value copied at a time by compaction and streaming reads.
pub const COPY_CHUNK_BYTES: usize = 64 << 10;

/// Bytes a run writer buffers before writing to its file.
pub const RUN_WRITE_BUFFER_BYTES: usize = 64 << 10;

/// Bytes of the read buffer of each run a compaction streams.
pub const RUN_READ_BUFFER_BYTES: usize = 64 << 10;

/// Alignment, in bytes, of the run ranges released from the page tables (the kernel's
/// fault-around window for file maps is 64 KiB).
pub const FAULT_AROUND_BYTES: u64 = 64 << 10;

/// A scan releases the run bytes behind it from the page tables every this many bytes, so it
/// keeps about one window of each run resident.
pub const SCAN_RELEASE_WINDOW_BYTES: u64 = 1 << 20;

/// Memtable entries a cursor copies out under the memtable's lock at a time (scans and
/// compaction), so that writers are never blocked for long and a cursor holds a bounded chunk.
pub const MEMTABLE_CHUNK_ENTRIES: usize = 128;

/// Bytes of a WAL append buffer: records are gathered here and written with one call; a value
/// that does not fit is written straight from the caller's memory. Allocated per append and
/// freed after it.
pub const WAL_WRITE_BUFFER_BYTES: usize = 64 << 10;

/// Bytes read at a time by WAL recovery: a header and key usually fit; values are skipped.
pub const WAL_RECOVERY_WINDOW_BYTES: usize = 16 << 10;

// ---- Files ------------------------------------------------------------------------------------

/// Largest manifest payload, in bytes (a shard's manifest lists its runs: ~30 bytes each).
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Largest in-memory index file accepted, in bytes (4 GiB): the whole file is read into memory.
pub const MAX_INMEM_INDEX_FILE_BYTES: u64 = 4 << 30;

/// Most hash functions a stored disk-index filter may claim (a damaged count must not make a
/// lookup loop for long).
pub const MAX_FILTER_HASHES: u32 = 64;

// ---- Defaults of options ----------------------------------------------------------------------

/// Runs up to this size, in bytes, get an in-memory index under the automatic index policy;
/// larger ones a disk index (stellar-core's cutoff).
pub const AUTO_INDEX_CUTOFF_BYTES: u64 = 20 << 20;

/// Default size, in bytes of keys and values, at which a shard's active WAL rotates.
pub const DEFAULT_WAL_ROTATE_BYTES: u64 = 64 << 20;

/// Default entry count at which a shard's active WAL rotates (bounds one memtable's memory).
pub const DEFAULT_WAL_ROTATE_ENTRIES: u64 = 131_072;

/// Default size ratio between a run and the data merged into it.
pub const DEFAULT_GROWTH_FACTOR: u64 = 4;

/// Default WAL debt, in bytes, from which writes are slowed (four rotations).
pub const DEFAULT_STALL_SLOWDOWN_BYTES: u64 = 4 * DEFAULT_WAL_ROTATE_BYTES;

/// Default WAL debt, in bytes, from which writers wait for compaction (eight rotations).
pub const DEFAULT_STALL_STOP_BYTES: u64 = 8 * DEFAULT_WAL_ROTATE_BYTES;

/// Default number of run files held open at once (a common `ulimit -n` is 1024).
pub const DEFAULT_MAX_OPEN_FILES: usize = 512;

/// The run-file cache holds at most the process's soft descriptor limit (`ulimit -n`, read
/// at open) divided by this, whatever `max_open_files` asks: the rest is left to the WAL
/// segments of shards being written, the directories being synced and the embedding program.
pub const RLIMIT_NOFILE_DIVISOR: usize = 2;

/// Default delay of a slowed write, in microseconds.
pub const DEFAULT_STALL_SLOWDOWN_DELAY_US: u64 = 1_000;

/// Default memory of frozen memtables, in bytes, from which writers wait for compaction.
pub const DEFAULT_STALL_STOP_MEMTABLE_BYTES: u64 = 64 << 20;

/// Default smallest value, in bytes, kept in the value log (a value file) rather than copied
/// into runs.
pub const DEFAULT_VALUE_LOG_THRESHOLD_BYTES: u64 = 1 << 10;

/// Default share of a value file's bytes that may be garbage before it is collected.
pub const DEFAULT_VALUE_LOG_GC_RATIO: f64 = 0.5;

/// A point lookup reads the page its key may be on this many bytes at a time, as far as the
/// records it walks need (a page is 16 KiB by default).
pub const LOOKUP_READ_STEP_BYTES: u64 = 4 << 10;

/// Run records of at most this many bytes (header, key, value and checksum) are assembled in
/// memory and checksummed in one pass, when written and when read back by a compaction;
/// longer ones are streamed.
pub const RECORD_ASSEMBLY_BYTES: usize = 4 << 10;

/// Most bytes of frozen WAL segments one compaction maps whole: a segment whose values are
/// all copied into the run (small values) is read through a memory map instead of with one
/// read call per value, while the segments mapped so far fit in this; a compaction takes only
/// the oldest frozen segments that fit (at least one), and reads any other value per value.
pub const COMPACTION_SEGMENT_LOAD_BYTES: u64 = 32 << 20;

// ---- Relations the formats and the memory model rely on ----------------------------------------

// Key lengths are stored as u16, value lengths as u32, batch sizes fit the WAL's u32 counters.
const _: () = assert!(MAX_KEY_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_VALUE_BYTES <= u32::MAX as usize);
const _: () = assert!(MAX_BATCH_OPS <= u32::MAX as usize);
// Manifest payload lengths are stored as u32.
const _: () = assert!(MAX_MANIFEST_BYTES <= u32::MAX as usize);
// A chunk never exceeds a value, and a key fits one recovery window with its header.
const _: () = assert!(COPY_CHUNK_BYTES <= MAX_VALUE_BYTES);
const _: () = assert!(MAX_KEY_BYTES + 64 <= WAL_RECOVERY_WINDOW_BYTES);
// Release windows are whole fault-around windows.
const _: () = assert!(SCAN_RELEASE_WINDOW_BYTES.is_multiple_of(FAULT_AROUND_BYTES));
const _: () = assert!(SCAN_RELEASE_WINDOW_BYTES >= FAULT_AROUND_BYTES);
// Every run the automatic policy gives an in-memory index fits an in-memory index file.
const _: () = assert!(AUTO_INDEX_CUTOFF_BYTES < MAX_INMEM_INDEX_FILE_BYTES);
// Stalls slow down before they stop, and only after more than one rotation's worth of debt.
const _: () = assert!(DEFAULT_STALL_SLOWDOWN_BYTES < DEFAULT_STALL_STOP_BYTES);
const _: () = assert!(DEFAULT_WAL_ROTATE_BYTES < DEFAULT_STALL_SLOWDOWN_BYTES);
const _: () = assert!(DEFAULT_GROWTH_FACTOR >= 2);
// A memtable chunk is never empty.
const _: () = assert!(MEMTABLE_CHUNK_ENTRIES > 0);
