//! A blockchain history node's store on strata: blocks by number, one value per column
//! (header, body, receipts, or any column the caller adds), as the node received them, with
//! persistent presence, missing ranges, sealed shards and rollback. [`era1`] imports
//! Ethereum's standard history archives.
//!
//! ```
//! use strata_history::{Block, HistoryOptions, HistoryStore, BODY, HEADER};
//! let dir = tempfile::tempdir()?;
//! let mut options = HistoryOptions::default();
//! options.shard_blocks = 4;
//! let store = HistoryStore::open(dir.path(), options)?;
//! store.put_block(2, &[(HEADER, b"header 2"), (BODY, b"body 2")])?;
//! assert!(store.has(2) && !store.has(1));
//! assert_eq!(store.get(2, HEADER)?, Some(b"header 2".to_vec()));
//! let missing: Vec<_> = store.missing(0..4).collect();
//! assert_eq!(missing, vec![0..2, 3..4]);
//! assert!(store.seal(0).is_err()); // blocks 0, 1 and 3 are missing
//! store.rollback_to(1)?;
//! assert!(!store.has(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! One strata database with range sharding: shard `s` holds blocks `s × W .. (s + 1) × W`
//! (W = [`HistoryOptions::shard_blocks`], fixed when the store is created). Keys are 9 bytes:
//!
//! | key | value |
//! | --- | --- |
//! | block number (u64 BE), column id (u8, 1 to 255) | the column's bytes |
//! | first block of the shard (u64 BE), `0x00` | the shard's presence record ([`presence`]) |
//!
//! Every write of blocks rewrites, in the same batch, the presence record of each shard it
//! touches; a batch is atomic within a shard, so after any crash presence says exactly which
//! blocks `get` finds. A rollback in progress is recorded in the file `HISTORY-ROLLBACK` of the
//! database directory (a frame holding the target block) and finished by the next open.
//!
//! # Memory
//!
//! Presence of every shard is held in memory: ⌈W / 8⌉ bytes plus 9 bytes per column per shard
//! (1.25 KiB per 10,000 blocks: 2.5 MiB for 20 million blocks). A write holds its batch; a
//! rollback holds at most [`ROLLBACK_BATCH_KEYS`] keys; `missing` holds one range. The engine's
//! own bounds apply beneath.

pub mod era1;
pub mod presence;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use strata::{Db, Durability, OpRef, Options, ShardId, ShardSeal, Sharding};

use presence::Presence;

/// A column of a block: 1 to 255 (0 is the presence record's).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Column(pub u8);

/// The block header, as received (for Ethereum: the header's RLP).
pub const HEADER: Column = Column(1);
/// The block body (for Ethereum: RLP `[transactions, uncles]`).
pub const BODY: Column = Column(2);
/// The block's receipts (for Ethereum: the RLP list of receipts).
pub const RECEIPTS: Column = Column(3);

impl Column {
    /// The name of a well-known column, or its number.
    pub fn name(self) -> String {
        match self {
            HEADER => "header".into(),
            BODY => "body".into(),
            RECEIPTS => "receipts".into(),
            Column(n) => n.to_string(),
        }
    }

    /// Parses `header`, `body`, `receipts` or a column number from 1 to 255.
    pub fn parse(s: &str) -> Option<Column> {
        match s {
            "header" => Some(HEADER),
            "body" => Some(BODY),
            "receipts" => Some(RECEIPTS),
            n => n.parse::<u8>().ok().filter(|&n| n != 0).map(Column),
        }
    }
}

