//! Key-value separation: values of at least `value_log_threshold_bytes` stay in the WAL segment
//! they were written to (a value file) and runs point at them; reads through a pointer are
//! checked; overwritten values are collected; range shards complete when full.

use std::path::{Path, PathBuf};

use strata::{Db, Error, Options, ShardId, Sharding};

fn options(sharding: Sharding) -> Options {
    let mut o = strata_tests::options(sharding);
    o.compaction.auto = false;
    o
}

fn value(key: u64, round: u64, len: usize) -> Vec<u8> {
    strata_tests::noise(key ^ (round << 32), len)
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// The WAL segment files (value files included) of shard 0.
fn segments(db_dir: &Path) -> Vec<PathBuf> {
    let shard = db_dir.join(strata_engine::format::shard_dir_name(ShardId(0)));
    let mut v: Vec<PathBuf> = std::fs::read_dir(shard)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn large_values_are_pointed_at_small_ones_copied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    // 200 values of 4 KiB (separated) and 200 of 100 bytes (inline), interleaved.
    for k in 0..400u64 {
        let len = if k % 2 == 0 { 4096 } else { 100 };
        db.put(&k.to_be_bytes(), &value(k, 0, len)).unwrap();
    }
    db.compact(ShardId(0)).unwrap();
    let s = db.stats();
    assert_eq!(
        s.value_files, 1,
        "the compacted segment became a value file"
    );
    assert_eq!(s.value_log_garbage_bytes, s.value_log_bytes - 200 * 4096);
    // The run holds 200 pointers of 32 bytes and 200 values of 100 bytes, not 800 KiB.
    assert!(s.run_bytes < 60_000, "run of {} bytes", s.run_bytes);
    let check = |db: &Db, keys: usize| {
        for k in 0..400u64 {
            let len = if k % 2 == 0 { 4096 } else { 100 };
            assert_eq!(db.get(&k.to_be_bytes()).unwrap(), Some(value(k, 0, len)));
        }
        let scanned: Vec<_> = db
            .range::<&[u8], _>(..)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(scanned.len(), keys);
        assert_eq!(scanned[10].1, value(10, 0, 4096));
    };
    check(&db, 400);
    // Merging the pointer run with new data copies pointers, not values.
    db.put(&1_000u64.to_be_bytes(), &value(1_000, 0, 2048))
        .unwrap();
    let report = db.compact(ShardId(0)).unwrap();
    assert!(report.bytes_out < 60_000, "{} bytes out", report.bytes_out);
    assert_eq!(db.stats().value_files, 2);
    db.close().unwrap();
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    check(&db, 401);
    db.close().unwrap();
    let report = strata::verify::verify(&path).unwrap();
    assert!(!report.damaged(), "{:?}", report.findings);
}

#[test]
fn a_damaged_value_in_a_value_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    db.put(b"k", &value(1, 0, 8192)).unwrap();
    db.compact(ShardId(0)).unwrap();
    db.close().unwrap();
    // The oldest segment is the value file; flip a byte in the middle of the value.
    let file = segments(&path)[0].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    match db.get(b"k") {
        Err(Error::ChecksumMismatch { file: f, .. }) => assert_eq!(f, file),
        other => panic!("read a damaged value: {other:?}"),
    }
    let scanned: Vec<_> = db.range::<&[u8], _>(..).unwrap().collect();
    assert!(matches!(scanned[..], [Err(Error::ChecksumMismatch { .. })]));
    db.close().unwrap();
    let report = strata::verify::verify(&path).unwrap();
    assert!(report.damaged(), "verify did not find the damaged value");

    // A missing value file: open refuses the shard, naming the file.
    std::fs::remove_file(&file).unwrap();
    let e = Db::open(&path, options(Sharding::Single)).unwrap_err();
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
}

