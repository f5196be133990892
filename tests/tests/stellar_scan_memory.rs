//! A per-type scan of a ledger store holds memory independent of the number of entries:
//! measured with a counting global allocator over stores of 200,000 and 2,000,000 synthetic
//! TTL entries, with a newer bucket that shadows every tenth key (half of them deleted).
//!
//! One test function, so no other test of this binary allocates while it measures.

use std::path::Path;

use strata_stellar::stellar_xdr::{LedgerEntry, LedgerEntryData, LedgerEntryType, Limits, ReadXdr};
use strata_stellar::store::synthetic::{self, expected_live_until, key_hash};
use strata_stellar::store::LedgerStore;
use strata_tests::peak_growth;

#[global_allocator]
static ALLOCATOR: strata_tests::Counting = strata_tests::Counting;

/// Imports the synthetic bucket list of `n` entries.
fn build(dir: &Path, n: u64) -> LedgerStore {
    let sources = synthetic::write_buckets(dir, n).unwrap();
    let mut store = LedgerStore::open(dir.join("db")).unwrap();
    let report = store.import_buckets(1, &sources).unwrap();
    assert_eq!(report.entries, n + n.div_ceil(10));
    store
}

/// Scans the TTL entries, checking each, and returns the peak heap growth while scanning.
fn scan_peak(store: &LedgerStore, n: u64) -> usize {
    let ((), peak) = peak_growth(|| {
        let mut want = (0..n).filter_map(|i| expected_live_until(i).map(|v| (i, v)));
        let mut count = 0u64;
        for item in store.scan_type(LedgerEntryType::Ttl).unwrap() {
            let (_, bytes) = item.unwrap();
            let entry = LedgerEntry::from_xdr(&bytes, Limits::none()).unwrap();
            let LedgerEntryData::Ttl(ttl) = entry.data else {
                panic!("not a TTL entry")
            };
            let (i, v) = want.next().expect("no more entries expected");
            assert_eq!((ttl.key_hash, ttl.live_until_ledger_seq), (key_hash(i), v));
            count += 1;
        }
        assert!(want.next().is_none(), "scan ended early after {count}");
        assert_eq!(count, synthetic::expected_live(n));
    });
    peak
}

#[test]
fn type_scan_memory_does_not_grow_with_the_entry_count() {
    let mut peaks = Vec::new();
    for n in [200_000u64, 2_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = build(dir.path(), n);
        store.db().wait_for_compactions();
        let peak = scan_peak(&store, n);
        println!("{n} entries: scan peak heap growth {peak} bytes");
        peaks.push(peak);
        store.close().unwrap();
    }
    // A set of seen keys would need >= 32 bytes per key: 6 MB at 200,000, 64 MB at 2M.
    assert!(
        peaks[1] < 2 << 20,
        "scan of 2M entries grew the heap by {} bytes",
        peaks[1]
    );
    assert!(
        peaks[1] <= peaks[0] + (256 << 10),
        "peak grew with the entry count: {peaks:?}"
    );
}
