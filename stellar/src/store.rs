//! Stellar ledger state on strata: a bucket list imported from a history archive, looked up by
//! `LedgerKey` and scanned by entry type with stellar-core's semantics.
//!
//! # Layout
//!
//! The store is one strata database. Buckets are stored **by content**: a bucket's records live
//! under its name (its SHA-256), once, however many checkpoints or slots name it.
//!
//! | key | value |
//! | --- | --- |
//! | `0x00` `"state"` | the current state ([`StoreState`], format below) |
//! | `0x02`, bucket name (32 bytes), encoded `LedgerKey` | the bucket record's original XDR bytes (a `BucketEntry`) |
//! | `0x03`, bucket name (32 bytes) | the bucket is whole: its record count (u64 LE) |
//! | `0x01`, generation (u64 BE), slot (u8), encoded `LedgerKey` | state version 1 only (read, never written): a record of one slot of one generation |
//!
//! A *slot* is a bucket's place in shadowing order, newest first: level 0 curr is slot 0,
//! level 0 snap slot 1, level 1 curr slot 2, and so on (22 slots); the state lists each slot's
//! bucket name. The encoded key is [`crate::key`]'s, whose byte order is `LedgerEntryIdCmp`,
//! so each bucket's keys are in bucket order, and one entry type is one contiguous range.
//!
//! The state value is: magic `SLST` (4 bytes), format version (u32 LE: 2, or 1 for stores
//! written before buckets were stored by content), generation (u64 LE, version 1 only; 0 in
//! version 2), checkpoint ledger (u32 LE), slot count (u8), then 32 bytes per slot: the
//! bucket's name (all zeros for the empty bucket).
//!
//! # Imports reuse what the store holds
//!
//! An import reads only the buckets whose whole-marker (`0x03`) the store lacks: it deletes
//! whatever an interrupted import left under that name, writes the records, then the marker.
//! When every bucket is whole it syncs and switches the state key in one synced write: readers
//! only ever see buckets the state names, so a failed or interrupted import leaves nothing
//! visible. Then every bucket the new state does not name (and every version-1 key) is deleted
//! and compacted away; after a failed import, every bucket the current state does not name is,
//! so a failure leaves no residue on disk. Importing the next checkpoint costs what changed.
//!
//! # Memory
//!
//! An import holds one bucket record and one write batch (at most [`IMPORT_BATCH_BYTES`]);
//! a lookup holds one record; a type scan holds one record per non-empty slot plus the
//! engine's scan buffers. None of it grows with the number of entries.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use crate::archive::Archive;
use crate::bucket::{BucketReader, EntryKind, EMPTY_BUCKET};
use crate::key::{encode_key, type_prefix};
use crate::stellar_xdr::{LedgerEntryType, LedgerKey};
use crate::{
    DELETE_BATCH_KEYS, IMPORT_BATCH_BYTES, MAX_SLOTS, STORE_STALL_STOP_MEMTABLE_BYTES,
    STORE_WAL_ROTATE_ENTRIES,
};

use strata::{Batch, Db, Durability, MergeSource, Merger, Options};

const STATE_KEY: &[u8] = b"\x00state";
/// Version-1 data keys: tag, generation, slot, encoded key.
const DATA_TAG: u8 = 0x01;
/// Bucket records: tag, bucket name, encoded key.
const BUCKET_TAG: u8 = 0x02;
/// Whole-bucket markers: tag, bucket name.
const WHOLE_TAG: u8 = 0x03;
const STATE_MAGIC: &[u8; 4] = b"SLST";
/// The state version this build writes (buckets by content).
const STATE_VERSION: u32 = 2;
/// The state version of stores written by generation (read only).
const GENERATION_STATE_VERSION: u32 = 1;
/// Bytes before the encoded `LedgerKey` in a version-1 data key: tag, generation, slot.
const DATA_KEY_HEADER: usize = 1 + 8 + 1;
/// Bytes before the encoded `LedgerKey` in a bucket record key: tag, bucket name.
const BUCKET_KEY_HEADER: usize = 1 + 32;

