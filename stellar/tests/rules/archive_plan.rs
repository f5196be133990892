//! `check_archive` on a small archive these tests build, of before protocol 11 (no METAENTRY):
//! shadows taken from the checkpoint state before a merge, a merge output recorded in a level's
//! `next` (state 1), and a merge's inputs and shadows recorded in `next` (state 2) feeding a
//! chained merge; and a protocol-23 hot archive list. Expected outputs are built by hand.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::common::*;
use serde_json::{json, Value};
use strata_stellar::archive::{check_archive, Archive, MergeCheck, Outcome, NUM_LEVELS};
use strata_stellar::bucket::EMPTY_BUCKET;
use strata_stellar::merge::ListType;

/// A level of a state file: curr, snap, and `next` as JSON.
#[derive(Clone)]
struct Lvl {
    curr: [u8; 32],
    snap: [u8; 32],
    next: Value,
}

impl Default for Lvl {
    fn default() -> Lvl {
        Lvl {
            curr: EMPTY_BUCKET,
            snap: EMPTY_BUCKET,
            next: json!({"state": 0}),
        }
    }
}

/// Writes the state file of checkpoint `ledger` (version 2 with a hot archive list).
fn write_has(root: &Path, ledger: u32, levels: &[Lvl], hot: &[Lvl]) {
    let archive = Archive::new(root);
    let path = archive.has_path(ledger);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let list = |levels: &[Lvl]| -> Vec<Value> {
        (0..NUM_LEVELS)
            .map(|i| {
                let l = levels.get(i).cloned().unwrap_or_default();
                json!({"curr": hex::encode(l.curr), "snap": hex::encode(l.snap), "next": l.next})
            })
            .collect()
    };
    let has = json!({"version": 2, "currentLedger": ledger, "currentBuckets": list(levels),
        "hotArchiveBuckets": list(hot)});
    std::fs::write(&path, has.to_string()).unwrap();
    let well_known = root.join(".well-known");
    std::fs::create_dir_all(&well_known).unwrap();
    std::fs::write(well_known.join("stellar-history.json"), has.to_string()).unwrap();
}

/// Stores a bucket in the archive, gzipped under its name; returns the name.
fn put_bucket(root: &Path, recs: &[Rec]) -> [u8; 32] {
    put_bucket_with(root, None, recs)
}

fn put_bucket_with(root: &Path, meta: Option<Vec<u8>>, recs: &[Rec]) -> [u8; 32] {
    let bytes = bucket_bytes(meta, recs);
    let hash = name(&bytes);
    let path = Archive::new(root).bucket_path(&hash);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap();
    hash
}

fn offers(kind: i32, ids: &[u8], v: u32) -> Vec<Rec> {
    ids.iter().map(|&i| (kind, Ty::Offer, i, v)).collect()
}