/// Blocks per shard unless the options say otherwise.
pub const DEFAULT_SHARD_BLOCKS: u64 = 10_000;
/// Most blocks per shard: presence of a shard is ⌈W / 8⌉ bytes, rewritten with every batch
/// that touches the shard, so W stays small enough for that to be cheap (128 KiB).
pub const MAX_SHARD_BLOCKS: u64 = 1 << 20;
/// The highest block number a store takes (2^63 − 1): far above any chain's, and low enough
/// that the end of its shard is a number too.
pub const MAX_BLOCK_NUMBER: u64 = i64::MAX as u64;
/// Keys deleted per batch by a rollback (9 bytes each).
pub const ROLLBACK_BATCH_KEYS: usize = 4096;
/// Name of the file that records a rollback in progress.
pub const ROLLBACK_FILE: &str = "HISTORY-ROLLBACK";
const ROLLBACK_MAGIC: [u8; 8] = *b"STRHROLL";
const ROLLBACK_VERSION: u32 = 1;
const ROLLBACK_BYTES: usize = 28;

/// The layout of the rollback record (magic, version, target block u64, checksum), for the
/// check that `docs/FORMAT.md` agrees.
pub const ROLLBACK_LAYOUT: strata_engine::format::Layout = strata_engine::format::Layout {
    name: "history.rollback",
    offsets: &[0, 8, 12, 20],
    bytes: ROLLBACK_BYTES,
    magics: &[ROLLBACK_MAGIC],
    version: Some(ROLLBACK_VERSION),
};

/// Options of a history store.
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    /// Blocks per shard, fixed when the store is created (default [`DEFAULT_SHARD_BLOCKS`],
    /// at most [`MAX_SHARD_BLOCKS`]); an existing store keeps its own.
    pub shard_blocks: u64,
    /// When a write is durable (default: buffered; `sync` makes it durable).
    pub durability: Durability,
    /// Create the store if the directory holds none (default true).
    pub create_if_missing: bool,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            shard_blocks: DEFAULT_SHARD_BLOCKS,
            durability: Durability::Buffered,
            create_if_missing: true,
        }
    }
}

/// An error of the history store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] strata::Error),
    /// A presence record does not decode.
    #[error("{}: presence record of shard {shard}, offset {offset}: {detail}", path.display())]
    BadPresence {
        /// The database.
        path: PathBuf,
        /// The shard.
        shard: u64,
        /// Offset in the record.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// A shard with missing blocks cannot be sealed.
    #[error("shard {shard} cannot be sealed: block {first_missing} is missing ({missing} blocks of {width} are missing)")]
    Gap {
        /// The shard.
        shard: u64,
        /// Its first missing block.
        first_missing: u64,
        /// Missing blocks.
        missing: u64,
        /// Blocks per shard.
        width: u64,
    },
    /// A write into a sealed shard.
    #[error("block {number} is in sealed shard {shard}; roll back below it first")]
    Sealed {
        /// The block.
        number: u64,
        /// Its shard.
        shard: u64,
    },
    /// A call that breaks a rule of the API.
    #[error("{0}")]
    Invalid(String),
    /// An era1 file is malformed (names the file and offset).
    #[error("{}: offset {offset}: {detail}", path.display())]
    Era1 {
        /// The file.
        path: PathBuf,
        /// Offset of the record at fault.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Reading an input file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A result of the history store.
pub type Result<T> = std::result::Result<T, Error>;

/// One block to write: its number and its columns.
#[derive(Copy, Clone, Debug)]
pub struct Block<'a> {
    /// Block number.
    pub number: u64,
    /// Columns and their bytes; columns not given keep what they held.
    pub columns: &'a [(Column, &'a [u8])],
}

/// What [`reconcile`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Shards whose presence record was rewritten (or written, where it was missing).
    pub shards: u64,
    /// Blocks the old records called present that lack a column: now missing, so `missing`
    /// lists them and an import writes them again.
    pub cleared: Vec<u64>,
}