/// An error of the ledger store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bucket or archive file failed (names the file and offset).
    #[error(transparent)]
    Bucket(#[from] crate::Error),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] strata::Error),
    /// Nothing has been imported into the store yet (or the directory holds no store).
    #[error("{0}: no ledger state has been imported (no ledger store there)")]
    Empty(PathBuf),
    /// The store holds bytes that are not what this module writes.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// More buckets than a bucket list has.
    #[error("{0} buckets given, a bucket list has at most {MAX_SLOTS}")]
    TooManyBuckets(usize),
}

/// A result with this module's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The imported state the store serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    /// The layout version: 2 (buckets stored by content), or 1 (by generation; read only).
    pub version: u32,
    /// Version 1: the generation of the data keys (0 in version 2).
    pub generation: u64,
    /// The checkpoint ledger the bucket list is from.
    pub checkpoint: u32,
    /// Bucket names in shadowing order, newest first ([`EMPTY_BUCKET`] for empty ones).
    pub slots: Vec<[u8; 32]>,
}

impl StoreState {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(21 + 32 * self.slots.len());
        v.extend_from_slice(STATE_MAGIC);
        v.extend_from_slice(&self.version.to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&self.checkpoint.to_le_bytes());
        v.push(self.slots.len() as u8);
        for s in &self.slots {
            v.extend_from_slice(s);
        }
        v
    }

    fn decode(path: &Path, v: &[u8]) -> Result<StoreState> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if v.len() < 21 || &v[..4] != STATE_MAGIC {
            return Err(corrupt(format!(
                "the state key holds {} bytes that are not a ledger store state",
                v.len()
            )));
        }
        let version = u32::from_le_bytes(v[4..8].try_into().expect("4 bytes"));
        if version != STATE_VERSION && version != GENERATION_STATE_VERSION {
            return Err(corrupt(format!(
                "ledger store state version {version}, this build reads \
                 {GENERATION_STATE_VERSION} and {STATE_VERSION}"
            )));
        }
        let count = v[20] as usize;
        if count > MAX_SLOTS || v.len() != 21 + 32 * count {
            return Err(corrupt(format!(
                "ledger store state of {} bytes with {count} slots",
                v.len()
            )));
        }
        Ok(StoreState {
            version,
            generation: u64::from_le_bytes(v[8..16].try_into().expect("8 bytes")),
            checkpoint: u32::from_le_bytes(v[16..20].try_into().expect("4 bytes")),
            slots: v[21..]
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32 bytes"))
                .collect(),
        })
    }
}

impl StoreState {
    /// The prefix of every record key of slot `slot` (see the layout above): the bytes
    /// before the encoded `LedgerKey`.
    pub fn slot_prefix(&self, slot: usize) -> Vec<u8> {
        self.slot_records(slot).0
    }

    /// The key prefix of slot `slot`'s records, and its length.
    fn slot_records(&self, slot: usize) -> (Vec<u8>, usize) {
        if self.version == GENERATION_STATE_VERSION {
            (
                data_prefix(self.generation, Some(slot as u8)),
                DATA_KEY_HEADER,
            )
        } else {
            (bucket_prefix(&self.slots[slot]), BUCKET_KEY_HEADER)
        }
    }
}

/// The key prefix of a bucket's records: [`BUCKET_TAG`] and the bucket's name.
fn bucket_prefix(name: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(BUCKET_KEY_HEADER + 64);
    k.push(BUCKET_TAG);
    k.extend_from_slice(name);
    k
}

/// The key of a bucket's whole-marker.
fn whole_key(name: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(WHOLE_TAG);
    k.extend_from_slice(name);
    k
}

