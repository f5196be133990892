//! stellar-core's merge rules, on buckets these tests build: shadows before protocol 12 (all
//! entries before 11; LIVE only from 11), the protocol a merge runs at, the legality of INIT
//! and META entries, and the protocol-23 hot archive. Every expected output is framed and
//! hashed here by hand, independently of strata's writer.

use std::path::{Path, PathBuf};

use strata_stellar::bucket::BucketReader;
use strata_stellar::merge::{merge, merge_files, ListType, Merged};
use strata_stellar::Error;

use crate::common::*;

fn open(path: &Path) -> BucketReader {
    BucketReader::open(path, None).unwrap()
}

fn merge_paths(
    dir: &Path,
    old: &Path,
    new: &Path,
    shadows: &[PathBuf],
    keep_tombstones: bool,
) -> Result<Merged, Error> {
    merge_files(old, new, shadows, &dir.join("out.xdr"), keep_tombstones)
}

/// The pubnet case (protocol 8, no METAENTRY anywhere): the merge into level 4 at ledger
/// 12000128 of an empty curr and a snap of 8 offer records, with the curr and snap buckets of
/// levels 0 to 3 as shadows. stellar-core's output holds only the 2 DEAD offers no shadow
/// holds; a merge without shadows keeps all 8.
#[test]
fn pubnet_level_4_merge_keeps_only_the_unshadowed_offers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let snap: Vec<Rec> = vec![
        (LIVE, Ty::Offer, 1, 10),
        (LIVE, Ty::Offer, 2, 10),
        (DEAD, Ty::Offer, 3, 0),
        (LIVE, Ty::Offer, 4, 10),
        (LIVE, Ty::Offer, 5, 10),
        (DEAD, Ty::Offer, 6, 0),
        (LIVE, Ty::Offer, 7, 10),
        (LIVE, Ty::Offer, 8, 10),
    ];
    let snap_path = write(d, "snap.xdr", None, &snap);
    // Levels 0-3, curr then snap, newest first; a DEAD in a shadow shadows too.
    let shadow_recs: [&[Rec]; 8] = [
        &[(LIVE, Ty::Offer, 1, 11)],
        &[(DEAD, Ty::Offer, 2, 0)],
        &[(LIVE, Ty::Offer, 4, 11), (LIVE, Ty::Offer, 5, 11)],
        &[],
        &[],
        &[(LIVE, Ty::Offer, 7, 11), (LIVE, Ty::Offer, 9, 11)],
        &[(LIVE, Ty::Offer, 8, 11)],
        &[(LIVE, Ty::Ttl, 1, 11)],
    ];
    let shadows: Vec<PathBuf> = shadow_recs
        .iter()
        .enumerate()
        .map(|(i, r)| write(d, &format!("shadow-{i}.xdr"), None, r))
        .collect();
    let out = d.join("out.xdr");
    let shadow_readers = shadows.iter().map(|p| open(p)).collect();
    let merged = merge(
        BucketReader::empty(),
        open(&snap_path),
        shadow_readers,
        &out,
        true,
    )
    .unwrap();
    let expected = bucket_bytes(None, &[(DEAD, Ty::Offer, 3, 0), (DEAD, Ty::Offer, 6, 0)]);
    assert_eq!(merged.summary.hash, name(&expected));
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    assert_eq!((merged.protocol, merged.shadowed), (0, 6));
    assert_eq!(merged.summary.records, 2);

    let unshadowed = merge(
        BucketReader::empty(),
        open(&snap_path),
        Vec::new(),
        &out,
        true,
    )
    .unwrap();
    assert_eq!(unshadowed.summary.hash, name(&bucket_bytes(None, &snap)));
}

