//! One engine, one workload, one process: prints a JSON line with the same fields as
//! `strata bench ... --json`. `run.sh` alternates engines and prints medians.
//!
//! Configuration, as each engine would be set up for the job: fjall 3 with key-value separation
//! for the ingest (blobs ≥ 1 KiB); RocksDB 0.25 with BlobDB for the ingest (min_blob_size 1 KiB)
//! and a bloom filter of 10 bits per key in every table; defaults otherwise. Durability: OS
//! buffers (no fsync per write) for all three.

use std::path::Path;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use strata_bench::{
    block_value, state_deleted, state_key, state_type, state_value, IngestParams, Rss, StateParams,
    STATE_SCAN_TYPE,
};

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Engine {
    Strata,
    Fjall,
    Rocksdb,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Workload {
    Ingest,
    State,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    engine: Engine,
    #[arg(long, value_enum)]
    workload: Workload,
    #[arg(long, default_value_t = 40_000)]
    blocks: u64,
    #[arg(long, default_value_t = 2_000_000)]
    keys: u64,
    #[arg(long, default_value_t = 1_000_000)]
    lookups: u64,
}

/// The operations the workloads need.
trait Kv {
    fn write(&self, puts: &[(&[u8], &[u8])], deletes: &[&[u8]]);
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn scan_prefix_count(&self, prefix: &[u8]) -> u64;
    /// Makes everything durable and lets background work finish.
    fn finish(&self);
    fn index_bytes(&self) -> Option<u64>;
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path, blobs: bool) -> Fjall {
        let db = fjall::Database::builder(dir).open().expect("fjall open");
        let ks = db
            .keyspace("data", || {
                let o = fjall::KeyspaceCreateOptions::default();
                if blobs {
                    o.with_kv_separation(Some(fjall::KvSeparationOptions::default()))
                } else {
                    o
                }
            })
            .expect("fjall keyspace");
        Fjall { db, ks }
    }
}

impl Kv for Fjall {
    fn write(&self, puts: &[(&[u8], &[u8])], deletes: &[&[u8]]) {
        let mut b = self.db.batch();
        for (k, v) in puts {
            b.insert(&self.ks, *k, *v);
        }
        for k in deletes {
            b.remove(&self.ks, *k);
        }
        b.commit().expect("fjall commit");
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.ks.get(key).expect("fjall get").map(|v| v.to_vec())
    }
    fn scan_prefix_count(&self, prefix: &[u8]) -> u64 {
        self.ks
            .prefix(prefix)
            .map(|g| g.into_inner().expect("fjall scan"))
            .count() as u64
    }
    fn finish(&self) {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .expect("fjall persist");
    }
    fn index_bytes(&self) -> Option<u64> {
        None
    }
}

struct Rocks {
    db: rocksdb::DB,
}

impl Rocks {
    fn open(dir: &Path, blobs: bool) -> Rocks {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        // At its best for point reads: a full bloom filter of 10 bits per key (about 1%
        // false positives, as strata's) in every table.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        o.set_block_based_table_factory(&table);
        if blobs {
            o.set_enable_blob_files(true);
            o.set_min_blob_size(1024);
        }
        Rocks {
            db: rocksdb::DB::open(&o, dir).expect("rocksdb open"),
        }
    }
}