#[test]
fn overwriting_the_same_keys_twenty_times_stays_under_twice_the_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut o = strata_tests::options(Sharding::Hash { shards: 2 });
    o.compaction.policy.wal_rotate_bytes = 1 << 20;
    let db = Db::open(&path, o).unwrap();
    const KEYS: u64 = 500;
    const LEN: usize = 4096;
    let mut peak_garbage = 0;
    for round in 0..20 {
        for k in 0..KEYS {
            db.put(&k.to_be_bytes(), &value(k, round, LEN)).unwrap();
        }
        peak_garbage = peak_garbage.max(db.stats().value_log_garbage_bytes);
    }
    db.wait_for_compactions();
    db.compact_all().unwrap();
    db.wait_for_compactions();
    let live = KEYS * LEN as u64;
    let s = db.stats();
    let disk = disk_bytes(&path);
    assert!(
        disk < 2 * live,
        "{disk} bytes on disk for {live} live bytes ({} value files, {} of their bytes garbage)",
        s.value_files,
        s.value_log_garbage_bytes
    );
    assert!(peak_garbage > 0, "the workload never made garbage");
    for k in 0..KEYS {
        assert_eq!(db.get(&k.to_be_bytes()).unwrap(), Some(value(k, 19, LEN)));
    }
    db.close().unwrap();
}

#[test]
fn a_file_over_the_garbage_ratio_is_collected_into_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    for k in 0..100u64 {
        db.put(&k.to_be_bytes(), &value(k, 0, 2048)).unwrap();
    }
    db.compact(ShardId(0)).unwrap();
    let first = segments(&path)[0].clone();
    // Overwrite 40: the first file is 40% garbage, under the ratio; it stays.
    for k in 0..40u64 {
        db.put(&k.to_be_bytes(), &value(k, 1, 2048)).unwrap();
    }
    db.compact(ShardId(0)).unwrap();
    assert!(first.exists());
    assert_eq!(db.stats().value_files, 2);
    // Overwrite 30 more: 70% garbage. The compaction that merges every run copies the 30
    // live values out of it; it leaves the manifest and is deleted.
    for k in 40..70u64 {
        db.put(&k.to_be_bytes(), &value(k, 1, 2048)).unwrap();
    }
    db.compact(ShardId(0)).unwrap(); // makes the garbage
    db.compact(ShardId(0)).unwrap(); // collects it
    assert!(!first.exists(), "the collected file is still there");
    let s = db.stats();
    assert!(
        s.run_bytes > 30 * 2048,
        "the live values moved into the run"
    );
    for k in 0..100u64 {
        let round = u64::from(k < 70);
        assert_eq!(
            db.get(&k.to_be_bytes()).unwrap(),
            Some(value(k, round, 2048))
        );
    }
    db.close().unwrap();
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    assert_eq!(
        db.get(&99u64.to_be_bytes()).unwrap(),
        Some(value(99, 0, 2048))
    );
    db.close().unwrap();
}

#[test]
fn a_range_shard_completes_when_it_holds_every_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut o = strata_tests::options(Sharding::Range { width: 100 });
    o.compaction.policy.wal_rotate_entries = 30;
    let db = Db::open(&path, o).unwrap();
    // Shard 0 gets 99 of its 100 keys (some twice), shard 1 all of its own.
    for k in (0..99u64).chain(0..10).chain(100..200) {
        db.put(&k.to_be_bytes(), &value(k, 0, 1500)).unwrap();
    }
    db.wait_for_compactions();
    let complete = |db: &Db, id: u64| {
        db.stats()
            .shards
            .iter()
            .any(|s| s.id == ShardId(id) && s.complete)
    };
    assert!(!complete(&db, 0), "shard 0 lacks key 99 but is complete");
    assert!(
        complete(&db, 1),
        "shard 1 holds every key but is not complete"
    );
    let one = db
        .stats()
        .shards
        .iter()
        .find(|s| s.id == ShardId(1))
        .unwrap()
        .runs
        .len();
    assert_eq!(one, 1, "a complete shard is one run");
    db.put(&99u64.to_be_bytes(), &value(99, 0, 1500)).unwrap();
    db.wait_for_compactions();
    assert!(complete(&db, 0), "shard 0 is full now");
    db.close().unwrap();
}

