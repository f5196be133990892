//! Power-loss and I/O-error campaigns on the simulated file system (`strata_tests::simfs`),
//! in process, through `Options::fs`.
//!
//! - **Power loss**: the seeded random workload of the crash campaigns (`crash_ops`: puts,
//!   deletes, batches, syncs, compactions, reopens; each write buffered, synced per batch, or
//!   left to a periodic sync) runs with every call from a chosen mutating call on failing, as
//!   if the process died there; then the power goes: every file keeps its synced bytes plus a
//!   random prefix of later writes (the last possibly torn or zero-filled), every directory its
//!   synced entries plus a random prefix of later creates, renames and removes. The database
//!   must open, hold every write acknowledged as durable with its exact value (or a value
//!   written after it), hold nothing never written, keep its invariants, show no temporary
//!   file, and take and keep new writes.
//! - **I/O errors**: the same workload with its Nth mutating call or open failing once with
//!   EIO, ENOSPC or EMFILE, for every N it reaches; then a power loss; the same checks.
//!
//! CI runs `STRATA_SIM_SEEDS` (default 200) seeds, each at `STRATA_SIM_POINTS` (default 2)
//! random crash points, and the I/O-error campaign over every call of 2 seeds. Set
//! `STRATA_SIM_POINTS=all` to try every crash point of every seed (the long campaign).

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use strata::{Batch, Db, Durability, IndexPolicy, Options, Sharding, DISK_KIND, INMEM_KIND};
use strata_tests::simfs::SimFs;
use strata_tests::{crash_ops, CrashOp, CRASH_KEYS};

const DB: &str = "/data/db";
const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const EMFILE: i32 = 24;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The options of seed `seed`'s workload on `fs`: range shards of 10 keys (new shards are made
/// as keys arrive), small WAL segments (rotations), no background compaction (deterministic),
/// disk or in-memory indexes, and one of the three durability modes.
fn sim_options(fs: &SimFs, seed: u64, per_batch: bool) -> Options {
    let mut o = strata_tests::options(Sharding::Range { width: 10 });
    o.fs = fs.shared();
    o.compaction.auto = false;
    o.compaction.policy.wal_rotate_bytes = 4 << 10;
    o.compaction.policy.wal_rotate_entries = 16;
    o.index_policy = IndexPolicy::Always(if seed.is_multiple_of(2) {
        DISK_KIND
    } else {
        INMEM_KIND
    });
    // Values from 1 KiB live in value files (the default); every fifth seed separates nearly
    // every value and collects files a fifth garbage, so that crashes hit collections too.
    if seed.is_multiple_of(5) {
        o.value_log_threshold_bytes = 8;
        o.value_log_gc_ratio = 0.2;
    }
    o.durability = if per_batch {
        Durability::SyncPerBatch
    } else if seed.is_multiple_of(3) {
        // Long enough never to fire in a test: what is not synced by hand is not durable.
        Durability::Periodic {
            interval_ms: 3_600_000,
        }
    } else {
        Durability::Buffered
    };
    o
}

/// What each key may hold: `values[0]` is its value at the last point it was known durable;
/// later entries were written after (acknowledged or failed). `last_ok` is the newest
/// acknowledged one.
#[derive(Clone, Debug)]
struct Candidates {
    values: Vec<Option<Vec<u8>>>,
    last_ok: usize,
}

impl Default for Candidates {
    /// A key never written: absent.
    fn default() -> Candidates {
        Candidates {
            values: vec![None],
            last_ok: 0,
        }
    }
}

impl Candidates {
    fn durable(&mut self) {
        self.values.drain(..self.last_ok);
        self.last_ok = 0;
    }
}

#[derive(Default)]
struct Model {
    keys: BTreeMap<u64, Candidates>,
    /// A call failed since the database was last opened: a failed sync may have dropped
    /// writes acknowledged before it, so the next open re-reads what the database holds.
    failed: bool,
}

impl Model {
    /// After an open that follows a failure: every key holds one of its candidates, and what it
    /// holds is now the newest acknowledged state (a later sync makes it durable).
    fn reread(&mut self, db: &Db, what: &str) {
        if !std::mem::take(&mut self.failed) {
            return;
        }
        for (k, c) in self.keys.iter_mut() {
            let Ok(got) = db.get(&k.to_be_bytes()) else {
                self.failed = true;
                continue;
            };
            let at = c.values.iter().rposition(|v| *v == got);
            let at =
                at.unwrap_or_else(|| panic!("{what}: key {k} reopened to a value never written"));
            c.last_ok = at;
        }
    }

