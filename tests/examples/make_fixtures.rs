//! Writes the format-v1 fixture databases into `tests/fixtures/v1/` (see
//! `strata_tests::fixtures`). Run once per format version, from the workspace root:
//! `cargo run -p strata-tests --example make_fixtures`. The output is committed; the fixture
//! test then reads those bytes with every later build. A fixture that exists is kept (remove
//! its folder to remake it), so that a new fixture is added without rewriting the others.

use strata_stellar::store::{synthetic, LedgerStore};
use strata_tests::fixtures::{
    self, FIXTURES, STELLAR_BY_CONTENT_NAME, STELLAR_ENTRIES, STELLAR_NAME,
};

fn main() {
    let root = fixtures::dir();
    for f in &FIXTURES {
        let dir = root.join(f.name);
        if !dir.exists() {
            fixtures::make(f, &dir).expect("make fixture");
        }
    }
    let dir = root.join(fixtures::HISTORY_NAME);
    if !dir.exists() {
        fixtures::make_history(&dir).expect("make history fixture");
    }
    // The version-1 store was made by a build that wrote stores by generation; this build
    // writes the by-content layout, so only that one can be remade.
    for name in [STELLAR_NAME, STELLAR_BY_CONTENT_NAME] {
        let dir = root.join(name);
        if dir.exists() {
            continue;
        }
        let buckets = tempfile::tempdir().unwrap();
        let sources = synthetic::write_buckets(buckets.path(), STELLAR_ENTRIES).unwrap();
        let mut store = LedgerStore::open(&dir).unwrap();
        store.import_buckets(1, &sources).unwrap();
        store.db().compact_all().unwrap();
        store.close().unwrap();
        let _ = std::fs::remove_file(dir.join("LOCK"));
    }
    println!("fixtures written to {}", root.display());
}