/// Before protocol 11 a shadow drops any entry; from 11 it drops only LIVE entries, and the
/// equal-key rules run before the shadows are asked.
#[test]
fn shadow_rules_before_and_from_protocol_11() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // No METAENTRY: protocol 0, shadows drop LIVE and DEAD alike.
    let old = write(
        d,
        "old0.xdr",
        None,
        &[(LIVE, Ty::Offer, 1, 1), (DEAD, Ty::Offer, 2, 0)],
    );
    let new = write(
        d,
        "new0.xdr",
        None,
        &[
            (LIVE, Ty::Offer, 3, 2),
            (DEAD, Ty::Offer, 4, 0),
            (LIVE, Ty::Offer, 5, 2),
        ],
    );
    let shadow = write(
        d,
        "shadow0.xdr",
        None,
        &[
            (LIVE, Ty::Offer, 2, 3),
            (DEAD, Ty::Offer, 3, 0),
            (LIVE, Ty::Offer, 5, 3),
        ],
    );
    let m = merge_paths(d, &old, &new, &[shadow], true).unwrap();
    let expected = bucket_bytes(None, &[(LIVE, Ty::Offer, 1, 1), (DEAD, Ty::Offer, 4, 0)]);
    assert_eq!(
        (m.summary.hash, m.protocol, m.shadowed),
        (name(&expected), 0, 3)
    );

    // Protocol 11: INIT and DEAD survive their shadows; LIVE (including a LIVE made from
    // DEAD + INIT) does not; INIT + LIVE stays INIT and survives.
    let meta11 = || Some(meta_record(11, None));
    let old = write(
        d,
        "old11.xdr",
        meta11(),
        &[
            (INIT, Ty::Offer, 1, 1),
            (DEAD, Ty::Offer, 2, 0),
            (LIVE, Ty::Offer, 6, 1),
            (INIT, Ty::Offer, 7, 1),
            (DEAD, Ty::Offer, 8, 0),
        ],
    );
    let new = write(
        d,
        "new11.xdr",
        meta11(),
        &[
            (LIVE, Ty::Offer, 3, 2),
            (INIT, Ty::Offer, 4, 2),
            (LIVE, Ty::Offer, 7, 2),
            (INIT, Ty::Offer, 8, 2),
        ],
    );
    let all: Vec<Rec> = (1..=8).map(|i| (LIVE, Ty::Offer, i, 9)).collect();
    let shadow_a = write(d, "shadow11a.xdr", meta11(), &all[..4]);
    let shadow_b = write(d, "shadow11b.xdr", meta11(), &all[4..]);
    let m = merge_paths(d, &old, &new, &[shadow_a, shadow_b], true).unwrap();
    let expected = bucket_bytes(
        Some(meta_record(11, None)),
        &[
            (INIT, Ty::Offer, 1, 1),
            (DEAD, Ty::Offer, 2, 0),
            (INIT, Ty::Offer, 4, 2),
            (INIT, Ty::Offer, 7, 2),
        ],
    );
    assert_eq!(m.summary.hash, name(&expected));
    assert_eq!(std::fs::read(d.join("out.xdr")).unwrap(), expected);
    assert_eq!((m.protocol, m.shadowed), (11, 3));
}

