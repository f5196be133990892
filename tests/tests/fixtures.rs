//! The committed format-v1 databases (`tests/fixtures/v1/`, made by the `make_fixtures`
//! example) open with this build and answer what they were written with: every file kind
//! (identity, manifests, runs, both index kinds, WAL segments) and a Stellar ledger store. An
//! index that no longer loads (its layout or version changed) or that loads but answers wrongly
//! (the filter's bit layout changed) fails here, not in users' databases.

use std::path::Path;
use std::sync::Arc;

use strata::{Db, Event, EventLog};
use strata_stellar::stellar_xdr::{LedgerEntryType, LedgerKey, LedgerKeyTtl};
use strata_stellar::store::synthetic::{self, expected_live_until, key_hash};
use strata_stellar::store::LedgerStore;
use strata_tests::fixtures::{
    self, expected, key, FIXTURES, STELLAR_BY_CONTENT_NAME, STELLAR_ENTRIES, STELLAR_NAME,
};

/// A private copy: opening takes the lock and may tidy files, and the fixture must stay as made.
fn copy_of(name: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let from = fixtures::dir().join(name);
    assert!(from.is_dir(), "missing fixture {}", from.display());
    let tmp = tempfile::tempdir().unwrap();
    copy(&from, tmp.path());
    tmp
}

/// Events that mean a file of the fixture was not read as written.
fn assert_read_as_written(log: &EventLog, name: &str) {
    for e in log.events() {
        assert!(
            !matches!(
                e,
                Event::IndexRebuilt { .. }
                    | Event::StrayFileRemoved { .. }
                    | Event::WalTailTruncated { .. }
            ),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn key_value_fixtures_answer_lookups_and_scans() {
    for f in &FIXTURES {
        let tmp = copy_of(f.name);
        let report = strata::verify::verify(tmp.path()).unwrap();
        assert!(!report.damaged(), "{}: {:?}", f.name, report.findings);
        let log = Arc::new(EventLog::default());
        let mut o = fixtures::options(f);
        o.events = log.clone();
        let db = Db::open(tmp.path(), o).unwrap();
        assert_read_as_written(&log, f.name);
        let stats = db.stats();
        assert!(
            stats.runs >= 1 && stats.wal_bytes > 0,
            "{}: {stats:?}",
            f.name
        );
        for i in 0..f.keys + 20 {
            let want = if i < f.keys { expected(i) } else { None };
            assert_eq!(db.get(&key(i)).unwrap(), want, "{} key {i}", f.name);
        }
        let scanned: Vec<(Vec<u8>, Vec<u8>)> = db
            .range(key(10)..key(f.keys))
            .unwrap()
            .map(|kv| kv.unwrap())
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = (10..f.keys)
            .filter_map(|i| expected(i).map(|v| (key(i).to_vec(), v)))
            .collect();
        assert_eq!(scanned, want, "{}", f.name);
        // Compaction reads the old runs and WAL and writes new ones with the same answers.
        db.compact_all().unwrap();
        for i in 0..f.keys {
            assert_eq!(
                db.get(&key(i)).unwrap(),
                expected(i),
                "{} after compaction",
                f.name
            );
        }
        db.close().unwrap();
    }
}

#[test]
fn the_disk_fixture_is_read_through_its_committed_disk_indexes() {
    let f = &FIXTURES[0];
    assert_eq!(f.index, strata::DISK_KIND);
    let tmp = copy_of(f.name);
    let log = Arc::new(EventLog::default());
    let mut o = fixtures::options(f);
    o.events = log.clone();
    let db = Db::open(tmp.path(), o).unwrap();
    assert_read_as_written(&log, f.name);
    let shards = db.stats().shards;
    assert_eq!(shards.len(), 3);
    for s in &shards {
        assert!(s.runs.iter().all(|r| r.index == "disk"), "{s:?}");
    }
    // Every present key must pass the committed filter: a changed bit layout would answer
    // "absent" and lose the keys that only the runs hold (those not rewritten since).
    for i in (0..f.keys).filter(|i| i % 5 != 0 && i % 7 != 3) {
        assert_eq!(db.get(&key(i)).unwrap(), expected(i), "key {i}");
    }
}

#[test]
fn the_stellar_store_fixtures_answer_lookups_and_type_scans() {
    for (name, version) in [(STELLAR_NAME, 1), (STELLAR_BY_CONTENT_NAME, 2)] {
        let tmp = copy_of(name);
        let store = LedgerStore::open_existing(tmp.path()).unwrap();
        assert_eq!(store.state().unwrap().version, version, "{name}");
        check_stellar_fixture(&store);
        store.close().unwrap();
    }
}

fn check_stellar_fixture(store: &LedgerStore) {
    let n = STELLAR_ENTRIES;
    for i in 0..n + 5 {
        let k = LedgerKey::Ttl(LedgerKeyTtl {
            key_hash: key_hash(i),
        });
        let got = store.get(&k).unwrap();
        let want = if i < n {
            expected_live_until(i).map(|v| synthetic::ttl_entry(i, v))
        } else {
            None
        };
        assert_eq!(got, want, "entry {i}");
    }
    let scanned: Vec<Vec<u8>> = store
        .scan_type(LedgerEntryType::Ttl)
        .unwrap()
        .map(|kv| kv.unwrap().1)
        .collect();
    let want: Vec<Vec<u8>> = (0..n)
        .filter_map(|i| expected_live_until(i).map(|v| synthetic::ttl_entry(i, v)))
        .collect();
    assert_eq!(scanned.len() as u64, synthetic::expected_live(n));
    assert_eq!(scanned, want);
}

#[test]
fn the_history_fixture_answers_presence_blocks_and_its_seals() {
    use fixtures::{history_fixture_value, HISTORY_BLOCKS, HISTORY_GAP, HISTORY_NAME};
    let tmp = copy_of(HISTORY_NAME);
    let manifest = tmp.path().join("shard-0000000000000000/MANIFEST");
    assert_eq!(std::fs::read(manifest).unwrap()[8..12], 2u32.to_le_bytes());
    let report = strata::verify::verify(tmp.path()).unwrap();
    assert!(!report.damaged(), "{:?}", report.findings);
    let options = strata_history::HistoryOptions {
        create_if_missing: false,
        ..Default::default()
    };
    let store = strata_history::HistoryStore::open(tmp.path(), options).unwrap();
    assert_eq!(store.shard_blocks(), fixtures::HISTORY_SHARD_BLOCKS);
    for n in 0..HISTORY_BLOCKS + 3 {
        let present = n < HISTORY_BLOCKS && !HISTORY_GAP.contains(&n);
        assert_eq!(store.has(n), present, "block {n}");
        for c in 1..=3 {
            let want = present.then(|| history_fixture_value(n, c));
            assert_eq!(
                store.get(n, strata_history::Column(c)).unwrap(),
                want,
                "block {n}"
            );
        }
    }
    let missing: Vec<_> = store.missing(0..HISTORY_BLOCKS + 3).collect();
    assert_eq!(
        missing,
        vec![HISTORY_GAP, HISTORY_BLOCKS..HISTORY_BLOCKS + 3]
    );
    assert!(store.is_sealed(0) && store.is_sealed(1) && !store.is_sealed(2));
    let stats = store.stats();
    assert_eq!(stats.blocks, HISTORY_BLOCKS - 3);
    assert_eq!(stats.sealed_shards, vec![0, 1]);
    store.close().unwrap();
}