/// Makes every shard's presence record agree with the blocks the shard holds, after `strata
/// repair` (which salvages records one by one, so it may drop one column of a block, or a
/// presence record, and does not know the history store's layout). A block is present when it
/// holds every column that any block of its shard holds; byte totals are recounted. Reads
/// every value of the store once; memory grows with the blocks of one shard (at most
/// [`MAX_SHARD_BLOCKS`]). Sealed shards are left as they are (their seal covers them). The
/// store must not be open. Returns `None`, changing nothing, for a database that holds no
/// presence record at all (not a history store).
pub fn reconcile(dir: &Path) -> Result<Option<Reconciled>> {
    let mut o = Options::new();
    o.compaction.auto = false;
    let db = Db::open_existing_with(dir, o)?;
    let width = match db.sharding() {
        Sharding::Range { width } if (1..=MAX_SHARD_BLOCKS).contains(&width) => width,
        _ => {
            db.close()?;
            return Ok(None);
        }
    };
    let is_history = db.shards().iter().any(|s| {
        db.get(&key(s.0 * width, 0))
            .ok()
            .flatten()
            .is_some_and(|b| Presence::decode(&b, width, dir, s.0).is_ok())
    });
    if !is_history {
        db.close()?;
        return Ok(None);
    }
    let mut report = Reconciled::default();
    for shard in db.shards() {
        if db.is_sealed(shard) {
            continue;
        }
        let start = shard.0 * width;
        let end = start.saturating_add(width);
        let mut blocks: BTreeMap<u64, Vec<(u8, usize)>> = BTreeMap::new();
        let mut all_columns = std::collections::BTreeSet::new();
        for item in db.range(key(start, 1)..key(end, 0))? {
            let (k, v) = item?;
            let (Ok(number), Some(&column)) = (
                k.get(..8)
                    .unwrap_or_default()
                    .try_into()
                    .map(u64::from_be_bytes),
                k.get(8),
            ) else {
                continue;
            };
            if k.len() != 9 || column == 0 {
                continue;
            }
            all_columns.insert(column);
            blocks.entry(number).or_default().push((column, v.len()));
        }
        let mut presence = Presence::new(width);
        for (number, columns) in &blocks {
            if columns.len() == all_columns.len() {
                presence.set(number - start, true);
                for (column, len) in columns {
                    presence.add_bytes(*column, *len as i64);
                }
            }
        }
        let record_key = key(start, 0);
        let old = db.get(&record_key)?;
        let old_presence = old
            .as_deref()
            .and_then(|b| Presence::decode(b, width, dir, shard.0).ok());
        if old.as_deref() == Some(presence.encode().as_slice()) {
            continue;
        }
        if let Some(old) = &old_presence {
            report.cleared.extend(
                (0..width)
                    .filter(|&i| old.get(i) && !presence.get(i))
                    .map(|i| start + i),
            );
        }
        if presence.count() == 0 && blocks.is_empty() {
            db.delete(&record_key)?;
        } else {
            db.put(&record_key, &presence.encode())?;
        }
        report.shards += 1;
    }
    db.close()?;
    Ok(Some(report))
}

/// Figures of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Blocks present.
    pub blocks: u64,
    /// Bytes stored per column.
    pub column_bytes: BTreeMap<Column, u64>,
    /// Shards that hold any block.
    pub shards: u64,
    /// Sealed shards.
    pub sealed_shards: Vec<u64>,
    /// Blocks per shard.
    pub shard_blocks: u64,
}

/// A history store. All methods take `&self`; writes, seals and rollbacks are serialized.
#[derive(Debug)]
pub struct HistoryStore {
    db: Db,
    width: u64,
    /// Presence of every shard that holds or held a block; held across each write so that the
    /// presence record written is the union of all writes.
    presence: Mutex<BTreeMap<u64, Presence>>,
}

fn key(number: u64, column: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&number.to_be_bytes());
    k[8] = column;
    k
}