/// One bucket to import: its file (`None`: the empty bucket) and the SHA-256 it must have.
#[derive(Debug, Clone)]
pub struct BucketSource {
    /// The bucket file, plain or gzipped; `None` for the empty bucket.
    pub path: Option<PathBuf>,
    /// The SHA-256 the bucket must have (its name), checked as it is read.
    pub expected: Option<[u8; 32]>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The checkpoint ledger.
    pub checkpoint: u32,
    /// Non-empty buckets read and written (the store did not hold them).
    pub buckets: usize,
    /// Non-empty buckets the store already held whole: not read again.
    pub held: usize,
    /// Entries imported (METAENTRY excluded).
    pub entries: u64,
    /// Uncompressed bucket bytes read.
    pub bytes: u64,
    /// Non-empty buckets of the checkpoint's protocol-23 hot archive list (`hotArchiveBuckets`),
    /// which a ledger store does not import: it holds the live bucket list only.
    pub hot_archive_buckets: usize,
}

fn data_prefix(generation: u64, slot: Option<u8>) -> Vec<u8> {
    let mut k = Vec::with_capacity(DATA_KEY_HEADER + 64);
    k.push(DATA_TAG);
    k.extend_from_slice(&generation.to_be_bytes());
    if let Some(s) = slot {
        k.push(s);
    }
    k
}

/// The options [`LedgerStore::open`] uses: the engine's defaults, with memtables sized for
/// small ledger entries ([`STORE_WAL_ROTATE_ENTRIES`], [`STORE_STALL_STOP_MEMTABLE_BYTES`]).
pub fn store_options() -> Options {
    let mut options = Options::new();
    options.compaction.policy.wal_rotate_entries = STORE_WAL_ROTATE_ENTRIES;
    options.compaction.stall_stop_memtable_bytes = STORE_STALL_STOP_MEMTABLE_BYTES;
    options.index_policy = strata::IndexPolicy::Always(strata::DISK_KIND);
    options
}

/// A write batch that goes to the database (buffered) whenever it holds `max_ops` operations
/// or `max_bytes` bytes of keys and values: bounded memory for imports and deletions.
struct Writes<'a> {
    db: &'a Db,
    batch: Batch,
    bytes: usize,
    max_ops: usize,
    max_bytes: usize,
}

