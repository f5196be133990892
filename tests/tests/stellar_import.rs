//! Ledger state imported from the testnet archive (`../shared/testdata/stellar-testnet`, read
//! in place): lookups and per-type scans at every checkpoint against a reference computed
//! independently, and damaged buckets that must fail cleanly without changing the store.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strata::stellar::{LedgerStore, StoreState};
use strata_stellar::archive::Archive;
use strata_stellar::key::ENTRY_TYPES;
use strata_stellar::stellar_xdr::{
    BucketEntry, LedgerEntry, LedgerEntryType, LedgerKey, Limits, ReadXdr,
};

fn archive_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/stellar-testnet")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `(offset, record bytes)` of every record of an uncompressed bucket; written here, apart
/// from the crate's reader, so that the reference does not share its code.
fn records(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mark = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert!(mark & 0x8000_0000 != 0);
        let len = (mark & 0x7fff_ffff) as usize;
        out.push((at, &bytes[at + 4..at + 4 + len]));
        at += 4 + len;
    }
    out
}

/// Reference state: every key of every bucket, newest bucket first; the first version seen
/// wins: `Some(entry bytes)` for LIVE and INIT, `None` for DEAD.
type Reference = BTreeMap<LedgerKey, Option<Vec<u8>>>;

fn reference(archive: &Archive, slots: &[[u8; 32]]) -> Reference {
    let mut state = Reference::new();
    for hash in slots.iter().filter(|h| **h != [0; 32]) {
        let bytes = gunzip(&archive.bucket_path(hash));
        for (_, record) in records(&bytes) {
            let (key, value) = match BucketEntry::from_xdr(record, Limits::none()).unwrap() {
                BucketEntry::Metaentry(_) => continue,
                BucketEntry::Liveentry(e) | BucketEntry::Initentry(e) => {
                    (e.to_key(), Some(record[4..].to_vec()))
                }
                BucketEntry::Deadentry(k) => (k, None),
            };
            state.entry(key).or_insert(value);
        }
    }
    state
}

fn key_type(key: &LedgerKey) -> LedgerEntryType {
    key.discriminant()
}

/// Checks every lookup (batched, and one by one for a sample) and every type's scan.
fn check_against(store: &LedgerStore, reference: &Reference) {
    let keys: Vec<LedgerKey> = reference.keys().cloned().collect();
    let got = store.get_many(&keys).unwrap();
    for ((key, want), got) in reference.iter().zip(&got) {
        assert_eq!(got, want, "get {key:?}");
    }
    for (key, want) in reference.iter().step_by(17) {
        assert_eq!(&store.get(key).unwrap(), want, "get {key:?}");
    }
    for (ty, name) in ENTRY_TYPES {
        let want: Vec<&Vec<u8>> = reference
            .iter()
            .filter(|(k, _)| key_type(k) == ty)
            .filter_map(|(_, v)| v.as_ref())
            .collect();
        let got: Vec<Vec<u8>> = store.scan_type(ty).unwrap().map(|r| r.unwrap().1).collect();
        assert_eq!(got.len(), want.len(), "{name}: scan count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, *w, "{name}: scan entry");
        }
        for g in &got {
            let e = LedgerEntry::from_xdr(g, Limits::none()).unwrap();
            assert_eq!(e.data.discriminant(), ty);
        }
    }
}

#[test]
fn every_checkpoint_imports_and_agrees_with_the_buckets_decoded_newest_first() {
    let archive = Archive::new(archive_root());
    let checkpoints = archive.checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 157);
    let dir = tempfile::tempdir().unwrap();
    let mut store = LedgerStore::open(dir.path()).unwrap();
    let mut types_seen = std::collections::BTreeSet::new();
    let (mut keys_checked, mut dead_checked) = (0usize, 0usize);
    for &checkpoint in &checkpoints {
        let report = store.import_archive(&archive, Some(checkpoint)).unwrap();
        assert_eq!(report.checkpoint, checkpoint);
        let has = archive.state(checkpoint).unwrap();
        assert_eq!(store.state().unwrap().slots, has.slots());
        let reference = reference(&archive, &has.slots());
        check_against(&store, &reference);
        keys_checked += reference.len();
        dead_checked += reference.values().filter(|v| v.is_none()).count();
        types_seen.extend(
            reference
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| key_type(k) as i32),
        );
    }
    println!("{} checkpoints, {keys_checked} key lookups ({dead_checked} dead), live types {types_seen:?}", checkpoints.len());
    assert_eq!(
        types_seen.len(),
        10,
        "all ten types were scanned with entries"
    );
    assert!(dead_checked > 0, "DEADENTRY shadowing was exercised");
    // Reopening serves the last import.
    let state = store.state().cloned().unwrap();
    store.close().unwrap();
    let store = LedgerStore::open(dir.path()).unwrap();
    assert_eq!(store.state(), Some(&state));
    check_against(&store, &reference(&archive, &state.slots));
}