impl HistoryStore {
    /// Opens (or creates) the store in `dir`, loads every shard's presence and finishes a
    /// rollback that a crash interrupted.
    pub fn open(dir: impl AsRef<Path>, options: HistoryOptions) -> Result<HistoryStore> {
        let dir = dir.as_ref();
        if !(1..=MAX_SHARD_BLOCKS).contains(&options.shard_blocks) {
            return Err(Error::Invalid(format!(
                "shard_blocks must be 1 to {MAX_SHARD_BLOCKS}, got {}",
                options.shard_blocks
            )));
        }
        let mut o = Options::new();
        o.durability = options.durability;
        o.compaction.complete_when_full = false;
        let db = if dir.join(strata_engine::format::DB_FILE).exists() {
            Db::open_existing_with(dir, o)?
        } else {
            o.create_if_missing = options.create_if_missing;
            o.sharding = Sharding::Range {
                width: options.shard_blocks,
            };
            Db::open(dir, o)?
        };
        let width = match db.sharding() {
            Sharding::Range { width } if width <= MAX_SHARD_BLOCKS => width,
            other => {
                return Err(Error::Invalid(format!(
                    "{} is not a history store: it uses {other} (a history store uses range \
                     shards of 1 to {MAX_SHARD_BLOCKS} blocks)",
                    dir.display(),
                )))
            }
        };
        let mut presence = BTreeMap::new();
        for shard in db.shards() {
            let start = shard.0 * width;
            match db.get(&key(start, 0))? {
                Some(bytes) => {
                    presence.insert(shard.0, Presence::decode(&bytes, width, dir, shard.0)?);
                }
                None => {
                    // Every batch that writes a block writes its shard's presence record.
                    let end = key(start.saturating_add(width), 0);
                    if db
                        .range(key(start, 0)..end)
                        .map(|mut s| s.next().is_some())?
                    {
                        return Err(Error::Invalid(format!(
                            "{} is not a history store: shard {} holds keys but no presence \
                             record (after `strata repair`, which rebuilds presence records \
                             of a history store, this does not happen)",
                            dir.display(),
                            shard.0
                        )));
                    }
                }
            }
        }
        let store = HistoryStore {
            db,
            width,
            presence: Mutex::new(presence),
        };
        if let Some(target) = read_rollback(dir)? {
            let mut presence = store.presence.lock();
            store.rollback_locked(&mut presence, target)?;
        }
        Ok(store)
    }

    /// Blocks per shard.
    pub fn shard_blocks(&self) -> u64 {
        self.width
    }

    /// The shard block `number` belongs to.
    pub fn shard_of(&self, number: u64) -> u64 {
        number / self.width
    }

    /// The database beneath (for `verify`, stats and tools).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Writes one block (see [`HistoryStore::put_blocks`]).
    pub fn put_block(&self, number: u64, columns: &[(Column, &[u8])]) -> Result<()> {
        self.put_blocks(&[Block { number, columns }])
    }