impl<'a> Writes<'a> {
    fn new(db: &'a Db, max_ops: usize, max_bytes: usize) -> Writes<'a> {
        Writes {
            db,
            batch: Batch::new(),
            bytes: 0,
            max_ops,
            max_bytes,
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.bytes += key.len() + value.len();
        self.batch.put(key, value);
        self.flush_if_full()
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.bytes += key.len();
        self.batch.delete(key);
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.len() >= self.max_ops || self.bytes >= self.max_bytes {
            self.db
                .write_batch_with(&self.batch, Durability::Buffered)?;
            self.batch = Batch::new();
            self.bytes = 0;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if !self.batch.is_empty() {
            self.db
                .write_batch_with(&self.batch, Durability::Buffered)?;
        }
        Ok(())
    }
}

/// A bucket list's ledger state in a strata database. See the [module documentation](self).
#[derive(Debug)]
pub struct LedgerStore {
    db: Db,
    dir: PathBuf,
    state: Option<StoreState>,
}

impl LedgerStore {
    /// Opens (creating if missing) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<LedgerStore> {
        let mut options = store_options();
        options.create_if_missing = true;
        Self::open_with(dir, options)
    }

    /// Opens the existing store in `dir` (an error, naming the directory, if there is none;
    /// an empty directory is left as it is, not made a database).
    pub fn open_existing(dir: impl AsRef<Path>) -> Result<LedgerStore> {
        let dir = dir.as_ref();
        if dir.is_dir() && !dir.join(strata::DB_FILE).exists() {
            return Err(Error::Empty(dir.to_path_buf()));
        }
        Self::open_with(dir, store_options())
    }

    /// Opens the store in `dir` with `options` (index policy, compaction, ...).
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<LedgerStore> {
        let dir = dir.as_ref().to_path_buf();
        let db = Db::open(&dir, options)?;
        let state = match db.get(STATE_KEY)? {
            Some(v) => Some(StoreState::decode(&dir, &v)?),
            None => None,
        };
        Ok(LedgerStore { db, dir, state })
    }

    /// The imported state, if any.
    pub fn state(&self) -> Option<&StoreState> {
        self.state.as_ref()
    }

    /// The underlying database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Closes the store.
    pub fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }

    /// Imports the bucket list of `checkpoint` (default: the archive's latest) from a history
    /// archive, replacing what the store held. Every bucket's SHA-256 is checked against its
    /// name.
    pub fn import_archive(
        &mut self,
        archive: &Archive,
        checkpoint: Option<u32>,
    ) -> Result<ImportReport> {
        let has = match checkpoint {
            Some(c) => archive.state(c)?,
            None => archive.latest()?,
        };
        let sources: Vec<BucketSource> = has
            .slots()
            .iter()
            .map(|h| BucketSource {
                path: (*h != EMPTY_BUCKET).then(|| archive.bucket_path(h)),
                expected: Some(*h),
            })
            .collect();
        let mut report = self.import_buckets(has.current_ledger, &sources)?;
        report.hot_archive_buckets = has
            .hot_archive
            .iter()
            .flat_map(|l| [l.curr, l.snap])
            .filter(|h| *h != EMPTY_BUCKET)
            .count();
        Ok(report)
    }

    /// Imports buckets given in shadowing order (newest first), replacing what the store held.
    /// Buckets the store already holds whole (by name) are not read again. On error nothing of
    /// the import is visible, the previous state is served unchanged, and the buckets the
    /// previous state does not name are removed again.
    pub fn import_buckets(
        &mut self,
        checkpoint: u32,
        buckets: &[BucketSource],
    ) -> Result<ImportReport> {
        if buckets.len() > MAX_SLOTS {
            return Err(Error::TooManyBuckets(buckets.len()));
        }
        let (report, slots) = match self.write_buckets(checkpoint, buckets) {
            Ok(r) => r,
            Err(e) => {
                // Best effort: what was written is invisible either way, and the next import
                // removes whatever is left. Removing and compacting now gives the space back
                // at once instead of leaving a failed import's bytes on disk.
                let keep = self
                    .state
                    .as_ref()
                    .map_or_else(Vec::new, |s| s.slots.clone());
                if self.remove_buckets_except(&keep).is_ok() {
                    let _ = self.db.compact_all();
                }
                return Err(e);
            }
        };
        self.db.sync()?;
        let state = StoreState {
            version: STATE_VERSION,
            generation: 0,
            checkpoint,
            slots,
        };
        let mut batch = Batch::new();
        batch.put(STATE_KEY, state.encode());
        self.db.write_batch_with(&batch, Durability::SyncPerBatch)?;
        let keep = state.slots.clone();
        self.state = Some(state);
        // The import is done: the state names the new buckets. Removing the others is
        // cleanup; if it fails (a full disk), the next import removes what is left.
        if self.remove_buckets_except(&keep).is_ok() {
            let _ = self.db.compact_all();
        }
        Ok(report)
    }

    /// Makes every bucket of `buckets` whole in the store (reading only those it lacks);
    /// returns the report and the slots' names.
    fn write_buckets(
        &self,
        checkpoint: u32,
        buckets: &[BucketSource],
    ) -> Result<(ImportReport, Vec<[u8; 32]>)> {
        let mut report = ImportReport {
            checkpoint,
            buckets: 0,
            held: 0,
            entries: 0,
            bytes: 0,
            hot_archive_buckets: 0,
        };
        let mut slots = Vec::with_capacity(buckets.len());
        for source in buckets {
            let Some(path) = &source.path else {
                slots.push(EMPTY_BUCKET);
                continue;
            };
            if let Some(name) = source.expected {
                if slots.contains(&name) || self.db.get(&whole_key(&name))?.is_some() {
                    report.held += 1;
                    slots.push(name);
                    continue;
                }
            }
            let (name, records, bytes) = self.write_bucket(path, source.expected)?;
            report.buckets += 1;
            report.entries += records;
            report.bytes += bytes;
            slots.push(name);
        }
        Ok((report, slots))
    }

    /// Reads one bucket file into the store under its name, then marks it whole. Returns its
    /// name, records and uncompressed bytes.
    fn write_bucket(
        &self,
        path: &Path,
        expected: Option<[u8; 32]>,
    ) -> Result<([u8; 32], u64, u64)> {
        let mut reader = BucketReader::open(path, expected)?;
        // Records are keyed by the name the bucket must have; without one (a bucket given
        // by path only) they go under a scratch name until the hash is known at the end.
        let scratch = [0xFF; 32];
        let name = expected.unwrap_or(scratch);
        // Whatever an interrupted import left under this name goes first.
        self.delete_range(&bucket_prefix(&name))?;
        let prefix = bucket_prefix(&name);
        let mut writes = Writes::new(&self.db, strata::MAX_BATCH_OPS, IMPORT_BATCH_BYTES);
        while let Some(record) = reader.next_record()? {
            let mut key = prefix.clone();
            key.extend_from_slice(record.key);
            writes.put(key, record.xdr.to_vec())?;
        }
        writes.finish()?;
        let (records, bytes) = (reader.records(), reader.offset());
        let found = reader.finish()?;
        if expected.is_none() {
            self.rename_bucket(&scratch, &found)?;
        }
        let mut batch = Batch::new();
        batch.put(whole_key(&found), records.to_le_bytes().to_vec());
        self.db.write_batch_with(&batch, Durability::Buffered)?;
        Ok((found, records, bytes))
    }

    /// Moves the records under bucket name `from` to `to` (for buckets imported without a
    /// known name; records are copied one batch at a time).
    fn rename_bucket(&self, from: &[u8; 32], to: &[u8; 32]) -> Result<()> {
        self.delete_range(&bucket_prefix(to))?;
        let from_prefix = bucket_prefix(from);
        let to_prefix = bucket_prefix(to);
        let mut writes = Writes::new(&self.db, DELETE_BATCH_KEYS, IMPORT_BATCH_BYTES);
        for item in self.db.prefix(&from_prefix)? {
            let (key, value) = item?;
            let mut moved = to_prefix.clone();
            moved.extend_from_slice(&key[BUCKET_KEY_HEADER..]);
            writes.put(moved, value)?;
            writes.delete(key)?;
        }
        writes.finish()
    }

    /// Deletes every bucket (records and marker) whose name is not in `keep`, and every
    /// version-1 key. Walks the bucket names by skipping from one name's range to the next,
    /// so kept buckets' records are not read.
    fn remove_buckets_except(&self, keep: &[[u8; 32]]) -> Result<()> {
        self.delete_range(&[DATA_TAG])?;
        for tag in [BUCKET_TAG, WHOLE_TAG] {
            let mut from = vec![tag];
            loop {
                let end = Bound::Excluded(vec![tag + 1]);
                let next = self
                    .db
                    .range((Bound::Included(from.clone()), end))?
                    .next()
                    .transpose()?;
                let Some((key, _)) = next else { break };
                let Some(name) = key.get(1..33) else {
                    // A key too short to name a bucket: not this module's; leave it.
                    from = key;
                    from.push(0);
                    continue;
                };
                let name: [u8; 32] = name.try_into().expect("32 bytes");
                let mut prefix = vec![tag];
                prefix.extend_from_slice(&name);
                if !keep.contains(&name) {
                    self.delete_range(&prefix)?;
                }
                match strata::prefix_successor(&prefix) {
                    Some(after) => from = after,
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn delete_range(&self, prefix: &[u8]) -> Result<()> {
        let end = strata::prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.delete_between(Bound::Included(prefix.to_vec()), end)
    }

    fn delete_between(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<()> {
        let mut writes = Writes::new(&self.db, DELETE_BATCH_KEYS, usize::MAX);
        for item in self.db.range((start, end))? {
            writes.delete(item?.0)?;
        }
        writes.finish()
    }

    fn current(&self) -> Result<&StoreState> {
        self.state
            .as_ref()
            .ok_or_else(|| Error::Empty(self.dir.clone()))
    }

    /// The ledger entry of `key` (its original XDR bytes), or `None` when no bucket holds the
    /// key or the newest bucket that does holds a DEADENTRY.
    pub fn get(&self, key: &LedgerKey) -> Result<Option<Vec<u8>>> {
        let mut encoded = Vec::with_capacity(64);
        encode_key(key, &mut encoded);
        self.get_encoded(&encoded)
    }

    /// [`get`](Self::get) for each key of a batch (sorted or not), in the batch's order.
    pub fn get_many(&self, keys: &[LedgerKey]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut encoded = Vec::with_capacity(64);
        keys.iter()
            .map(|k| {
                encoded.clear();
                encode_key(k, &mut encoded);
                self.get_encoded(&encoded)
            })
            .collect()
    }

    fn get_encoded(&self, encoded: &[u8]) -> Result<Option<Vec<u8>>> {
        let state = self.current()?;
        for (slot, name) in state.slots.iter().enumerate() {
            if *name == EMPTY_BUCKET {
                continue;
            }
            let (mut key, _) = state.slot_records(slot);
            key.extend_from_slice(encoded);
            if let Some(record) = self.db.get(&key)? {
                return match EntryKind::of_xdr(&record) {
                    Some(EntryKind::Dead) => Ok(None),
                    Some(_) => Ok(Some(record[4..].to_vec())),
                    None => Err(self.bad_record(&key)),
                };
            }
        }
        Ok(None)
    }

    fn bad_record(&self, key: &[u8]) -> Error {
        Error::Corrupt {
            path: self.dir.clone(),
            reason: format!(
                "the record under key 0x{} is not a LIVE, INIT or DEAD bucket entry",
                hex_string(key)
            ),
        }
    }

    /// Every live entry of one type, once each (the newest version; keys whose newest
    /// version is a DEADENTRY are skipped), in `LedgerEntryIdCmp` order: a k-way merge of the
    /// slots' ranges, holding one record per slot.
    pub fn scan_type(&self, ty: LedgerEntryType) -> Result<TypeScan> {
        let state = self.current()?;
        let mut sources = Vec::new();
        for (slot, name) in state.slots.iter().enumerate() {
            if *name == EMPTY_BUCKET {
                continue;
            }
            let (mut prefix, header) = state.slot_records(slot);
            prefix.extend_from_slice(&type_prefix(ty));
            sources.push(SlotSource {
                scan: self.db.prefix(&prefix)?,
                header,
                head: None,
            });
        }
        Ok(TypeScan {
            merge: Merger::new(sources),
            failed: false,
            dir: self.dir.clone(),
        })
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One slot's range in a type scan: a merge source whose key is the encoded `LedgerKey` (the
/// data key without its header).
struct SlotSource {
    scan: strata::Scan,
    /// Bytes of the data key before the encoded `LedgerKey`.
    header: usize,
    /// The current `(data key, bucket record)`.
    head: Option<(Vec<u8>, Vec<u8>)>,
}

impl MergeSource for SlotSource {
    fn advance(&mut self) -> strata::Result<bool> {
        self.head = self.scan.next().transpose()?;
        Ok(self.head.is_some())
    }

    fn key(&self) -> &[u8] {
        &self.head.as_ref().expect("positioned").0[self.header..]
    }
}

/// The iterator of [`LedgerStore::scan_type`]: `(encoded key, entry XDR bytes)` pairs.
pub struct TypeScan {
    /// The slots' ranges, newest first: the newest slot holding a key shadows the others.
    merge: Merger<SlotSource>,
    failed: bool,
    dir: PathBuf,
}

impl std::fmt::Debug for TypeScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeScan")
            .field("sources", &self.merge.sources().len())
            .finish_non_exhaustive()
    }
}

impl TypeScan {
    fn step(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let dir = &self.dir;
        // The resolve rule: a DEADENTRY hides the key; anything but LIVE, INIT or DEAD is damage.
        let resolved = self.merge.next_resolved(|key, slot| {
            let record = &slot.head.as_ref().expect("positioned").1;
            Ok(match EntryKind::of_xdr(record) {
                Some(EntryKind::Dead) => None,
                Some(_) => Some(Ok((key, record[4..].to_vec()))),
                None => Some(Err(Error::Corrupt {
                    path: dir.clone(),
                    reason: format!(
                        "the record of encoded key 0x{} is not a LIVE, INIT or DEAD bucket entry",
                        hex_string(&key)
                    ),
                })),
            })
        })?;
        resolved.transpose()
    }
}

impl Iterator for TypeScan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut failed = self.failed;
        let item = strata::fused_next(&mut failed, || self.step());
        self.failed = failed;
        item
    }
}

/// Synthetic bucket lists of TTL entries, for tests and benchmarks: a newer bucket that
/// shadows every tenth key of an older one (half of those deleted, half updated).
pub mod synthetic {
    use std::path::Path;

    use crate::bucket::{BucketWriter, EntryKind};
    use crate::stellar_xdr::{
        Hash, LedgerEntry, LedgerEntryData, LedgerEntryExt, LedgerKey, LedgerKeyTtl, Limits,
        TtlEntry, WriteXdr,
    };

    use super::{BucketSource, Result};

    /// The key hash of entry `i` (sorted by `i`).
    pub fn key_hash(i: u64) -> Hash {
        let mut h = [0u8; 32];
        h[24..].copy_from_slice(&i.to_be_bytes());
        Hash(h)
    }

    /// The XDR bytes of TTL entry `i`.
    pub fn ttl_entry(i: u64, live_until: u32) -> Vec<u8> {
        LedgerEntry {
            last_modified_ledger_seq: 1,
            data: LedgerEntryData::Ttl(TtlEntry {
                key_hash: key_hash(i),
                live_until_ledger_seq: live_until,
            }),
            ext: LedgerEntryExt::V0,
        }
        .to_xdr(Limits::none())
        .expect("a TTL entry encodes")
    }

    /// What the bucket list holds for entry `i`: `None` when the newer bucket deleted it.
    pub fn expected_live_until(i: u64) -> Option<u32> {
        match (i % 10, (i / 10) % 2) {
            (0, 0) => None,
            (0, _) => Some(i as u32 + 7),
            _ => Some(i as u32),
        }
    }

    /// Live entries among the first `n`.
    pub fn expected_live(n: u64) -> u64 {
        n - n.div_ceil(20)
    }

    /// Writes the two buckets of `n` entries into `dir` and returns them in shadowing order.
    pub fn write_buckets(dir: &Path, n: u64) -> Result<Vec<BucketSource>> {
        let newer = dir.join("synthetic-newer.xdr");
        let mut w = BucketWriter::create(&newer)?;
        for i in (0..n).step_by(10) {
            match expected_live_until(i) {
                None => {
                    let key = LedgerKey::Ttl(LedgerKeyTtl {
                        key_hash: key_hash(i),
                    })
                    .to_xdr(Limits::none())
                    .expect("a key encodes");
                    w.put_parts(&[&EntryKind::Dead.tag().to_be_bytes(), &key])?;
                }
                Some(v) => {
                    w.put_parts(&[&EntryKind::Live.tag().to_be_bytes(), &ttl_entry(i, v)])?
                }
            }
        }
        let newer_hash = w.finish()?.hash;
        let older = dir.join("synthetic-older.xdr");
        let mut w = BucketWriter::create(&older)?;
        for i in 0..n {
            w.put_parts(&[
                &EntryKind::Init.tag().to_be_bytes(),
                &ttl_entry(i, i as u32),
            ])?;
        }
        let older_hash = w.finish()?.hash;
        Ok(vec![
            BucketSource {
                path: Some(newer),
                expected: Some(newer_hash),
            },
            BucketSource {
                path: Some(older),
                expected: Some(older_hash),
            },
        ])
    }
}
