//! Helpers shared by strata's cross-crate tests.

use std::collections::BTreeMap;
use std::path::Path;

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