    /// Writes blocks and marks them present, atomically per shard, with the store's
    /// durability. A block already present has the columns given replaced. Refused, before
    /// anything is written: a block in a sealed shard ([`Error::Sealed`]), a block twice in one
    /// call, column 0, or a batch over the engine's limits (`MAX_BATCH_OPS` operations).
    pub fn put_blocks(&self, blocks: &[Block<'_>]) -> Result<()> {
        let mut presence = self.presence.lock();
        let mut seen = std::collections::HashSet::with_capacity(blocks.len());
        for b in blocks {
            if !seen.insert(b.number) {
                return Err(Error::Invalid(format!(
                    "block {} appears twice in one batch",
                    b.number
                )));
            }
            if b.number > MAX_BLOCK_NUMBER {
                return Err(Error::Invalid(format!(
                    "block {} is above the highest block number a store takes, \
                     {MAX_BLOCK_NUMBER}",
                    b.number
                )));
            }
            if b.columns.iter().any(|(c, _)| c.0 == 0) {
                return Err(Error::Invalid("column 0 is reserved".into()));
            }
            let shard = self.shard_of(b.number);
            if self.db.is_sealed(ShardId(shard)) {
                return Err(Error::Sealed {
                    number: b.number,
                    shard,
                });
            }
        }
        let mut changed: BTreeMap<u64, Presence> = BTreeMap::new();
        let keys: Vec<[u8; 9]> = blocks
            .iter()
            .flat_map(|b| b.columns.iter().map(|(c, _)| key(b.number, c.0)))
            .collect();
        let mut ops: Vec<OpRef<'_>> = Vec::with_capacity(keys.len() + 4);
        let mut k = keys.iter();
        for b in blocks {
            let shard = self.shard_of(b.number);
            let p = changed.entry(shard).or_insert_with(|| {
                presence
                    .get(&shard)
                    .cloned()
                    .unwrap_or_else(|| Presence::new(self.width))
            });
            let offset = b.number % self.width;
            for &(column, value) in b.columns {
                if p.get(offset) {
                    // A block written again: its old bytes leave the column's total.
                    if let Some(old) = self.db.get(&key(b.number, column.0))? {
                        p.add_bytes(column.0, -(old.len() as i64));
                    }
                }
                p.add_bytes(column.0, value.len() as i64);
                ops.push(OpRef::put(k.next().expect("one key per column"), value));
            }
            p.set(offset, true);
        }
        let records: Vec<([u8; 9], Vec<u8>)> = changed
            .iter()
            .map(|(&shard, p)| (key(shard * self.width, 0), p.encode()))
            .collect();
        ops.extend(records.iter().map(|(k, v)| OpRef::put(k, v)));
        match self.db.write_ops(&ops) {
            Ok(()) => {
                presence.extend(changed);
                Ok(())
            }
            Err(e) => {
                // Some shards' parts may have been written: reload what is on record.
                self.reload(&mut presence, changed.keys().copied());
                Err(e.into())
            }
        }
    }

    fn reload(&self, presence: &mut BTreeMap<u64, Presence>, shards: impl Iterator<Item = u64>) {
        for shard in shards {
            if let Ok(Some(bytes)) = self.db.get(&key(shard * self.width, 0)) {
                if let Ok(p) = Presence::decode(&bytes, self.width, self.db.path(), shard) {
                    presence.insert(shard, p);
                }
            }
        }
    }

    /// The bytes of `column` of block `number`, if stored.
    pub fn get(&self, number: u64, column: Column) -> Result<Option<Vec<u8>>> {
        if column.0 == 0 {
            return Err(Error::Invalid("column 0 is reserved".into()));
        }
        Ok(self.db.get(&key(number, column.0))?)
    }

    /// Whether block `number` is present (from presence alone: no value is read).
    pub fn has(&self, number: u64) -> bool {
        let presence = self.presence.lock();
        presence
            .get(&self.shard_of(number))
            .is_some_and(|p| p.get(number % self.width))
    }

    /// The highest block present (from presence alone).
    pub fn highest(&self) -> Option<u64> {
        let presence = self.presence.lock();
        presence
            .iter()
            .rev()
            .find_map(|(&shard, p)| p.last().map(|i| shard * self.width + i))
    }

    /// The ranges of blocks within `range` that are not present, in order. Reads presence
    /// only, one shard at a time; holds one range.
    pub fn missing(&self, range: Range<u64>) -> Missing<'_> {
        Missing {
            store: self,
            next: range.start,
            end: range.end,
        }
    }

    /// The first block at or after `from` (and before `end`) whose presence is `present`.
    fn next_with(&self, from: u64, end: u64, present: bool) -> Option<u64> {
        let presence = self.presence.lock();
        let mut at = from;
        while at < end {
            let shard = self.shard_of(at);
            let start = shard * self.width;
            let shard_end = start.saturating_add(self.width).min(end);
            let found = match presence.get(&shard) {
                Some(p) => p
                    .next(at - start, shard_end - start, present)
                    .map(|i| start + i),
                None if present => None,
                None => Some(at),
            };
            if found.is_some() {
                return found;
            }
            if !present {
                // An empty gap in the map: skip to the next shard that exists.
                at = shard_end;
            } else {
                at = match presence.range(shard + 1..).next() {
                    Some((&next, _)) => next.saturating_mul(self.width).max(shard_end),
                    None => end,
                };
            }
        }
        None
    }