impl Kv for Rocks {
    fn write(&self, puts: &[(&[u8], &[u8])], deletes: &[&[u8]]) {
        let mut b = rocksdb::WriteBatch::default();
        for (k, v) in puts {
            b.put(k, v);
        }
        for k in deletes {
            b.delete(k);
        }
        self.db.write(b).expect("rocksdb write");
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.db.get(key).expect("rocksdb get")
    }
    fn scan_prefix_count(&self, prefix: &[u8]) -> u64 {
        let mut n = 0;
        for item in self.db.iterator(rocksdb::IteratorMode::From(
            prefix,
            rocksdb::Direction::Forward,
        )) {
            let (k, _) = item.expect("rocksdb scan");
            if !k.starts_with(prefix) {
                break;
            }
            n += 1;
        }
        n
    }
    fn finish(&self) {
        self.db.flush().expect("rocksdb flush");
        loop {
            let running = self
                .db
                .property_int_value("rocksdb.num-running-compactions")
                .ok()
                .flatten()
                .unwrap_or(0);
            let pending = self
                .db
                .property_int_value("rocksdb.compaction-pending")
                .ok()
                .flatten()
                .unwrap_or(0);
            if running == 0 && pending == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    fn index_bytes(&self) -> Option<u64> {
        self.db
            .property_int_value("rocksdb.estimate-table-readers-mem")
            .ok()
            .flatten()
    }
}

fn open(engine: Engine, dir: &Path, blobs: bool) -> Box<dyn Kv> {
    match engine {
        Engine::Fjall => Box::new(Fjall::open(dir, blobs)),
        Engine::Rocksdb => Box::new(Rocks::open(dir, blobs)),
        Engine::Strata => unreachable!("strata runs its own bench code"),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn ingest(engine: Engine, dir: &Path, blocks: u64) {
    // Every engine reads back 200 random blocks after its peak RSS is taken.
    let p = IngestParams {
        blocks,
        verify_blocks: 200,
        ..IngestParams::default()
    };
    if engine == Engine::Strata {
        let r = strata_bench::ingest(dir, &p, &mut |_| {}).expect("strata ingest");
        println!(
            "{{\"engine\":\"strata\",\"workload\":\"ingest\",\"blocks\":{blocks},\"payload_mb_per_s\":{:.1},\"peak_rss_mb\":{:.1},\"wall_s\":{:.2},\"write_amplification\":{:.3},\"stall_ms\":{:.1}}}",
            r.payload_mb_per_s(),
            mib(r.peak_rss_bytes),
            r.wall_s,
            r.write_amplification,
            r.compaction.stall_ms
        );
        return;
    }
    let kv = open(engine, dir, true);
    let started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(p.seed);
    let mut values: Vec<Vec<u8>> = vec![Vec::new(); p.batch];
    let mut payload = 0u64;
    let mut base = 0;
    while base < p.blocks {
        let end = (base + p.window).min(p.blocks);
        let mut order: Vec<u64> = (base..end).collect();
        order.shuffle(&mut rng);
        for chunk in order.chunks(p.batch) {
            let keys: Vec<[u8; 8]> = chunk.iter().map(|n| n.to_be_bytes()).collect();
            for (i, &n) in chunk.iter().enumerate() {
                block_value(&p, n, &mut values[i]);
                payload += values[i].len() as u64;
            }
            let puts: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (&k[..], &v[..]))
                .collect();
            kv.write(&puts, &[]);
        }
        base = end;
    }
    kv.finish();
    let wall = started.elapsed().as_secs_f64();
    let peak = Rss::now().vm_hwm;
    let mut v = Vec::new();
    for _ in 0..200.min(p.blocks) {
        let n = rng.random_range(0..p.blocks);
        block_value(&p, n, &mut v);
        assert_eq!(
            kv.get(&n.to_be_bytes()).as_deref(),
            Some(v.as_slice()),
            "block {n}"
        );
    }
    let name = if engine == Engine::Fjall {
        "fjall"
    } else {
        "rocksdb"
    };
    println!("{{\"engine\":\"{name}\",\"workload\":\"ingest\",\"blocks\":{blocks},\"payload_mb_per_s\":{:.1},\"peak_rss_mb\":{:.1},\"wall_s\":{:.2}}}", mib(payload) / wall, mib(peak), wall);
}

fn state(engine: Engine, dir: &Path, keys: u64, lookups: u64) {
    let p = StateParams {
        keys,
        lookups,
        ..StateParams::default()
    };
    if engine == Engine::Strata {
        let r = strata_bench::state(dir, &p, &mut |_, _| {}).expect("strata state");
        println!(
            "{{\"engine\":\"strata\",\"workload\":\"state\",\"load_mb_per_s\":{:.1},\"reopen_s\":{:.3},\"hit_lookups_per_s\":{:.0},\"miss_lookups_per_s\":{:.0},\"index_bytes_per_key\":{:.2},\"scan_keys_per_s\":{:.0},\"scan_extra_rss_mb\":{:.1},\"peak_rss_mb\":{:.1}}}",
            r.load_mb_per_s, r.reopen_s, r.hit_lookups_per_s, r.miss_lookups_per_s, r.index_bytes_per_key, r.scan_keys_per_s, r.scan_extra_rss_mb, mib(r.peak_rss_bytes)
        );
        return;
    }
    let started = Instant::now();
    {
        let kv = open(engine, dir, false);
        let mut values: Vec<Vec<u8>> = vec![Vec::new(); 1000];
        let mut i = 0;
        while i < p.keys {
            let n = 1000.min(p.keys - i);
            let ks: Vec<[u8; 33]> = (i..i + n).map(|j| state_key(p.seed, j)).collect();
            for j in 0..n {
                state_value(p.seed, i + j, p.value_bytes, &mut values[j as usize]);
            }
            let puts: Vec<(&[u8], &[u8])> = ks
                .iter()
                .zip(&values)
                .map(|(k, v)| (&k[..], &v[..]))
                .collect();
            kv.write(&puts, &[]);
            i += n;
        }
        kv.finish();
    }
    let load = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let kv = open(engine, dir, false);
    let reopen = started.elapsed().as_secs_f64();
    let mut rng = SmallRng::seed_from_u64(p.seed ^ 0x10_0c_0a);
    let mut v = Vec::new();
    let started = Instant::now();
    for _ in 0..p.lookups {
        let i = rng.random_range(0..p.keys);
        let got = kv.get(&state_key(p.seed, i));
        state_value(p.seed, i, p.value_bytes, &mut v);
        assert_eq!(got.as_deref(), Some(v.as_slice()));
    }
    let hits = p.lookups as f64 / started.elapsed().as_secs_f64();
    let absent = p.seed.wrapping_add(0x5eed);
    let started = Instant::now();
    for n in 0..p.lookups {
        assert!(kv.get(&state_key(absent, n)).is_none());
    }
    let misses = p.lookups as f64 / started.elapsed().as_secs_f64();
    let index = kv.index_bytes();
    let mut expected = 0;
    let mut dels: Vec<[u8; 33]> = Vec::new();
    for i in 0..p.keys {
        if state_deleted(p.seed, i) {
            dels.push(state_key(p.seed, i));
            if dels.len() == 1000 {
                kv.write(&[], &dels.iter().map(|k| &k[..]).collect::<Vec<_>>());
                dels.clear();
            }
        } else if state_type(p.seed, i) == STATE_SCAN_TYPE {
            expected += 1;
        }
    }
    kv.write(&[], &dels.iter().map(|k| &k[..]).collect::<Vec<_>>());
    let before = Rss::now().vm_rss;
    let started = Instant::now();
    let scanned = kv.scan_prefix_count(&[STATE_SCAN_TYPE]);
    let scan = scanned as f64 / started.elapsed().as_secs_f64();
    let extra = Rss::now().vm_rss.saturating_sub(before);
    assert_eq!(scanned, expected);
    let name = if engine == Engine::Fjall {
        "fjall"
    } else {
        "rocksdb"
    };
    let index = index.map_or("null".to_string(), |b| {
        format!("{:.2}", b as f64 / p.keys as f64)
    });
    let mb = mib(p.keys * (33 + p.value_bytes as u64));
    println!(
        "{{\"engine\":\"{name}\",\"workload\":\"state\",\"load_mb_per_s\":{:.1},\"reopen_s\":{reopen:.3},\"hit_lookups_per_s\":{hits:.0},\"miss_lookups_per_s\":{misses:.0},\"index_bytes_per_key\":{index},\"scan_keys_per_s\":{scan:.0},\"scan_extra_rss_mb\":{:.1},\"peak_rss_mb\":{:.1}}}",
        mb / load,
        mib(extra),
        mib(Rss::now().vm_hwm)
    );
}

fn main() {
    let a = Args::parse();
    let tmp = tempfile::Builder::new()
        .prefix("strata-compare-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().join("db");
    match a.workload {
        Workload::Ingest => ingest(a.engine, &dir, a.blocks),
        Workload::State => state(a.engine, &dir, a.keys, a.lookups),
    }
}