#[test]
fn check_archive_uses_prior_states_next_records_and_chains_for_pre_protocol_12_merges() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut states: BTreeMap<u32, Vec<Lvl>> = [63, 127, 191, 255, 319]
        .into_iter()
        .map(|c| (c, vec![Lvl::default(); NUM_LEVELS]))
        .collect();

    // A: the merge into level 4 at ledger 128 (the first: empty curr). Its snap is level 3's
    // curr at ledger 127; its shadows are levels 0-2 there; its output is level 4's curr at 319.
    let snap4 = put_bucket(root, &offers(LIVE, &[1, 2, 3, 4, 5, 6], 4));
    let s127 = states.get_mut(&127).unwrap();
    s127[3].curr = snap4;
    s127[0].curr = put_bucket(root, &offers(LIVE, &[2], 9));
    s127[2].snap = put_bucket(root, &offers(DEAD, &[4], 0));
    // Level 3 snapped at 128: its snap at 191 and 255 is its curr at 127.
    states.get_mut(&191).unwrap()[3].snap = snap4;
    states.get_mut(&255).unwrap()[3].snap = snap4;
    let out4 = name(&bucket_bytes(None, &offers(LIVE, &[1, 3, 5, 6], 4)));
    states.get_mut(&319).unwrap()[4].curr = out4;

    // B: the merge into level 1 at ledger 62 (empty curr: level 1 spills at 64) takes level
    // 0's snap at 63; its output is recorded in level 1's `next` (state 1).
    let snap1 = offers(LIVE, &[20, 21], 1);
    let s63 = states.get_mut(&63).unwrap();
    s63[0].snap = put_bucket(root, &snap1);
    s63[1].next = json!({"state": 1, "output": hex::encode(name(&bucket_bytes(None, &snap1)))});

    // C: the merge into level 3 at ledger 160 is recorded by its inputs and shadows (state 2)
    // at 191; no state shows its output, but the merge at 192 starts from it (chained). That
    // one's snap and shadows are levels 2 and 0-1 at 191; its output is level 3's curr at 255.
    let s191 = states.get_mut(&191).unwrap();
    let curr3 = put_bucket(root, &offers(LIVE, &[10, 11], 3));
    let snap3 = put_bucket(root, &offers(LIVE, &[12, 13], 3));
    let shadow3 = put_bucket(root, &offers(LIVE, &[11], 9));
    s191[3].next = json!({"state": 2, "curr": hex::encode(curr3), "snap": hex::encode(snap3),
        "shadow": [hex::encode(shadow3)]});
    s191[2].curr = put_bucket(root, &offers(LIVE, &[14], 3));
    s191[0].curr = put_bucket(root, &offers(LIVE, &[12], 9));
    let out3 = name(&bucket_bytes(None, &offers(LIVE, &[10, 13, 14], 3)));
    states.get_mut(&255).unwrap()[3].curr = out3;

    // D: the hot archive list (protocol 23) follows the same schedule, without shadows: its
    // merge into level 4 at 128 drops nothing at level 4 (tombstones stay above the last level).
    let mut hot: BTreeMap<u32, Vec<Lvl>> = states
        .keys()
        .map(|&c| (c, vec![Lvl::default(); NUM_LEVELS]))
        .collect();
    let hot_recs = [(ARCHIVED, Ty::Data, 1, 5), (RESTORED, Ty::Data, 2, 0)];
    let hot_meta = || Some(meta_record(23, Some(1)));
    hot.get_mut(&127).unwrap()[3].curr = put_bucket_with(root, hot_meta(), &hot_recs);
    let hot_out = name(&bucket_bytes(hot_meta(), &hot_recs));
    hot.get_mut(&319).unwrap()[4].curr = hot_out;

    for (c, levels) in &states {
        write_has(root, *c, levels, &hot[c]);
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut seen = BTreeMap::new();
    check_archive(&Archive::new(root), scratch.path(), |c| {
        seen.insert((c.merge.list, c.merge.level, c.merge.ledger), c.clone());
    })
    .unwrap();

    let a = &seen[&(ListType::Live, 4, 128)];
    assert_eq!(
        (&a.outcome, a.expected),
        (&Outcome::Reproduced, out4),
        "{a:?}"
    );
    assert_eq!((a.shadows, a.shadowed, a.protocol), (6, 2, Some(0)));

    let b = &seen[&(ListType::Live, 1, 62)];
    assert_eq!(b.outcome, Outcome::Reproduced, "{b:?}");
    assert_eq!((b.shadows, b.chained), (0, 0));

    let c = &seen[&(ListType::Live, 3, 192)];
    assert_eq!(
        (&c.outcome, c.expected),
        (&Outcome::Reproduced, out3),
        "{c:?}"
    );
    assert_eq!((c.chained, c.shadows, c.shadowed), (1, 4, 1));

    let d = &seen[&(ListType::HotArchive, 4, 128)];
    assert_eq!(
        (&d.outcome, d.expected),
        (&Outcome::Reproduced, hot_out),
        "{d:?}"
    );
    assert_eq!((d.protocol, d.shadows), (Some(23), 0));

    // A later state that contradicts the output (level 4's curr cannot change between the
    // commits at 256 and 384) fails the check, naming both checkpoints.
    let mut late = states[&319].clone();
    late[4].curr = [0xEE; 32];
    write_has(root, 383, &late, &hot[&319]);
    match level_4_at_128(root, scratch.path()).outcome {
        Outcome::Failed(why) => assert!(
            why.contains("checkpoint 319") && why.contains("checkpoint 383"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(Archive::new(root).has_path(383)).unwrap();
    write_has(root, 319, &states[&319], &hot[&319]);

    // Without the state before it, the level-4 merge finds its snap (level 3's snap at 191)
    // but not its shadows: not checkable, and said why (never a merge without them).
    std::fs::remove_file(Archive::new(root).has_path(127)).unwrap();
    match level_4_at_128(root, scratch.path()).outcome {
        Outcome::NotCheckable { input, .. } => assert_eq!(input, "shadows"),
        other => panic!("{other:?}"),
    }
}

/// The check of the live merge into level 4 at ledger 128.
fn level_4_at_128(root: &Path, scratch: &Path) -> MergeCheck {
    let mut found = None;
    check_archive(&Archive::new(root), scratch, |c| {
        if (c.merge.list, c.merge.level, c.merge.ledger) == (ListType::Live, 4, 128) {
            found = Some(c.clone());
        }
    })
    .unwrap();
    found.expect("the archive records the merge's output")
}

/// A ledger store imports the live list of a version-2 state and counts the hot archive
/// buckets it leaves out, so the command line can say so.
#[test]
fn import_counts_the_hot_archive_buckets_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let live = vec![Lvl {
        curr: put_bucket(&root, &offers(LIVE, &[1, 2], 1)),
        ..Lvl::default()
    }];
    let hot_recs = [(ARCHIVED, Ty::Data, 1, 5)];
    let hot = vec![Lvl {
        snap: put_bucket_with(&root, Some(meta_record(23, Some(1))), &hot_recs),
        ..Lvl::default()
    }];
    write_has(&root, 63, &live, &hot);
    let mut store = strata_stellar::store::LedgerStore::open(dir.path().join("db")).unwrap();
    let report = store.import_archive(&Archive::new(&root), None).unwrap();
    assert_eq!((report.entries, report.hot_archive_buckets), (2, 1));
    store.close().unwrap();
}

/// A state file must be a regular file, and must be the state of the checkpoint it is filed
/// under; checkpoints are found by listing the archive, not by counting up to the latest.
#[test]
fn state_files_are_checked_against_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_has(root, 127, &[], &[]);
    write_has(root, 63, &[], &[]);
    let archive = Archive::new(root);
    assert_eq!(archive.checkpoints().unwrap(), vec![63, 127]);
    // The state of 127 filed as 191.
    let misfiled = archive.has_path(191);
    std::fs::create_dir_all(misfiled.parent().unwrap()).unwrap();
    std::fs::copy(archive.has_path(127), &misfiled).unwrap();
    let err = archive.state(191).unwrap_err();
    assert!(err.to_string().contains("names ledger 127"), "{err}");
    // A latest state that claims a ledger past everything, or one that is no checkpoint.
    let well_known = root.join(".well-known").join("stellar-history.json");
    let has = std::fs::read_to_string(&well_known).unwrap();
    std::fs::write(
        &well_known,
        has.replace("\"currentLedger\":63", "\"currentLedger\":4294967295"),
    )
    .unwrap();
    assert_eq!(archive.checkpoints().unwrap(), vec![63, 127, 191]);
    std::fs::write(
        &well_known,
        has.replace("\"currentLedger\":63", "\"currentLedger\":100"),
    )
    .unwrap();
    assert!(archive
        .latest()
        .unwrap_err()
        .to_string()
        .contains("not a checkpoint"));
    // A directory where a state file belongs is refused by name, without reading it.
    std::fs::remove_file(archive.has_path(127)).unwrap();
    std::fs::create_dir(archive.has_path(127)).unwrap();
    let err = strata_stellar::archive::read_has(&archive.has_path(127)).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
