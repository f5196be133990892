//! Index files: loaded without reading runs; any damage (truncated, zeroed, flipped, another
//! version, another page size, missing) is rebuilt from the run with an event, and every lookup
//! stays right; the index policy can change between opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata::{
    Db, Event, EventLog, IndexParams, IndexPolicy, Options, Sharding, DISK_KIND, INMEM_KIND,
};

const KEYS: u32 = 3_000;

fn key(i: u32) -> Vec<u8> {
    format!("key-{:08}", i * 2).into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; (i % 300) as usize]
}

fn options(policy: IndexPolicy, page_size_exponent: u8, events: Arc<EventLog>) -> Options {
    let mut o = strata_tests::options(Sharding::Single);
    o.index_policy = policy;
    o.index_params = IndexParams {
        page_size_exponent,
        ..IndexParams::default()
    };
    o.events = events;
    o
}

/// A closed database with one run holding every key, indexed by `policy`.
fn build(dir: &Path, policy: IndexPolicy) -> PathBuf {
    let db = Db::open(dir, options(policy, 10, Arc::default())).unwrap();
    for i in 0..KEYS {
        db.put(&key(i), &value(i)).unwrap();
    }
    db.compact_all().unwrap();
    db.close().unwrap();
    let shard = dir.join("shard-0000000000000000");
    std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .unwrap()
}

fn check_all(db: &Db) {
    for i in 0..KEYS {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
        let mut absent = key(i);
        absent.push(0);
        assert_eq!(db.get(&absent).unwrap(), None);
    }
    let all: Vec<_> = db.prefix(b"key-").unwrap().map(|r| r.unwrap().0).collect();
    assert!(
        all == (0..KEYS).map(key).collect::<Vec<_>>(),
        "a full scan returned {} keys",
        all.len()
    );
    let from: Vec<_> = db
        .range(key(1500)..key(1510))
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(from, (1500..1510).map(key).collect::<Vec<_>>());
}

/// A named way to damage an index file's bytes.
type Damage = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);

fn damage_cases(len: usize) -> Vec<Damage> {
    vec![
        (
            "truncated to half",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ),
        (
            "truncated to 3 bytes",
            Box::new(|b: &mut Vec<u8>| b.truncate(3)),
        ),
        ("emptied", Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "zeroed",
            Box::new(|b: &mut Vec<u8>| b.iter_mut().for_each(|x| *x = 0)),
        ),
        ("version byte", Box::new(|b: &mut Vec<u8>| b[8] = 9)),
        ("flip in header", Box::new(|b: &mut Vec<u8>| b[20] ^= 1)),
        (
            "flip in the middle",
            Box::new(move |b: &mut Vec<u8>| b[len / 2] ^= 0x80),
        ),
        (
            "flip in the checksum",
            Box::new(|b: &mut Vec<u8>| *b.last_mut().unwrap() ^= 1),
        ),
    ]
}

fn rebuilt_events(log: &EventLog) -> usize {
    log.events()
        .iter()
        .filter(|e| matches!(e, Event::IndexRebuilt { .. }))
        .count()
}

#[test]
fn damaged_index_files_are_rebuilt_and_answer_correctly() {
    for policy in [
        IndexPolicy::Always(INMEM_KIND),
        IndexPolicy::Always(DISK_KIND),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let index = build(dir.path(), policy);
        let good = std::fs::read(&index).unwrap();
        for (name, damage) in damage_cases(good.len()) {
            let mut bytes = good.clone();
            damage(&mut bytes);
            std::fs::write(&index, &bytes).unwrap();
            let log = Arc::new(EventLog::default());
            let db = Db::open(dir.path(), options(policy, 10, log.clone()))
                .unwrap_or_else(|e| panic!("{policy:?} {name}: {e}"));
            assert_eq!(
                rebuilt_events(&log),
                1,
                "{policy:?} {name}: {:?}",
                log.events()
            );
            check_all(&db);
            db.close().unwrap();
            assert_eq!(
                std::fs::read(&index).unwrap(),
                good,
                "{policy:?} {name}: the rebuilt index differs from the original"
            );
        }
        // Missing altogether.
        std::fs::remove_file(&index).unwrap();
        let log = Arc::new(EventLog::default());
        let db = Db::open(dir.path(), options(policy, 10, log.clone())).unwrap();
        assert_eq!(rebuilt_events(&log), 1);
        check_all(&db);
    }
}