    /// Seals shard `shard` once every one of its blocks is present: compacts it whole into
    /// its final run and records a SHA-256 digest of its contents in its manifest (checked by
    /// `strata verify`); writes into it are refused until a rollback reaches into it. A shard
    /// with a missing block is refused with [`Error::Gap`].
    pub fn seal(&self, shard: u64) -> Result<ShardSeal> {
        let presence = self.presence.lock();
        let p = presence.get(&shard);
        if !p.is_some_and(|p| p.full()) {
            let start = shard * self.width;
            let first = p.map_or(Some(0), |p| p.next(0, self.width, false));
            return Err(Error::Gap {
                shard,
                first_missing: start + first.unwrap_or(0),
                missing: self.width - p.map_or(0, |p| p.count()),
                width: self.width,
            });
        }
        Ok(self.db.seal(ShardId(shard))?)
    }

    /// Seals every shard whose blocks are all present and that is not sealed yet (for example
    /// after a crash between a write and a seal); returns the shards sealed.
    pub fn seal_full(&self) -> Result<Vec<u64>> {
        let full: Vec<u64> = {
            let presence = self.presence.lock();
            presence
                .iter()
                .filter(|(_, p)| p.full())
                .map(|(&s, _)| s)
                .collect()
        };
        let mut sealed = Vec::new();
        for shard in full {
            if !self.is_sealed(shard) {
                self.seal(shard)?;
                sealed.push(shard);
            }
        }
        Ok(sealed)
    }

    /// Whether every block of shard `shard` is present.
    pub fn shard_is_full(&self, shard: u64) -> bool {
        self.presence.lock().get(&shard).is_some_and(|p| p.full())
    }

    /// Whether shard `shard` is sealed.
    pub fn is_sealed(&self, shard: u64) -> bool {
        self.db.is_sealed(ShardId(shard))
    }

    /// Removes every block above `number`, atomically and durably: the rollback is recorded in
    /// [`ROLLBACK_FILE`] (synced) before anything is deleted, and a crash part-way is finished
    /// by the next open. Sealed shards it reaches into are unsealed. Returns once the deletes
    /// are synced and the record removed.
    pub fn rollback_to(&self, number: u64) -> Result<()> {
        let mut presence = self.presence.lock();
        write_rollback(self.db.path(), number)?;
        self.rollback_locked(&mut presence, number)
    }

    fn rollback_locked(&self, presence: &mut BTreeMap<u64, Presence>, target: u64) -> Result<()> {
        let Some(first) = target.checked_add(1) else {
            return finish_rollback(self.db.path());
        };
        let shards: Vec<u64> = self
            .db
            .shards()
            .into_iter()
            .map(|s| s.0)
            .filter(|&s| s >= self.shard_of(first))
            .rev()
            .collect();
        for shard in shards {
            self.db.unseal(ShardId(shard))?;
            let start = shard * self.width;
            self.truncate_shard(presence, shard, first.max(start))?;
            // Folds the deletes into the shard's run and empties its WAL, so that a deep
            // rollback leaves no open WAL file per shard behind.
            self.db.compact(ShardId(shard))?;
        }
        self.db.sync()?;
        finish_rollback(self.db.path())
    }