    fn write(&mut self, k: u64, v: Option<Vec<u8>>, ok: bool, durable: bool) {
        self.failed |= !ok;
        let c = self.keys.entry(k).or_default();
        c.values.push(v);
        if ok {
            c.last_ok = c.values.len() - 1;
            if durable {
                c.durable();
            }
        }
    }

    fn all_durable(&mut self) {
        self.keys.values_mut().for_each(Candidates::durable);
    }
}

/// Runs seed `seed`'s workload on `fs` until it ends or the file system dies, recording in
/// `model` what was acknowledged. Returns the open database, if any.
fn run_workload(fs: &SimFs, seed: u64, model: &mut Model) -> Option<Db> {
    let (per_batch, ops) = crash_ops(seed);
    let options = || sim_options(fs, seed, per_batch);
    let what = format!("seed {seed}");
    let mut db = Db::open(DB, options()).ok();
    model.failed = db.is_none();
    for op in &ops {
        if fs.crashed() {
            break;
        }
        let Some(d) = &db else {
            db = Db::open(DB, options()).ok();
            match &db {
                Some(d) => model.reread(d, &what),
                None => model.failed = true,
            }
            continue;
        };
        match op {
            CrashOp::Put(k, v) => {
                let ok = d.put(&k.to_be_bytes(), v).is_ok();
                model.write(*k, Some(v.clone()), ok, per_batch);
            }
            CrashOp::Delete(k) => {
                let ok = d.delete(&k.to_be_bytes()).is_ok();
                model.write(*k, None, ok, per_batch);
            }
            CrashOp::Batch(b) => {
                let mut batch = Batch::new();
                for (k, v) in b {
                    match v {
                        Some(v) => batch.put(k.to_be_bytes().to_vec(), v.clone()),
                        None => batch.delete(k.to_be_bytes().to_vec()),
                    };
                }
                let ok = d.write_batch(&batch).is_ok();
                for (k, v) in b {
                    model.write(*k, v.clone(), ok, per_batch);
                }
            }
            CrashOp::Sync => match d.sync() {
                Ok(()) => model.all_durable(),
                Err(_) => model.failed = true,
            },
            CrashOp::Compact => {
                model.failed |= d.compact_all().is_err();
            }
            CrashOp::Reopen => {
                match db.take().expect("open").close() {
                    Ok(()) => model.all_durable(),
                    Err(_) => model.failed = true,
                }
                db = Db::open(DB, options()).ok();
                match &db {
                    Some(d) => model.reread(d, &what),
                    None => model.failed = true,
                }
            }
        }
    }
    db
}

/// After the power loss: the database opens and holds what `model` allows, nothing else, no
/// temporary file; it takes a new write that survives a clean reopen.
fn check_after_power_loss(fs: &SimFs, seed: u64, model: &Model, what: &str) {
    let (per_batch, _) = crash_ops(seed);
    let db = Db::open(DB, sim_options(fs, seed, per_batch))
        .unwrap_or_else(|e| panic!("{what}: the database does not open: {e}"));
    for k in 0..CRASH_KEYS {
        let got = db
            .get(&k.to_be_bytes())
            .unwrap_or_else(|e| panic!("{what}: key {k}: {e}"));
        let allowed = model
            .keys
            .get(&k)
            .map_or_else(|| vec![None], |c| c.values.clone());
        assert!(
            allowed.contains(&got),
            "{what}: key {k} reads {:?}, allowed lengths {:?}",
            got.as_ref().map(Vec::len),
            allowed
                .iter()
                .map(|v| v.as_ref().map(Vec::len))
                .collect::<Vec<_>>()
        );
    }
    for item in db.prefix(b"").unwrap_or_else(|e| panic!("{what}: {e}")) {
        let (key, _) = item.unwrap_or_else(|e| panic!("{what}: scan: {e}"));
        let k = u64::from_be_bytes(key.as_slice().try_into().expect("8-byte key"));
        assert!(k < CRASH_KEYS, "{what}: key {k} was never written");
    }
    db.check_invariants();
    let tmp: Vec<_> = fs
        .walk(Path::new(DB))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        tmp.is_empty(),
        "{what}: temporary files after open: {tmp:?}"
    );
    let probe = 3u64.to_be_bytes();
    db.put(&probe, b"after the crash")
        .unwrap_or_else(|e| panic!("{what}: write after reopen: {e}"));
    db.close()
        .unwrap_or_else(|e| panic!("{what}: close after reopen: {e}"));
    let db = Db::open(DB, sim_options(fs, seed, per_batch)).unwrap();
    assert_eq!(
        db.get(&probe).unwrap().as_deref(),
        Some(&b"after the crash"[..]),
        "{what}"
    );
    db.close().unwrap();
}

