//! What a crash or an error leaves half made never stops the database opening: a shard
//! directory without its manifest (empty, or holding only `MANIFEST.tmp`), a temporary shard
//! directory, a `.tmp` file at the top level, a database folder holding only `LOCK` and
//! `STRATA.tmp`. Each is removed at open
//! with an event; data is never guessed at.

use std::path::Path;
use std::sync::Arc;

use strata::{Db, Error, Event, EventLog, Sharding};
use strata_tests::options;

fn range_db_with_key_5(dir: &Path) {
    let db = Db::open(dir, options(Sharding::Range { width: 10 })).unwrap();
    db.put(&5u64.to_be_bytes(), b"five").unwrap();
    db.close().unwrap();
}

fn reopen_removes(dir: &Path, leftover: &Path) {
    let log = Arc::new(EventLog::default());
    let mut o = options(Sharding::Range { width: 10 });
    o.events = log.clone();
    let db = Db::open(dir, o).unwrap();
    assert!(!leftover.exists(), "{} is still there", leftover.display());
    let removed = log
        .events()
        .into_iter()
        .any(|e| matches!(e, Event::StrayFileRemoved { file } if file == leftover));
    assert!(
        removed,
        "no event for {}: {:?}",
        leftover.display(),
        log.events()
    );
    assert_eq!(db.get(&5u64.to_be_bytes()).unwrap(), Some(b"five".to_vec()));
    // The shard can be made again, for real this time.
    db.put(&15u64.to_be_bytes(), b"fifteen").unwrap();
    db.close().unwrap();
    let db = Db::open(dir, options(Sharding::Range { width: 10 })).unwrap();
    assert_eq!(
        db.get(&15u64.to_be_bytes()).unwrap(),
        Some(b"fifteen".to_vec())
    );
    db.close().unwrap();
}

#[test]
fn an_empty_shard_directory_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    range_db_with_key_5(dir.path());
    let shard = dir.path().join("shard-0000000000000001");
    std::fs::create_dir(&shard).unwrap();
    reopen_removes(dir.path(), &shard);
}

#[test]
fn a_shard_directory_holding_only_a_manifest_tmp_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    range_db_with_key_5(dir.path());
    let shard = dir.path().join("shard-0000000000000001");
    std::fs::create_dir(&shard).unwrap();
    std::fs::write(shard.join("MANIFEST.tmp"), b"half a manifest").unwrap();
    reopen_removes(dir.path(), &shard);
}

#[test]
fn a_temporary_shard_directory_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    range_db_with_key_5(dir.path());
    let tmp = dir.path().join("shard-0000000000000001.tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(tmp.join("MANIFEST"), b"never renamed into place").unwrap();
    reopen_removes(dir.path(), &tmp);
}

#[test]
fn a_temporary_file_at_the_top_level_is_removed_at_open() {
    // A `STRATA.tmp` beside a complete `STRATA` (a crash between write and rename of a layer
    // above, or a copy gone wrong), and a `.tmp` of another layer's atomic write.
    for name in ["STRATA.tmp", "ROLLBACK.tmp"] {
        let dir = tempfile::tempdir().unwrap();
        range_db_with_key_5(dir.path());
        let tmp = dir.path().join(name);
        std::fs::write(&tmp, b"half written").unwrap();
        reopen_removes(dir.path(), &tmp);
    }
}

#[test]
fn a_shard_directory_with_data_but_no_manifest_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    range_db_with_key_5(dir.path());
    let shard = dir.path().join("shard-0000000000000000");
    std::fs::remove_file(shard.join("MANIFEST")).unwrap();
    let e = Db::open(dir.path(), options(Sharding::Range { width: 10 })).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_eq!(e.file(), Some(shard.as_path()));
}

#[test]
fn a_folder_left_by_an_interrupted_creation_opens_as_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();
    std::fs::write(dir.path().join("STRATA.tmp"), b"half an identity").unwrap();
    let db = Db::open(dir.path(), options(Sharding::Single)).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), options(Sharding::Single)).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert!(!dir.path().join("STRATA.tmp").exists());
    db.close().unwrap();
}

#[test]
fn a_folder_with_other_files_is_still_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let e = Db::open(dir.path(), options(Sharding::Single)).unwrap_err();
    assert!(matches!(e, Error::NotADatabase { .. }), "{e}");
}
