//! Helpers shared by strata's cross-crate tests.

#[cfg(feature = "apps")]
pub mod fixtures;
#[cfg(feature = "apps")]
mod history_workload;
pub mod simfs;

#[cfg(feature = "apps")]
pub use history_workload::*;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every file under `dir` (recursively) with its bytes, for "nothing on disk changed" checks.
pub fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).expect("read file"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Options that create the database, with the given sharding.
pub fn options(sharding: strata::Sharding) -> strata::Options {
    let mut o = strata::Options::new();
    o.create_if_missing = true;
    o.sharding = sharding;
    o
}

/// `len` incompressible bytes (xorshift) determined by `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Keys per batch of the crash workload.
pub const CRASH_BATCH_KEYS: u64 = 8;

/// Options of the crash workload: two hash shards, tiny thresholds (compactions all the time).
pub fn crash_options(events: std::sync::Arc<dyn strata::EventSink>) -> strata::Options {
    let mut o = options(strata::Sharding::Hash { shards: 2 });
    o.events = events;
    o.compaction.policy = strata::PolicyOptions {
        wal_rotate_bytes: 64 << 10,
        wal_rotate_entries: 200,
        growth_factor: 2,
    };
    o
}

/// Key `i` of crash batch `batch`.
pub fn crash_key(batch: u64, i: u64) -> Vec<u8> {
    format!("b{batch:010}-{i}").into_bytes()
}

/// Value of key `i` of crash batch `batch`: 100 to 3,100 bytes, derived from both.
pub fn crash_value(batch: u64, i: u64) -> Vec<u8> {
    let len = 100 + ((batch * 31 + i * 17) % 3_000) as usize;
    (0..len)
        .map(|j| (batch as usize * 7 + i as usize * 13 + j) as u8)
        .collect()
}

/// Crash batch `batch`.
pub fn crash_batch(batch: u64) -> strata::Batch {
    let mut b = strata::Batch::new();
    for i in 0..CRASH_BATCH_KEYS {
        b.put(crash_key(batch, i), crash_value(batch, i));
    }
    b
}

/// A global allocator that counts live heap bytes and their peak; a test binary installs it
/// with `#[global_allocator] static ALLOCATOR: strata_tests::Counting = strata_tests::Counting;`.
pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[expect(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only counts and forwards to System"
)]
// SAFETY: every call forwards to `System` with the caller's arguments, unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Runs `f` and returns its result with the heap's peak growth above the level at the start
/// (meaningful only in a binary that installs [`Counting`]).
pub fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

/// The value the I/O-error campaign's workload writes under key `k`.
pub fn fault_value(k: u64) -> Vec<u8> {
    format!("value {k} ")
        .repeat(1 + (k % 5) as usize)
        .into_bytes()
}

/// Builds the LD_PRELOAD shim `tests/shim/NAME` into `out` with the system C compiler.
pub fn build_shim(name: &str, out: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("shim")
        .join(name);
    let lib = out.join(format!("lib{}.so", name.trim_end_matches(".c")));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) builds the shim");
    assert!(status.success(), "building {}", source.display());
    lib
}

/// What the database must hold after the run that printed `lines`.
pub fn check_fault_workload(db_dir: &Path, lines: &[String], what: &str) {
    if !db_dir.join("STRATA").exists() {
        // The fault stopped the database from being created: nothing was acknowledged.
        assert!(
            !lines.iter().any(|l| l.starts_with("synced")),
            "{what}: {lines:?}"
        );
        return;
    }
    let synced: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("synced ")?.parse().ok())
        .collect();
    let db = strata::Db::open(db_dir, options(strata::Sharding::Range { width: 100 }))
        .unwrap_or_else(|e| {
            panic!("{what}: the database does not open once the fault is gone: {e}")
        });
    for round in 0..3u64 {
        for k in (round * 100)..(round * 100 + 30) {
            let got = db.get(&k.to_be_bytes()).unwrap();
            let rewritten = match k {
                5 => Some(None),
                6 => Some(Some(b"six again".to_vec())),
                _ => None,
            };
            let first = Some(fault_value(k));
            let durable = synced.contains(&round);
            let ok = match (synced.contains(&3), rewritten) {
                (true, Some(v)) => got == v,
                (false, Some(v)) => got == v || got == first || (!durable && got.is_none()),
                (_, None) if durable => got == first,
                (_, None) => got.is_none() || got == first,
            };
            assert!(ok, "{what}: key {k} reads {got:?} after {lines:?}");
        }
    }
    let keys = db.prefix(b"").unwrap().count();
    assert!(keys <= 90, "{what}: {keys} keys, at most 90 were written");
    db.close().unwrap();
}

