//! The reader, key order and merges against the real testnet archive in
//! `../shared/testdata/stellar-testnet` (read in place, never copied into the project).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_stellar::archive::{check_archive, Archive};
use strata_stellar::bucket::{BucketReader, EntryKind};
use strata_stellar::merge::ListType;
use strata_stellar::stellar_xdr::{LedgerEntry, LedgerKey, Limits, ReadXdr, WriteXdr};

fn archive_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/stellar-testnet")
}

fn bucket_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bucket_files(&path, out);
        } else if path.to_string_lossy().ends_with(".xdr.gz") {
            out.push(path);
        }
    }
}

fn name_hash(path: &Path) -> [u8; 32] {
    let name = path.file_name().unwrap().to_str().unwrap();
    let hex = name
        .trim_start_matches("bucket-")
        .trim_end_matches(".xdr.gz");
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).unwrap();
    out
}

/// The XDR bytes of a record's `LedgerKey` (re-encoded here only to count where XDR order and
/// `LedgerEntryIdCmp` disagree).
fn xdr_key(kind: EntryKind, payload: &[u8]) -> Vec<u8> {
    let key = match kind {
        EntryKind::Dead => LedgerKey::from_xdr(payload, Limits::none()).unwrap(),
        _ => LedgerEntry::from_xdr(payload, Limits::none())
            .unwrap()
            .to_key(),
    };
    key.to_xdr(Limits::none()).unwrap()
}

#[test]
fn every_archive_bucket_reads_in_ledger_entry_id_order_with_its_name_as_hash() {
    let mut files = Vec::new();
    bucket_files(&archive_root().join("bucket"), &mut files);
    assert_eq!(files.len(), 1169, "buckets in the test archive");
    let mut types = BTreeMap::new();
    let (mut records, mut xdr_disagreements, mut largest) = (0u64, 0u64, (0u64, 0u64));
    for path in &files {
        let mut reader = BucketReader::open(path, Some(name_hash(path))).unwrap();
        let mut prev: Option<Vec<u8>> = None;
        while let Some(r) = reader.next_record().unwrap() {
            *types
                .entry(u32::from_be_bytes(r.key[..4].try_into().unwrap()) ^ 0x8000_0000)
                .or_insert(0u64) += 1;
            let x = xdr_key(r.kind, r.payload());
            if let Some(p) = &prev {
                if *p >= x {
                    xdr_disagreements += 1;
                }
            }
            prev = Some(x);
        }
        records += reader.records();
        if reader.offset() > largest.0 {
            largest = (
                reader.offset(),
                reader.records() + u64::from(reader.meta().is_some()),
            );
        }
        assert_eq!(reader.finish().unwrap(), name_hash(path));
    }
    println!("{records} records, types {types:?}, XDR order disagrees on {xdr_disagreements} adjacent pairs");
    assert_eq!(types.len(), 10, "all ten entry types occur");
    assert_eq!(
        largest,
        (2_640_348, 12_237),
        "largest bucket: bytes and records (METAENTRY included)"
    );
    assert_eq!(xdr_disagreements, 388);
}

#[test]
fn check_archive_reproduces_every_merge_the_archive_lets_it_reconstruct() {
    let archive = Archive::new(archive_root());
    let scratch = tempfile::tempdir().unwrap();
    let mut per_level: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let mut chained = 0;
    let mut not_checkable: BTreeMap<u32, u32> = BTreeMap::new();
    check_archive(&archive, scratch.path(), |c| {
        assert_eq!(
            c.merge.list,
            ListType::Live,
            "a protocol 22 archive has no hot archive"
        );
        if !c.checkable() {
            *not_checkable.entry(c.merge.level).or_insert(0) += 1;
            return;
        }
        assert!(
            c.matched(),
            "merge into level {} at ledger {}: {:?} (expected {})",
            c.merge.level,
            c.merge.ledger,
            c.outcome,
            hex::encode(c.expected)
        );
        let e = per_level.entry(c.merge.level).or_default();
        e.0 += 1;
        if c.chained > 0 {
            e.1 += 1;
            chained += 1;
        }
        assert_eq!(c.shadows, 0, "protocol 22 merges take no shadows");
    })
    .unwrap();
    println!("reproduced (chained) merges per level: {per_level:?}");
    println!("not checkable per level: {not_checkable:?}");
    // Levels 1 and 2 merge several times between two checkpoints, so no state shows their
    // inputs and outputs together; each of the 156 pairs of consecutive checkpoints gives one
    // level-3 merge whose older input is the output of the merge before it (chained).
    assert_eq!(
        per_level,
        BTreeMap::from([(3, (156, 156)), (4, (77, 0)), (5, (18, 0)), (6, (3, 0))])
    );
    assert_eq!(chained, 156);
    assert!(
        std::fs::read_dir(scratch.path()).unwrap().next().is_none(),
        "scratch files removed"
    );
}
