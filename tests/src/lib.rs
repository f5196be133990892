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