/// One step of a seeded random workload for the crash campaigns.
#[derive(Clone, Debug)]
pub enum CrashOp {
    /// Put a value under a key.
    Put(u64, Vec<u8>),
    /// Delete a key.
    Delete(u64),
    /// Puts (`Some`) and deletes (`None`) as one batch.
    Batch(Vec<(u64, Option<Vec<u8>>)>),
    /// `Db::sync`: everything before it is durable once it returns.
    Sync,
    /// `Db::compact_all`.
    Compact,
    /// Close (which syncs) and open again.
    Reopen,
}

/// Keys of the random crash workloads: `0..CRASH_KEYS`, range shards of 10.
pub const CRASH_KEYS: u64 = 40;

/// The random workload of `seed`: whether every write is synced (`SyncPerBatch`), and its ops.
pub fn crash_ops(seed: u64) -> (bool, Vec<CrashOp>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let per_batch = rng.random_bool(0.25);
    let value = |rng: &mut rand::rngs::SmallRng, i: usize| {
        let len = if rng.random_bool(0.2) {
            rng.random_range(1024..3000)
        } else {
            rng.random_range(0..200)
        };
        let mut v = format!("seed {seed} op {i} ").into_bytes();
        v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
        v
    };
    let ops = (0..120)
        .map(|i| match rng.random_range(0..100) {
            0..60 => CrashOp::Put(rng.random_range(0..CRASH_KEYS), value(&mut rng, i)),
            60..75 => CrashOp::Delete(rng.random_range(0..CRASH_KEYS)),
            75..85 => CrashOp::Batch(
                (0..rng.random_range(2..6))
                    .map(|j| {
                        let k = rng.random_range(0..CRASH_KEYS);
                        let v = rng.random_bool(0.8).then(|| value(&mut rng, i * 10 + j));
                        (k, v)
                    })
                    .collect(),
            ),
            85..95 => CrashOp::Sync,
            95..98 => CrashOp::Compact,
            _ => CrashOp::Reopen,
        })
        .collect();
    (per_batch, ops)
}

/// Checks the database in `db_dir` after a crash of the random workload of `seed`, whose
/// child printed `lines` (`durable I`: every op up to I was acknowledged as durable). Each key
/// must hold its value as of the last durable op, or one that an op after it wrote (the crash
/// may come after those reached the disk); never anything else. The database must open.
pub fn check_crash_ops(db_dir: &Path, seed: u64, lines: &[String], what: &str) {
    use std::collections::BTreeMap;
    if !db_dir.join("STRATA").exists() {
        assert!(
            !lines.iter().any(|l| l.starts_with("durable")),
            "{what}: {lines:?}"
        );
        return;
    }
    let durable: Option<usize> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("durable ")?.parse().ok())
        .max();
    let (_, ops) = crash_ops(seed);
    let mut model: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
    let mut later: BTreeMap<u64, Vec<Option<Vec<u8>>>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let writes: Vec<(u64, Option<Vec<u8>>)> = match op {
            CrashOp::Put(k, v) => vec![(*k, Some(v.clone()))],
            CrashOp::Delete(k) => vec![(*k, None)],
            CrashOp::Batch(b) => b.clone(),
            _ => Vec::new(),
        };
        for (k, v) in writes {
            if durable.is_some_and(|d| i <= d) {
                model.insert(k, v);
            } else {
                later.entry(k).or_default().push(v);
            }
        }
    }
    let mut o = options(strata::Sharding::Range { width: 10 });
    o.compaction.auto = false;
    let db = strata::Db::open(db_dir, o)
        .unwrap_or_else(|e| panic!("{what}: the database does not open after the crash: {e}"));
    for k in 0..CRASH_KEYS {
        let got = db.get(&k.to_be_bytes()).unwrap();
        let durable_value = model.get(&k).cloned().flatten();
        let ok = got == durable_value || later.get(&k).is_some_and(|vs| vs.contains(&got));
        assert!(
            ok,
            "{what}: key {k} reads {:?}, durable {:?}, lines {lines:?}",
            got.map(|v| v.len()),
            durable_value.map(|v| v.len())
        );
    }
    let all = db.prefix(b"").unwrap().count() as u64;
    assert!(all <= CRASH_KEYS, "{what}: {all} keys");
    db.check_invariants();
    db.close().unwrap();
}
