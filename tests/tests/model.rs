//! The model test: random operations against strata and a `BTreeMap`, compared at every step.

use std::collections::BTreeMap;
use std::ops::Bound;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;

use std::sync::Arc;

use strata::{
    Batch, Db, Event, EventLog, IndexParams, IndexPolicy, Options, PolicyOptions, Sharding,
    DISK_KIND, INMEM_KIND,
};

const STEPS: usize = 20_000;

fn random_key(rng: &mut StdRng) -> Vec<u8> {
    // A small alphabet and lengths 0..6 so that keys repeat, share prefixes and nest.
    let len = rng.random_range(0..6);
    (0..len)
        .map(|_| b"abcd\x00\xff"[rng.random_range(0..6)])
        .collect()
}

fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..100) {
        0 => rng.random_range(64 << 10..200 << 10), // spans several copy chunks
        1..=9 => 0,
        _ => rng.random_range(1..300),
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn bound(rng: &mut StdRng) -> Bound<Vec<u8>> {
    match rng.random_range(0..3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(random_key(rng)),
        _ => Bound::Excluded(random_key(rng)),
    }
}

fn check_scan(
    db: &Db,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    step: usize,
) {
    let valid = match (&start, &end) {
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
            s < e || (s == e && matches!((&start, &end), (Bound::Included(_), Bound::Included(_))))
        }
        _ => true,
    };
    let expected: Vec<(Vec<u8>, Vec<u8>)> = if valid {
        model
            .range((start.clone(), end.clone()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let got: Vec<(Vec<u8>, Vec<u8>)> = db
        .range((start.clone(), end.clone()))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, expected, "step {step}: range {start:?}..{end:?}");
}

/// In-memory indexes for every run.
const INMEM: IndexPolicy = IndexPolicy::Always(INMEM_KIND);
/// Disk indexes for every run.
const DISK: IndexPolicy = IndexPolicy::Always(DISK_KIND);
/// By size, with a cutoff small enough that both kinds occur.
const AUTO: IndexPolicy = IndexPolicy::BySize {
    small: INMEM_KIND,
    large: DISK_KIND,
    cutoff_bytes: 8 << 10,
};

/// How the model's database compacts.
#[derive(Clone, Copy, PartialEq)]
enum Compaction {
    /// The defaults: background compaction whose thresholds this test never reaches, so
    /// compactions come from the model's `compact` calls and from range shards completing.
    Default,
    /// Tiny thresholds: many rotations and background compactions, write stalls, values in
    /// value files and their collection.
    AutoTiny,
}

fn options(
    sharding: Sharding,
    policy: IndexPolicy,
    compaction: Compaction,
    events: Arc<EventLog>,
) -> Options {
    let mut o = strata_tests::options(sharding);
    o.index_policy = policy;
    // Small pages, so that even small runs have many.
    o.index_params = IndexParams {
        page_size_exponent: 8,
        ..IndexParams::default()
    };
    o.events = events;
    if compaction == Compaction::AutoTiny {
        o.compaction.policy = PolicyOptions {
            wal_rotate_bytes: 4 << 10,
            wal_rotate_entries: 24,
            growth_factor: 2,
        };
        o.compaction.stall_slowdown_bytes = 8 << 10;
        o.compaction.stall_stop_bytes = 24 << 10;
        o.compaction.stall_slowdown_delay_us = 50;
        // Nearly every value separated into value files, and collection whenever a fifth of
        // a file is garbage: pointers, value files and collections all the time.
        o.value_log_threshold_bytes = 8;
        o.value_log_gc_ratio = 0.2;
    }
    o
}

/// Checks compaction events: never two at once, every start ended, none failed. Returns
/// (compactions, stalls).
fn check_events(events: &[Event]) -> (usize, usize) {
    let (mut open, mut compactions, mut stalls) = (0, 0, 0);
    for e in events {
        match e {
            Event::CompactionStart { .. } => {
                open += 1;
                compactions += 1;
                assert_eq!(open, 1, "two compactions at once");
            }
            Event::CompactionEnd { .. } => {
                assert_eq!(open, 1, "an end without a start");
                open -= 1;
            }
            Event::CompactionFailed { error, .. } => panic!("compaction failed: {error}"),
            Event::WriteStallStart { .. } => stalls += 1,
            _ => {}
        }
    }
    assert_eq!(open, 0, "a compaction started and never ended");
    (compactions, stalls)
}

fn run_model(sharding: Sharding, policy: IndexPolicy, seed: u64) {
    run_model_with(sharding, policy, Compaction::Default, seed);
}

fn run_model_with(sharding: Sharding, policy: IndexPolicy, compaction: Compaction, seed: u64) {
    let log = Arc::new(EventLog::default());
    let options = |sharding, policy| options(sharding, policy, compaction, log.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut db = Some(Db::open(&path, options(sharding, policy)).unwrap());
    let (mut compactions, mut reopens, mut scans) = (0, 0, 0);
    let mut kinds_seen = BTreeSet::new();
    for step in 0..STEPS {
        let d = db.as_ref().unwrap();
        match rng.random_range(0..1000) {
            0..=349 => {
                let (k, v) = (random_key(&mut rng), random_value(&mut rng));
                d.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            350..=499 => {
                let k = random_key(&mut rng);
                d.delete(&k).unwrap();
                model.remove(&k);
            }
            500..=579 => {
                let mut batch = Batch::new();
                for _ in 0..rng.random_range(1..20) {
                    let k = random_key(&mut rng);
                    if rng.random_bool(0.3) {
                        batch.delete(k.clone());
                        model.remove(&k);
                    } else {
                        let v = random_value(&mut rng);
                        batch.put(k.clone(), v.clone());
                        model.insert(k, v);
                    }
                }
                d.write_batch(&batch).unwrap();
            }
            580..=849 => {
                let k = random_key(&mut rng);
                assert_eq!(
                    d.get(&k).unwrap(),
                    model.get(&k).cloned(),
                    "step {step}: get {k:?}"
                );
            }
            850..=909 => {
                scans += 1;
                let (s, e) = (bound(&mut rng), bound(&mut rng));
                check_scan(d, &model, s, e, step);
            }
            910..=949 => {
                scans += 1;
                let p = random_key(&mut rng);
                let got: Vec<(Vec<u8>, Vec<u8>)> =
                    d.prefix(&p).unwrap().collect::<Result<_, _>>().unwrap();
                let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, expected, "step {step}: prefix {p:?}");
            }
            950..=979 => {
                compactions += 1;
                if rng.random_bool(0.5) {
                    d.compact_all().unwrap();
                } else {
                    let shard = d.shard_of(&random_key(&mut rng));
                    d.compact(shard).unwrap();
                }
                for shard in d.stats().shards {
                    kinds_seen.extend(shard.runs.iter().map(|r| r.index));
                }
            }
            _ => {
                reopens += 1;
                let old = db.take().unwrap();
                if rng.random_bool(0.5) {
                    old.close().unwrap();
                } else {
                    drop(old); // no close: buffered writes were handed to the OS
                }
                db = Some(Db::open(&path, options(sharding, policy)).unwrap());
            }
        }
        db.as_ref().unwrap().check_invariants();
    }
    let d = db.take().unwrap();
    check_scan(&d, &model, Bound::Unbounded, Bound::Unbounded, STEPS);
    assert!(
        compactions > 300 && reopens > 150 && scans > 1000,
        "{compactions} compactions, {reopens} reopens, {scans} scans"
    );
    let expected_kinds: BTreeSet<&str> = match policy {
        INMEM => ["inmem"].into(),
        DISK => ["disk"].into(),
        _ => ["inmem", "disk"].into(),
    };
    assert_eq!(kinds_seen, expected_kinds);
    if let Sharding::Hash { shards } = sharding {
        assert_eq!(
            d.shards().len(),
            shards as usize,
            "every hash shard was used"
        );
    }
    d.wait_for_compactions();
    check_scan(&d, &model, Bound::Unbounded, Bound::Unbounded, STEPS);
    d.close().unwrap();
    let (all_compactions, stalls) = check_events(&log.events());
    if compaction == Compaction::AutoTiny {
        // Each model `compact` step runs at most one compaction per shard; the rest ran in the
        // background.
        assert!(
            all_compactions >= compactions + 200,
            "{all_compactions} compactions in all, {compactions} asked for"
        );
        assert!(stalls > 0, "no write stall");
    }
}

#[test]
fn model_single_shard_inmem() {
    run_model(Sharding::Single, INMEM, 0x5eed_0001);
}

#[test]
fn model_single_shard_disk() {
    run_model(Sharding::Single, DISK, 0x5eed_0011);
}

#[test]
fn model_single_shard_auto() {
    run_model(Sharding::Single, AUTO, 0x5eed_0021);
}

#[test]
fn model_four_hash_shards_inmem() {
    run_model(Sharding::Hash { shards: 4 }, INMEM, 0x5eed_0002);
}

#[test]
fn model_four_hash_shards_disk() {
    run_model(Sharding::Hash { shards: 4 }, DISK, 0x5eed_0012);
}

#[test]
fn model_four_hash_shards_auto() {
    run_model(Sharding::Hash { shards: 4 }, AUTO, 0x5eed_0022);
}

#[test]
fn model_range_shards_auto() {
    run_model(Sharding::Range { width: 1 << 48 }, AUTO, 0x5eed_0003);
}

#[test]
fn model_single_shard_auto_compaction_with_stalls() {
    run_model_with(Sharding::Single, AUTO, Compaction::AutoTiny, 0x5eed_0031);
}

#[test]
fn model_range_shards_auto_compaction_with_stalls() {
    run_model_with(
        Sharding::Range { width: 1 << 48 },
        AUTO,
        Compaction::AutoTiny,
        0x5eed_0032,
    );
}