/// The protocol counts shadows below 12 only; shadows given to a protocol-12 merge are refused.
#[test]
fn merge_protocol_counts_old_shadows_and_refuses_shadows_from_12() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = write(d, "old.xdr", None, &[(LIVE, Ty::Offer, 1, 1)]);
    let new = write(d, "new.xdr", None, &[(DEAD, Ty::Offer, 2, 0)]);

    // A protocol-11 shadow lifts the merge to 11: a METAENTRY, and DEAD survives the shadow.
    let s11 = write(
        d,
        "s11.xdr",
        Some(meta_record(11, None)),
        &[(LIVE, Ty::Offer, 2, 5)],
    );
    let m = merge_paths(d, &old, &new, &[s11], true).unwrap();
    let expected = bucket_bytes(
        Some(meta_record(11, None)),
        &[(LIVE, Ty::Offer, 1, 1), (DEAD, Ty::Offer, 2, 0)],
    );
    assert_eq!((m.summary.hash, m.protocol), (name(&expected), 11));

    // A protocol-12 shadow does not count toward the version, but still shadows.
    let s12 = write(
        d,
        "s12.xdr",
        Some(meta_record(12, None)),
        &[(LIVE, Ty::Offer, 2, 5)],
    );
    let m = merge_paths(d, &old, &new, std::slice::from_ref(&s12), true).unwrap();
    let expected = bucket_bytes(None, &[(LIVE, Ty::Offer, 1, 1)]);
    assert_eq!((m.summary.hash, m.protocol), (name(&expected), 0));

    // Inputs at 12 take no shadows.
    let old12 = write(
        d,
        "old12.xdr",
        Some(meta_record(12, None)),
        &[(LIVE, Ty::Offer, 1, 1)],
    );
    let err = merge_paths(d, &old12, &new, &[s12], true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShadowsNotSupported {
                protocol: 12,
                shadows: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// INIT and META before protocol 11 are errors naming the bucket and the record's offset.
#[test]
fn init_and_meta_before_protocol_11_are_illegal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = (LIVE, Ty::Offer, 1, 1);
    let old = write(d, "old.xdr", None, &[first, (INIT, Ty::Offer, 2, 1)]);
    let new = write(d, "new.xdr", None, &[(LIVE, Ty::Offer, 3, 1)]);
    let err = merge_paths(d, &old, &new, &[], true).unwrap_err();
    let init_offset = 4 + record(first).len() as u64;
    match &err {
        Error::IllegalEntry {
            bucket,
            offset,
            entry: "INITENTRY",
            protocol: 0,
            ..
        } => assert_eq!((bucket, *offset), (&old, init_offset)),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("old.xdr") && err.to_string().contains(&init_offset.to_string())
    );
    assert!(
        !d.join("out.xdr.tmp").exists() && !d.join("out.xdr").exists(),
        "a failed merge leaves nothing beside its output"
    );

    let meta10 = write(d, "meta10.xdr", Some(meta_record(10, None)), &[first]);
    let err = merge_paths(d, &meta10, &new, &[], true).unwrap_err();
    assert!(
        matches!(&err, Error::IllegalEntry { bucket, offset: 0, entry: "METAENTRY", protocol: 10, .. } if bucket == &meta10),
        "{err}"
    );
    // At 11 the same INIT is legal.
    let new11 = write(
        d,
        "new11.xdr",
        Some(meta_record(11, None)),
        &[(LIVE, Ty::Offer, 3, 1)],
    );
    merge_paths(d, &old, &new11, &[], true).unwrap();
}

/// The hot archive: the newer record wins, restored tombstones go at the last level, and
/// repeats, INIT records, classic entries, shadows and live inputs are refused.
#[test]
fn hot_archive_merge_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hot = || Some(meta_record(23, Some(1)));
    let old = write(
        d,
        "old.xdr",
        hot(),
        &[
            (ARCHIVED, Ty::Data, 1, 1),
            (ARCHIVED, Ty::Data, 2, 1),
            (RESTORED, Ty::Data, 3, 0),
        ],
    );
    let new = write(
        d,
        "new.xdr",
        hot(),
        &[(RESTORED, Ty::Data, 1, 0), (ARCHIVED, Ty::Data, 4, 2)],
    );
    let m = merge_paths(d, &old, &new, &[], true).unwrap();
    let expected = bucket_bytes(
        hot(),
        &[
            (RESTORED, Ty::Data, 1, 0),
            (ARCHIVED, Ty::Data, 2, 1),
            (RESTORED, Ty::Data, 3, 0),
            (ARCHIVED, Ty::Data, 4, 2),
        ],
    );
    assert_eq!(
        (m.summary.hash, m.protocol, m.list),
        (name(&expected), 23, ListType::HotArchive)
    );
    let m = merge_paths(d, &old, &new, &[], false).unwrap();
    let expected = bucket_bytes(
        hot(),
        &[(ARCHIVED, Ty::Data, 2, 1), (ARCHIVED, Ty::Data, 4, 2)],
    );
    assert_eq!(m.summary.hash, name(&expected));

    let twice = write(d, "twice.xdr", hot(), &[(ARCHIVED, Ty::Data, 2, 5)]);
    let err = merge_paths(d, &old, &twice, &[], true).unwrap_err();
    assert!(
        matches!(&err, Error::HotArchive { bucket, .. } if bucket == &twice),
        "{err}"
    );

    let classic = write(d, "classic.xdr", hot(), &[(ARCHIVED, Ty::Offer, 9, 5)]);
    let err = merge_paths(d, &old, &classic, &[], true).unwrap_err();
    assert!(
        matches!(&err, Error::HotArchive { offset, .. } if *offset > 0),
        "{err}"
    );

    let init = write(d, "init.xdr", hot(), &[(INIT, Ty::Data, 9, 5)]);
    let err = merge_paths(d, &old, &init, &[], true).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::IllegalEntry {
                entry: "INITENTRY",
                ..
            }
        ),
        "{err}"
    );

    let err = merge_paths(d, &old, &new, std::slice::from_ref(&twice), true).unwrap_err();
    assert!(matches!(&err, Error::ShadowsNotSupported { .. }), "{err}");

    let live = write(
        d,
        "live.xdr",
        Some(meta_record(23, Some(0))),
        &[(LIVE, Ty::Data, 9, 5)],
    );
    let err = merge_paths(d, &old, &live, &[], true).unwrap_err();
    assert!(err.to_string().contains("hot_archive"), "{err}");
}

/// The output replaces only a regular file, never an input named like its temporary file; more
/// shadows than any merge takes are refused before they are opened.
#[test]
fn merge_output_and_shadow_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = write(d, "old.xdr", None, &[(LIVE, Ty::Offer, 1, 1)]);
    let new = write(d, "new.xdr", None, &[(LIVE, Ty::Offer, 2, 1)]);

    // An input called `<out>.tmp` is neither truncated nor blamed.
    let input_tmp = d.join("x.tmp");
    std::fs::copy(&new, &input_tmp).unwrap();
    let before = std::fs::read(&input_tmp).unwrap();
    let err = merge_files(&old, &input_tmp, &[], &d.join("x"), true).unwrap_err();
    assert!(
        err.to_string().contains("x.tmp") && err.to_string().contains("exists"),
        "{err}"
    );
    assert_eq!(std::fs::read(&input_tmp).unwrap(), before);

    // A directory (or FIFO, device, link) at the output is not replaced.
    let out_dir = d.join("outdir");
    std::fs::create_dir(&out_dir).unwrap();
    let err = merge_files(&old, &new, &[], &out_dir, true).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(out_dir.is_dir() && !d.join("outdir.tmp").exists());

    let shadows = vec![old.clone(); strata_stellar::MAX_SHADOWS + 1];
    let err = merge_files(&old, &new, &shadows, &d.join("y"), true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyShadows {
                given: 19,
                limit: 18
            }
        ),
        "{err}"
    );
}
