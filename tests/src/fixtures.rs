//! The format-v1 fixture databases under `tests/fixtures/v1/`: how they were made (by
//! `cargo run -p strata-tests --example make_fixtures`) and what they must answer. The writer
//! and the test share these definitions; the committed bytes are what the test reads.

use std::path::{Path, PathBuf};

use strata::{Db, IndexKind, Options, Sharding};

/// The directory of the committed fixtures.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1")
}

/// One fixture database.
#[derive(Copy, Clone, Debug)]
pub struct Fixture {
    /// Its folder under [`dir`].
    pub name: &'static str,
    /// Its sharding rule.
    pub sharding: Sharding,
    /// The index kind of every run.
    pub index: IndexKind,
    /// Keys `0..keys` (u64 big-endian) were written.
    pub keys: u64,
}

/// The key-value fixtures: one per index kind, each with runs and a live WAL.
pub const FIXTURES: [Fixture; 2] = [
    Fixture {
        name: "range-disk",
        sharding: Sharding::Range { width: 100 },
        index: strata::DISK_KIND,
        keys: 250,
    },
    Fixture {
        name: "single-inmem",
        sharding: Sharding::Single,
        index: strata::INMEM_KIND,
        keys: 120,
    },
];

/// The Stellar ledger store fixture: the synthetic bucket list of this many entries.
pub const STELLAR_ENTRIES: u64 = 200;
/// Its folder under [`dir`]: a store of state version 1 (records by generation and slot).
pub const STELLAR_NAME: &str = "stellar-store";
/// The same bucket list in a store of state version 2 (buckets by content).
pub const STELLAR_BY_CONTENT_NAME: &str = "stellar-store-by-content";

/// The key of block `i`.
pub fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// What key `i` holds after the writes: every seventh key deleted, every fifth rewritten
/// after the first compaction, the rest as first written.
pub fn expected(i: u64) -> Option<Vec<u8>> {
    if i % 7 == 3 {
        None
    } else if i.is_multiple_of(5) {
        Some(format!("rewritten {i} after compaction").into_bytes())
    } else {
        Some(
            format!("value {i} ")
                .repeat(1 + (i % 4) as usize)
                .into_bytes(),
        )
    }
}

/// Options to open fixture `f` (and to make it): small disk-index pages, so that its runs
/// have several; no background compaction, so that what is on disk stays as made.
pub fn options(f: &Fixture) -> Options {
    let mut o = Options::new();
    o.sharding = f.sharding;
    o.index_policy = strata::IndexPolicy::Always(f.index);
    o.index_params.page_size_exponent = 7;
    o.compaction.auto = false;
    o
}

/// Writes fixture `f` into the empty directory `dir`: first values of every key, compaction
/// (runs), rewrites and deletes compacted again on top (a second run per shard), then one more
/// batch left in the WAL.
pub fn make(f: &Fixture, dir: &Path) -> strata::Result<()> {
    let mut o = options(f);
    o.create_if_missing = true;
    let db = Db::open(dir, o)?;
    for i in 0..f.keys {
        db.put(
            &key(i),
            format!("value {i} ")
                .repeat(1 + (i % 4) as usize)
                .as_bytes(),
        )?;
    }
    db.compact_all()?;
    for i in (0..f.keys).filter(|i| i % 5 == 0 && i % 10 != 0) {
        if let Some(v) = expected(i) {
            db.put(&key(i), &v)?;
        }
    }
    for i in (0..f.keys).filter(|i| i % 7 == 3 && i % 2 == 0) {
        db.delete(&key(i))?;
    }
    db.compact_all()?;
    // Left in the WAL: the rest of the rewrites and deletes.
    for i in (0..f.keys).filter(|i| i % 10 == 0) {
        if let Some(v) = expected(i) {
            db.put(&key(i), &v)?;
        }
    }
    for i in (0..f.keys).filter(|i| i % 7 == 3 && i % 2 == 1) {
        db.delete(&key(i))?;
    }
    db.close()?;
    let _ = std::fs::remove_file(dir.join("LOCK"));
    Ok(())
}

/// The history store fixture: blocks `0..HISTORY_BLOCKS` but [`HISTORY_GAP`], 16 per shard;
/// shards 0 and 1 (blocks 0..32) sealed (their manifests are version 2).
pub const HISTORY_NAME: &str = "history-store";
/// Blocks per shard of the history fixture.
pub const HISTORY_SHARD_BLOCKS: u64 = 16;
/// Blocks of the history fixture: `0..HISTORY_BLOCKS`.
pub const HISTORY_BLOCKS: u64 = 45;
/// The blocks the history fixture lacks.
pub const HISTORY_GAP: std::ops::Range<u64> = 35..38;

/// What column `c` of block `n` holds in the history fixture.
pub fn history_fixture_value(n: u64, c: u8) -> Vec<u8> {
    format!("fixture block {n} column {c} ")
        .repeat(1 + (n % 5) as usize)
        .into_bytes()
}

/// Writes the history fixture into the empty directory `dir`.
pub fn make_history(dir: &Path) -> strata_history::Result<()> {
    let options = strata_history::HistoryOptions {
        shard_blocks: HISTORY_SHARD_BLOCKS,
        ..Default::default()
    };
    let store = strata_history::HistoryStore::open(dir, options)?;
    // Out of order, in two batches, the second shard's blocks written twice.
    let numbers: Vec<u64> = (0..HISTORY_BLOCKS)
        .rev()
        .chain(16..32)
        .filter(|n| !HISTORY_GAP.contains(n))
        .collect();
    for chunk in numbers.chunks(30) {
        crate::put_history_blocks(&store, chunk, &|n, c| history_fixture_value(n, c.0))?;
    }
    store.seal(0)?;
    store.seal(1)?;
    store.close()?;
    let _ = std::fs::remove_file(dir.join("LOCK"));
    Ok(())
}
