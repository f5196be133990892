//! Ledger state imported from the testnet archive (`../shared/testdata/stellar-testnet`, read
//! in place): lookups and per-type scans at every checkpoint against a reference computed
//! independently, and damaged buckets that must fail cleanly without changing the store.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use strata_stellar::archive::Archive;
use strata_stellar::key::ENTRY_TYPES;
use strata_stellar::stellar_xdr::{
    BucketEntry, LedgerEntry, LedgerEntryType, LedgerKey, Limits, ReadXdr,
};
use strata_stellar::store::{Error, LedgerStore};

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

/// Everything a reader can see: the state, and every type's scan.
fn visible(store: &LedgerStore) -> (Option<strata_stellar::store::StoreState>, Vec<Vec<Vec<u8>>>) {
    let scans = ENTRY_TYPES
        .iter()
        .map(|(ty, _)| {
            store
                .scan_type(*ty)
                .unwrap()
                .map(|r| r.unwrap().1)
                .collect()
        })
        .collect();
    (store.state().cloned(), scans)
}

/// Bucket keys in the database (records and markers), of every bucket it holds.
fn raw_data_keys(store: &LedgerStore) -> usize {
    // Bucket records (0x02) and whole-bucket markers (0x03); no version-1 keys (0x01) remain.
    assert_eq!(store.db().prefix(&[0x01]).unwrap().count(), 0);
    store.db().prefix(&[0x02]).unwrap().count() + store.db().prefix(&[0x03]).unwrap().count()
}

#[test]
fn damaged_buckets_fail_naming_bucket_and_offset_and_change_nothing_visible() {
    let archive = Archive::new(archive_root());
    let latest = archive.latest().unwrap();
    // A temporary archive of the latest checkpoint, whose largest bucket gets damaged.
    let tmp = tempfile::tempdir().unwrap();
    let copy = Archive::new(tmp.path().join("archive"));
    let has_path = copy.has_path(latest.current_ledger);
    std::fs::create_dir_all(has_path.parent().unwrap()).unwrap();
    std::fs::copy(archive.has_path(latest.current_ledger), &has_path).unwrap();
    let mut largest = ([0u8; 32], 0u64);
    for h in latest.slots().iter().filter(|h| **h != [0; 32]) {
        let dst = copy.bucket_path(h);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let len = std::fs::copy(archive.bucket_path(h), &dst).unwrap();
        if len > largest.1 {
            largest = (*h, len);
        }
    }
    let target = copy.bucket_path(&largest.0);
    let original_gz = std::fs::read(&target).unwrap();
    let plain = gunzip(&target);
    let recs = records(&plain);
    let mid = recs.len() / 2;
    let (at_mid, rec_mid) = recs[mid];
    let (at_next, rec_next) = recs[mid + 1];

    let mut damages: Vec<(&str, Vec<u8>, Option<u64>)> = Vec::new();
    damages.push((
        "truncated gzip file",
        original_gz[..original_gz.len() / 2].to_vec(),
        None,
    ));
    let mut flipped_gz = original_gz.clone();
    flipped_gz[original_gz.len() / 2] ^= 0x55;
    damages.push(("flipped byte in the gzip stream", flipped_gz, None));
    let mut flipped = plain.clone();
    flipped[at_mid + 4 + rec_mid.len() / 2] ^= 0x01;
    damages.push(("flipped byte in a record", gzip(&flipped), None));
    let mut swapped = plain[..at_mid].to_vec();
    swapped.extend_from_slice(&plain[at_next..at_next + 4 + rec_next.len()]);
    swapped.extend_from_slice(&plain[at_mid..at_mid + 4 + rec_mid.len()]);
    swapped.extend_from_slice(&plain[at_next + 4 + rec_next.len()..]);
    let second = (at_mid + 4 + rec_next.len()) as u64;
    damages.push(("two records out of order", gzip(&swapped), Some(second)));
    let mut bad_mark = plain.clone();
    bad_mark[at_mid] &= 0x7f;
    damages.push((
        "record mark without its high bit",
        gzip(&bad_mark),
        Some(at_mid as u64),
    ));
    let short = plain[..at_mid + 4 + rec_mid.len() / 2].to_vec();
    damages.push((
        "stream ends inside a record",
        gzip(&short),
        Some(at_mid as u64),
    ));
    damages.push(("not gzip at all", b"\x1f\x8bnot really gzip".to_vec(), None));

    let dir = tempfile::tempdir().unwrap();
    let mut store = LedgerStore::open(dir.path()).unwrap();
    store.import_archive(&archive, Some(4095)).unwrap();
    let before = visible(&store);
    let raw_before = raw_data_keys(&store);
    assert!(raw_before > 0);
    for (what, bytes, offset) in damages {
        std::fs::write(&target, &bytes).unwrap();
        let err = store
            .import_archive(&copy, Some(latest.current_ledger))
            .expect_err(what);
        let Error::Bucket(e) = &err else {
            panic!("{what}: {err}");
        };
        assert_eq!(e.file(), target, "{what}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&target.display().to_string()),
            "{what}: {message}"
        );
        assert!(
            e.offset().is_some() && message.contains("offset"),
            "{what}: {message}"
        );
        if let Some(o) = offset {
            assert_eq!(e.offset(), Some(o), "{what}: {message}");
        }
        println!("{what}: {message}");
        assert!(visible(&store) == before, "{what}: visible state changed");
        assert_eq!(
            raw_data_keys(&store),
            raw_before,
            "{what}: keys of the failed import remain"
        );
    }
    // After a reopen the store still serves the earlier import, and the repaired archive
    // imports.
    store.close().unwrap();
    let mut store = LedgerStore::open(dir.path()).unwrap();
    assert!(visible(&store) == before);
    std::fs::write(&target, &original_gz).unwrap();
    store
        .import_archive(&copy, Some(latest.current_ledger))
        .unwrap();
    check_against(&store, &reference(&archive, &latest.slots()));
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    strata_tests::snapshot_dir(dir)
        .values()
        .map(|b| b.len() as u64)
        .sum()
}

#[test]
fn a_failed_import_leaves_no_residue_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let buckets = tempfile::tempdir().unwrap();
    let sources = strata_stellar::store::synthetic::write_buckets(buckets.path(), 20_000).unwrap();
    let mut store = LedgerStore::open(dir.path().join("store")).unwrap();
    store.import_buckets(1, &sources).unwrap();
    let before = disk_bytes(dir.path());
    let state = store.state().cloned();
    // The older (larger) bucket is read to its end, every entry written, then its hash fails.
    let mut bad = sources.clone();
    bad[1].expected = Some([7; 32]);
    assert!(store.import_buckets(2, &bad).is_err());
    assert_eq!(store.state().cloned(), state);
    let after = disk_bytes(dir.path());
    assert!(
        after <= before + before / 10,
        "a failed import grew the store from {before} to {after} bytes"
    );
    store.close().unwrap();
}
