//! Memory bounds, measured with a counting global allocator: recovering a WAL of 512 MiB of
//! 1 MiB values reads headers only, and compacting it holds a few copy chunks, not values.
//!
//! One test function, so no other test of this binary allocates while it measures.

use strata::{Db, Options, ShardId, Sharding};
use strata_engine::COPY_CHUNK_BYTES;
use strata_tests::peak_growth;

/// One shard, and no background compactor: this test measures recovery and `compact` itself.
fn options(sharding: Sharding) -> Options {
    let mut o = strata_tests::options(sharding);
    o.compaction.auto = false;
    o
}

#[global_allocator]
static ALLOCATOR: strata_tests::Counting = strata_tests::Counting;

const VALUE_BYTES: usize = 1 << 20;
const VALUES: usize = 512;

fn value(i: usize) -> Vec<u8> {
    strata_tests::noise(i as u64, VALUE_BYTES)
}

#[test]
fn recovery_reads_headers_only_and_compaction_holds_a_few_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    let mut v = Vec::new();
    for i in 0..VALUES {
        v.clear();
        v.extend_from_slice(&value(i));
        db.put(&(i as u32).to_be_bytes(), &v).unwrap();
    }
    drop(v);
    db.close().unwrap();

    // Recovery: 512 MiB of WAL, read by headers.
    let (db, open_growth) = peak_growth(|| Db::open(&path, options(Sharding::Single)).unwrap());
    let stats = db.stats();
    assert_eq!(stats.memtable_keys, VALUES as u64);
    assert!(stats.wal_bytes > (VALUES * VALUE_BYTES) as u64);
    assert!(
        stats.memtable_bytes < 1 << 20,
        "memtable holds {} bytes",
        stats.memtable_bytes
    );
    let window = strata::WAL_RECOVERY_WINDOW_BYTES as u64;
    assert!(
        stats.recovery_bytes_read <= (VALUES as u64 + 1) * window
            && stats.recovery_bytes_read * 50 < stats.wal_bytes,
        "recovery read {} of {} WAL bytes",
        stats.recovery_bytes_read,
        stats.wal_bytes
    );
    assert!(
        open_growth < 1 << 20,
        "opening grew the heap by {open_growth} bytes"
    );
    eprintln!(
        "recovery: read {} of {} WAL bytes, memtable {} bytes, heap growth {open_growth} bytes",
        stats.recovery_bytes_read, stats.wal_bytes, stats.memtable_bytes
    );

    // Compaction of the WAL: values stream through one copy chunk.
    let (report, compact_growth) = peak_growth(|| db.compact(ShardId(0)).unwrap());
    assert_eq!(report.entries_out, VALUES as u64);
    let few_chunks = 4 * COPY_CHUNK_BYTES;
    assert!(
        report.buffer_bytes as usize <= few_chunks,
        "engine accounting: {} buffer bytes",
        report.buffer_bytes
    );
    assert!(
        compact_growth < few_chunks + (64 << 10),
        "compaction grew the heap by {compact_growth} bytes"
    );
    eprintln!(
        "compaction of the WAL: heap growth {compact_growth} bytes, engine buffer accounting {}",
        report.buffer_bytes
    );

    // Compaction of a run plus new WAL contents that overwrite 16 of its keys: the run is read
    // through one buffer, and the newer versions win.
    for i in 0..16 {
        db.put(&(i as u32 * 2 + 1).to_be_bytes(), &value(VALUES + i))
            .unwrap();
    }
    let (report, compact_growth) = peak_growth(|| db.compact(ShardId(0)).unwrap());
    assert_eq!(report.entries_out, VALUES as u64);
    assert!(
        report.buffer_bytes as usize <= few_chunks,
        "engine accounting: {} buffer bytes",
        report.buffer_bytes
    );
    assert!(
        compact_growth < few_chunks + (64 << 10),
        "compaction of a run grew the heap by {compact_growth} bytes"
    );
    eprintln!(
        "compaction of run + WAL: heap growth {compact_growth} bytes, engine buffer accounting {}",
        report.buffer_bytes
    );
    assert_eq!(db.stats().compaction_buffer_peak_bytes, report.buffer_bytes);

    for i in [0, VALUES / 2, VALUES - 1] {
        assert_eq!(db.get(&(i as u32).to_be_bytes()).unwrap(), Some(value(i)));
    }
    assert_eq!(
        db.get(&3u32.to_be_bytes()).unwrap(),
        Some(value(VALUES + 1))
    );

    // Collection: the values (1 MiB each, separated) of the first segment are overwritten
    // until it is mostly garbage; the compaction that collects it streams its live values
    // into the run through the copy chunk, never a whole value, and deletes it.
    assert!(db.stats().value_files >= 1);
    for i in 0..VALUES / 2 + 40 {
        db.put(&(i as u32).to_be_bytes(), &value(2 * VALUES + i))
            .unwrap();
    }
    db.compact(ShardId(0)).unwrap(); // leaves the first file over the garbage ratio
    let before = db.stats();
    assert!(before.value_log_garbage_bytes * 2 > before.value_log_bytes / 2);
    let (report, gc_growth) = peak_growth(|| db.compact(ShardId(0)).unwrap());
    let after = db.stats();
    assert!(
        after.value_log_bytes < before.value_log_bytes,
        "nothing collected: {} -> {} value-file bytes",
        before.value_log_bytes,
        after.value_log_bytes
    );
    assert!(after.run_bytes > (VALUES / 2 - 50) as u64 * VALUE_BYTES as u64);
    assert!(
        gc_growth < few_chunks + (64 << 10),
        "collection grew the heap by {gc_growth} bytes"
    );
    eprintln!(
        "collection: {} MiB of values into the run, heap growth {gc_growth} bytes, engine buffer accounting {}",
        after.run_bytes >> 20,
        report.buffer_bytes
    );
    for i in [0, VALUES / 2 + 39, VALUES / 2 + 40, VALUES - 1] {
        let round = if i < VALUES / 2 + 40 {
            2 * VALUES + i
        } else {
            i
        };
        assert_eq!(
            db.get(&(i as u32).to_be_bytes()).unwrap(),
            Some(value(round))
        );
    }
    db.close().unwrap();
}