    /// Deletes every block of `shard` from `from` on, in batches of at most
    /// [`ROLLBACK_BATCH_KEYS`] keys, each with the shard's presence record.
    fn truncate_shard(
        &self,
        presence: &mut BTreeMap<u64, Presence>,
        shard: u64,
        from: u64,
    ) -> Result<()> {
        let start = shard * self.width;
        let end = key(start.saturating_add(self.width), 0);
        let mut p = presence
            .get(&shard)
            .cloned()
            .unwrap_or_else(|| Presence::new(self.width));
        for i in from - start..self.width {
            p.set(i, false);
        }
        // Deleted keys leave the scan, so each batch scans from `from` again.
        let lo = key(from, 1).to_vec();
        loop {
            let mut batch: Vec<(Vec<u8>, usize)> = Vec::new();
            for item in self.db.range(lo.clone()..end.to_vec())? {
                let (k, v) = item?;
                batch.push((k, v.len()));
                if batch.len() == ROLLBACK_BATCH_KEYS {
                    break;
                }
            }
            for (k, len) in &batch {
                if let Some(&c) = k.get(8) {
                    p.add_bytes(c, -(*len as i64));
                }
            }
            let record = p.encode();
            let rkey = key(start, 0);
            let mut ops: Vec<OpRef<'_>> = batch.iter().map(|(k, _)| OpRef::delete(k)).collect();
            ops.push(OpRef::put(&rkey, &record));
            self.db.write_ops(&ops)?;
            if batch.len() < ROLLBACK_BATCH_KEYS {
                break;
            }
        }
        presence.insert(shard, p);
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<()> {
        Ok(self.db.sync()?)
    }

    /// Blocks present, bytes per column, and sealed shards (from presence and manifests; no
    /// value is read).
    pub fn stats(&self) -> HistoryStats {
        let presence = self.presence.lock();
        let mut s = HistoryStats {
            shard_blocks: self.width,
            ..HistoryStats::default()
        };
        for (&shard, p) in presence.iter() {
            s.blocks += p.count();
            if p.count() > 0 {
                s.shards += 1;
            }
            for (&c, &bytes) in &p.columns {
                *s.column_bytes.entry(Column(c)).or_insert(0) += bytes;
            }
            if self.db.is_sealed(ShardId(shard)) {
                s.sealed_shards.push(shard);
            }
        }
        s
    }

    /// Syncs and closes.
    pub fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }
}

/// Missing block ranges, from [`HistoryStore::missing`].
#[derive(Debug)]
pub struct Missing<'a> {
    store: &'a HistoryStore,
    next: u64,
    end: u64,
}

impl Iterator for Missing<'_> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        let start = self.store.next_with(self.next, self.end, false)?;
        let stop = self
            .store
            .next_with(start, self.end, true)
            .unwrap_or(self.end);
        self.next = stop;
        Some(start..stop)
    }
}

fn rollback_path(dir: &Path) -> PathBuf {
    dir.join(ROLLBACK_FILE)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Records a rollback to `target`: written to a temporary file, synced, renamed into place,
/// directory synced.
fn write_rollback(dir: &Path, target: u64) -> Result<()> {
    let mut frame = ROLLBACK_MAGIC.to_vec();
    frame.extend_from_slice(&ROLLBACK_VERSION.to_le_bytes());
    frame.extend_from_slice(&target.to_le_bytes());
    strata_engine::format::seal_frame(&mut frame);
    let path = rollback_path(dir);
    let tmp = dir.join(format!("{ROLLBACK_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&frame)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(io("recording a rollback in", &path))
}

/// The target of a rollback in progress, if one is recorded. A temporary file (a crash before
/// the record was complete: nothing was deleted yet) is removed.
fn read_rollback(dir: &Path) -> Result<Option<u64>> {
    let tmp = dir.join(format!("{ROLLBACK_FILE}.tmp"));
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(io("removing", &tmp))?;
    }
    let path = rollback_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let spec = strata_engine::format::FrameSpec {
        what: "rollback record",
        magic: ROLLBACK_MAGIC,
        magic_at: 0,
        version: ROLLBACK_VERSION,
        oldest_version: ROLLBACK_VERSION,
        min_bytes: ROLLBACK_BYTES,
    };
    strata_engine::format::check_frame(&bytes, &path, 0, &spec)?;
    if bytes.len() != ROLLBACK_BYTES {
        return Err(Error::Invalid(format!(
            "{}: {} bytes, a rollback record has {ROLLBACK_BYTES}",
            path.display(),
            bytes.len()
        )));
    }
    Ok(Some(u64::from_le_bytes(
        bytes[12..20].try_into().expect("8 bytes"),
    )))
}

fn finish_rollback(dir: &Path) -> Result<()> {
    let path = rollback_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", &path)(e)),
    }
}