#[test]
fn repair_reads_separated_values_from_their_value_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    for k in 0..50u64 {
        db.put(&k.to_be_bytes(), &value(k, 0, 2048)).unwrap();
    }
    db.compact(ShardId(0)).unwrap();
    db.close().unwrap();
    // Damage the value of key 20 in the value file.
    let file = segments(&path)[0].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let v = value(20, 0, 2048);
    let at = bytes.windows(64).position(|w| w == &v[..64]).unwrap();
    bytes[at + 1000] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let report = strata::repair::repair(&path).unwrap();
    assert_eq!(report.dropped.len(), 1, "{:?}", report.dropped);
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    for k in 0..50u64 {
        let want = (k != 20).then(|| value(k, 0, 2048));
        assert_eq!(db.get(&k.to_be_bytes()).unwrap(), want, "key {k}");
    }
    db.close().unwrap();
}

#[test]
fn a_segment_of_mostly_small_values_is_not_kept_for_a_few_large_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    // 1,000 values of 100 bytes and one of 2 KiB: as a value file the segment would be over
    // 95% garbage from the start, so its large value is copied like the small ones.
    for k in 0..1_000u64 {
        db.put(&k.to_be_bytes(), &value(k, 0, 100)).unwrap();
    }
    db.put(b"big", &value(7, 7, 2048)).unwrap();
    db.compact(ShardId(0)).unwrap();
    let s = db.stats();
    assert_eq!((s.value_files, s.value_log_bytes), (0, 0));
    assert_eq!(
        segments(&path).len(),
        1,
        "only the new active segment is left"
    );
    assert_eq!(db.get(b"big").unwrap(), Some(value(7, 7, 2048)));
    db.close().unwrap();
}

#[test]
fn repair_with_a_damaged_manifest_never_lets_a_value_file_win_over_newer_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    for k in 0..100u64 {
        db.put(&k.to_be_bytes(), &value(k, 0, 2048)).unwrap();
    }
    db.compact(ShardId(0)).unwrap(); // the segment becomes a value file
    db.put(&0u64.to_be_bytes(), &value(0, 1, 100)).unwrap();
    db.delete(&1u64.to_be_bytes()).unwrap();
    db.compact(ShardId(0)).unwrap(); // the value file stays: 98% of it is live
    assert_eq!(db.stats().value_files, 1);
    db.close().unwrap();
    let manifest = path
        .join(strata_engine::format::shard_dir_name(ShardId(0)))
        .join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&manifest, &bytes).unwrap();

    // Without the manifest, repair reads every run and every segment, value files included;
    // their records are older than the runs' and must not be replayed over them.
    strata::repair::repair(&path).unwrap();
    let db = Db::open(&path, options(Sharding::Single)).unwrap();
    assert_eq!(db.get(&0u64.to_be_bytes()).unwrap(), Some(value(0, 1, 100)));
    assert_eq!(db.get(&1u64.to_be_bytes()).unwrap(), None);
    assert_eq!(
        db.get(&2u64.to_be_bytes()).unwrap(),
        Some(value(2, 0, 2048))
    );
    db.close().unwrap();
}

#[test]
fn a_range_shard_one_key_short_is_not_merged_whole_on_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let log = std::sync::Arc::new(strata::EventLog::default());
    let mut o = strata_tests::options(Sharding::Range { width: 1000 });
    o.events = log.clone();
    let db = Db::open(&path, o).unwrap();
    for k in 0..999u64 {
        db.put(&k.to_be_bytes(), &value(k, 0, 1500)).unwrap();
    }
    db.compact(ShardId(0)).unwrap();
    let compactions = |log: &strata::EventLog| {
        log.events()
            .iter()
            .filter(|e| matches!(e, strata::Event::CompactionStart { .. }))
            .count()
    };
    let before = compactions(&log);
    // 300 overwrites of one key: the prefix bound passes the width on each, but a count that
    // finds the shard short doubles the writes before the next one.
    for round in 1..=300u64 {
        db.put(&5u64.to_be_bytes(), &value(5, round, 100)).unwrap();
        db.wait_for_compactions();
    }
    let merges = compactions(&log) - before;
    assert!(merges <= 12, "{merges} compactions for 300 overwrites");
    assert_eq!(
        db.get(&5u64.to_be_bytes()).unwrap(),
        Some(value(5, 300, 100))
    );
    db.close().unwrap();
}