#[test]
fn a_disk_index_of_another_page_size_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), IndexPolicy::Always(DISK_KIND));
    let log = Arc::new(EventLog::default());
    let db = Db::open(
        dir.path(),
        options(IndexPolicy::Always(DISK_KIND), 12, log.clone()),
    )
    .unwrap();
    let events = log.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::IndexRebuilt { reason, .. } if reason.contains("2^10"))),
        "{events:?}"
    );
    check_all(&db);
    db.close().unwrap();
    // Now built for 2^12: reopening with 2^12 rebuilds nothing.
    let log = Arc::new(EventLog::default());
    let db = Db::open(
        dir.path(),
        options(IndexPolicy::Always(DISK_KIND), 12, log.clone()),
    )
    .unwrap();
    assert_eq!(rebuilt_events(&log), 0);
    check_all(&db);
}

/// Bytes this thread has read through read(2) and friends so far.
fn thread_rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn opening_reads_index_files_not_runs() {
    for policy in [
        IndexPolicy::Always(INMEM_KIND),
        IndexPolicy::Always(DISK_KIND),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // Values inline: this test is about runs of many megabytes.
        let options = |policy, exp, log| Options {
            value_log_threshold_bytes: u64::MAX,
            ..options(policy, exp, log)
        };
        let db = Db::open(dir.path(), options(policy, 14, Arc::default())).unwrap();
        let big = vec![7u8; 4096];
        for i in 0..4_000u32 {
            db.put(&key(i), &big).unwrap();
        }
        db.compact_all().unwrap();
        let stats = db.stats();
        db.close().unwrap();
        let run_bytes = stats.run_bytes;
        assert!(run_bytes > 8 << 20, "{run_bytes}");
        let shard = dir.path().join("shard-0000000000000000");
        let index_bytes: u64 = std::fs::read_dir(&shard)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "idx"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        let before = thread_rchar();
        let db = Db::open(dir.path(), options(policy, 14, Arc::default())).unwrap();
        let read = thread_rchar() - before;
        // The index file (in-memory kind), manifests, a WAL header and the run's header and
        // footer; never the run's records. (A mapped disk index is not read through read(2).)
        assert!(
            read <= index_bytes + 4096,
            "{policy:?}: open read {read} bytes; index files are {index_bytes}, runs {run_bytes}"
        );
        let run = &db.stats().shards[0].runs[0];
        assert_eq!(run.index_keys, 4_000);
        assert_eq!(db.get(&key(1234)).unwrap(), Some(big.clone()));
    }
}

#[test]
fn the_policy_can_change_between_opens() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), IndexPolicy::Always(INMEM_KIND));
    let db = Db::open(
        dir.path(),
        options(IndexPolicy::Always(DISK_KIND), 10, Arc::default()),
    )
    .unwrap();
    assert_eq!(
        db.stats().shards[0].runs[0].index,
        "inmem",
        "existing runs keep their kind"
    );
    check_all(&db);
    db.put(b"new", b"entry").unwrap();
    db.compact_all().unwrap();
    assert_eq!(
        db.stats().shards[0].runs[0].index,
        "disk",
        "the next compaction writes the new kind"
    );
    check_all(&db);
    db.close().unwrap();
    // Automatic with a cutoff above the run: back to in-memory at the next compaction.
    let auto = IndexPolicy::BySize {
        small: INMEM_KIND,
        large: DISK_KIND,
        cutoff_bytes: 64 << 20,
    };
    let db = Db::open(dir.path(), options(auto, 10, Arc::default())).unwrap();
    assert_eq!(db.stats().shards[0].runs[0].index, "disk");
    db.put(b"newer", b"entry").unwrap();
    db.compact_all().unwrap();
    let run = &db.stats().shards[0].runs[0];
    assert_eq!(run.index, "inmem");
    assert_eq!(run.index_keys, u64::from(KEYS) + 2);
    check_all(&db);
}

#[test]
fn absent_keys_the_filter_rejects_touch_no_run_bytes() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), IndexPolicy::Always(DISK_KIND));
    let db = Db::open(
        dir.path(),
        options(IndexPolicy::Always(DISK_KIND), 10, Arc::default()),
    )
    .unwrap();
    let touched = || db.stats().shards[0].runs[0].bytes_touched;
    let before = touched();
    let mut false_positives = 0;
    for i in 0..10_000u32 {
        let k = format!("absent-{i}").into_bytes();
        let t = touched();
        assert_eq!(db.get(&k).unwrap(), None);
        if touched() != t {
            false_positives += 1;
        }
    }
    // At 1% target, 10,000 absent keys give about 100 false positives; the rest touch nothing.
    assert!(
        false_positives < 300,
        "{false_positives} absent lookups touched the run"
    );
    let after_absent = touched();
    assert!(
        after_absent - before < 300 * 2048,
        "absent lookups touched {} bytes",
        after_absent - before
    );
    // A present key reads at most one page span (1 KiB pages here, plus the record crossing).
    for i in (0..KEYS).step_by(97) {
        let t = touched();
        assert!(db.get(&key(i)).unwrap().is_some());
        assert!(
            touched() - t <= 1024 + 400,
            "key {i} touched {} bytes",
            touched() - t
        );
    }
}