/// Mutating calls of seed `seed`'s whole workload, without a crash.
fn calls_of(seed: u64) -> u64 {
    let fs = SimFs::new();
    let db = run_workload(&fs, seed, &mut Model::default());
    if let Some(db) = db {
        db.close().unwrap();
    }
    fs.mutating_calls()
}

/// `VAR=a:b:c`, parsed: replays one case of a campaign (`STRATA_SIM_REPLAY=seed:point:tear`
/// for a power loss, `STRATA_SIM_FAULT_REPLAY=seed:call:errno` for an I/O error; with
/// `STRATA_SIM_TRACE=1` the file system prints each call).
fn replay(var: &str) -> Option<(u64, u64, u64)> {
    let v = std::env::var(var).ok()?;
    let p: Vec<u64> = v.split(':').map(|x| x.parse().expect("a:b:c")).collect();
    Some((p[0], p[1], p[2]))
}

fn crash_once(seed: u64, point: u64, tear: u64) {
    let fs = SimFs::new();
    fs.crash_at(point);
    let mut model = Model::default();
    drop(run_workload(&fs, seed, &mut model));
    fs.power_loss(tear);
    check_after_power_loss(
        &fs,
        seed,
        &model,
        &format!(
            "seed {seed}, crash at call {point}, tear seed {tear} \
             (replay: STRATA_SIM_REPLAY={seed}:{point}:{tear})"
        ),
    );
}

#[test]
fn power_loss_at_random_points_loses_nothing_durable() {
    if let Some((seed, point, tear)) = replay("STRATA_SIM_REPLAY") {
        return crash_once(seed, point, tear);
    }
    let seeds = env_u64("STRATA_SIM_SEEDS", 200);
    let all = std::env::var("STRATA_SIM_POINTS").is_ok_and(|v| v == "all");
    let per_seed = env_u64("STRATA_SIM_POINTS", 2);
    let mut points = 0u64;
    for seed in 0..seeds {
        let calls = calls_of(seed);
        assert!(calls > 100, "seed {seed}: only {calls} calls");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5eed);
        let chosen: Vec<u64> = if all {
            (1..=calls + 1).collect()
        } else {
            (0..per_seed).map(|_| rng.random_range(1..=calls)).collect()
        };
        for point in chosen {
            crash_once(seed, point, seed * 1_000_003 + point);
            points += 1;
        }
    }
    eprintln!("{seeds} seeds, {points} crash points: 0 lost durable writes, 0 unopenable");
}

fn fault_once(seed: u64, n: u64, errno: i32) {
    let fs = SimFs::new();
    fs.fail_at(n, errno);
    let mut model = Model::default();
    if let Some(db) = run_workload(&fs, seed, &mut model) {
        if db.close().is_ok() {
            model.all_durable();
        }
    }
    assert!(fs.fault_fired(), "seed {seed}: call {n} was not reached");
    fs.power_loss(seed * 31 + n);
    check_after_power_loss(
        &fs,
        seed,
        &model,
        &format!("seed {seed}, call {n} failing with errno {errno} (replay: STRATA_SIM_FAULT_REPLAY={seed}:{n}:{errno})"),
    );
}

#[test]
fn every_call_failing_with_eio_enospc_or_emfile_then_power_loss() {
    if let Some((seed, n, errno)) = replay("STRATA_SIM_FAULT_REPLAY") {
        return fault_once(seed, n, errno as i32);
    }
    let mut tried = 0u64;
    for seed in [1u64, 2] {
        let fs = SimFs::new();
        if let Some(db) = run_workload(&fs, seed, &mut Model::default()) {
            db.close().unwrap();
        }
        let points = fs.fault_points();
        for errno in [EIO, ENOSPC, EMFILE] {
            for n in 1..=points {
                fault_once(seed, n, errno);
                tried += 1;
            }
        }
    }
    eprintln!("{tried} faults injected: every one an error or a poisoned shard, never a loss");
}
