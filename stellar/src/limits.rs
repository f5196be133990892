//! Every limit of the Stellar code, with its unit and the reason for its value. (The storage
//! engine's own limits are in `strata-engine`'s `limits.rs`, re-exported by `strata`.)

/// The largest bucket record read or written, in bytes (a record mark can claim up to 2 GiB;
/// stellar-core's largest entries, contract code, are far below this).
pub const MAX_RECORD_BYTES: u32 = 16 << 20;

/// The deepest nesting of XDR values a record may have (nested `ScVal` vectors and maps).
pub const XDR_DEPTH_LIMIT: u32 = 500;

/// Bytes of the read buffer in front of a bucket file (and of the write buffer of a writer).
pub const READ_BUFFER_BYTES: usize = 64 << 10;

/// The largest history archive state file read, in bytes.
pub const MAX_HAS_BYTES: u64 = 1 << 20;

/// Bytes of keys and values a ledger-store import buffers before it writes a batch.
pub const IMPORT_BATCH_BYTES: usize = 1 << 20;

/// Keys deleted per write batch when a ledger store removes an old generation.
pub const DELETE_BATCH_KEYS: usize = 4096;

/// Slots of a bucket list (11 levels, curr and snap).
pub const MAX_SLOTS: usize = 22;

/// The most shadow buckets a merge takes: the merge into level 10 shadows with the curr and
/// snap of levels 0 to 8. Each open shadow costs a reader (about 100 KiB with its gzip window),
/// so more are refused rather than opened.
pub const MAX_SHADOWS: usize = 18;

/// Entries after which a ledger store's WAL rotates (the engine's default is 131,072): ledger
/// entries are small, and a memtable costs about 108 bytes per entry whatever its value size
/// (plus the key's length for keys over 46 bytes, as most ledger keys are), so this bounds the
/// active memtable near 13 MiB.
pub const STORE_WAL_ROTATE_ENTRIES: u64 = 65_536;

/// Bytes of frozen memtables at which a ledger store's writers wait for compaction (the
/// engine's default is 64 MiB): with [`STORE_WAL_ROTATE_ENTRIES`], an import of any size
/// stays under 64 MiB resident.
pub const STORE_STALL_STOP_MEMTABLE_BYTES: u64 = 16 << 20;

// A record is one strata value (the store keeps each record as one value), so it must fit one.
const _: () = assert!(MAX_RECORD_BYTES as usize <= strata::MAX_VALUE_BYTES);
// An import batch of small records stays within one strata batch's operation limit per record
// of at least 16 bytes, and holds at least one whole record's worth of buffer.
const _: () = assert!(IMPORT_BATCH_BYTES / 16 <= strata::MAX_BATCH_OPS);
const _: () = assert!(DELETE_BATCH_KEYS <= strata::MAX_BATCH_OPS);
const _: () = assert!(MAX_SLOTS == 2 * crate::archive::NUM_LEVELS);
const _: () = assert!(MAX_SHADOWS == 2 * (crate::archive::NUM_LEVELS - 2));
