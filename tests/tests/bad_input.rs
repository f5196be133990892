//! Bad input gives a clear error and changes nothing on disk: oversized keys, values and
//! batches; missing, foreign and locked directories; manifests of another version; another
//! sharding rule. (Index files are derived data: a bad one is rebuilt, see `index.rs`.)

use std::path::Path;

use strata::{Batch, Db, Error, Options, Sharding, MAX_BATCH_OPS, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use strata_tests::{options, snapshot_dir};

/// A closed database with one run and some WAL contents.
fn populated(dir: &Path) {
    let db = Db::open(dir, options(Sharding::Single)).unwrap();
    for i in 0..100u32 {
        db.put(&i.to_be_bytes(), b"value").unwrap();
    }
    db.compact_all().unwrap();
    db.put(b"later", b"in the WAL").unwrap();
    db.close().unwrap();
}

fn first_file(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let shard = dir.join("shard-0000000000000000");
    std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap()
}

/// Sets the little-endian u32 at `at` of `file` to 99 (a format version this build lacks).
fn set_version(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
}

fn open_fails_unchanged(dir: &Path, options: Options) -> Error {
    let before = snapshot_dir(dir);
    let err = Db::open(dir, options).expect_err("open must fail");
    assert_eq!(
        snapshot_dir(dir),
        before,
        "a failed open changed files: {err}"
    );
    err
}

#[test]
fn oversized_keys_values_and_batches_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(Sharding::Hash { shards: 4 })).unwrap();
    db.put(b"k", b"v").unwrap();
    db.sync().unwrap();
    let before = snapshot_dir(&path);

    let e = db.put(&vec![1u8; MAX_KEY_BYTES + 1], b"v").unwrap_err();
    assert!(
        matches!(e, Error::KeyTooLarge { len, limit } if len == MAX_KEY_BYTES + 1 && limit == MAX_KEY_BYTES),
        "{e}"
    );
    assert!(e.to_string().contains("MAX_KEY_BYTES"), "{e}");
    let e = db.put(b"k2", &vec![0u8; MAX_VALUE_BYTES + 1]).unwrap_err();
    assert!(matches!(e, Error::ValueTooLarge { .. }), "{e}");
    // A batch whose last operation is too large writes none of the others.
    let mut batch = Batch::new();
    for i in 0..10u8 {
        batch.put(vec![i], b"fine".to_vec());
    }
    batch.put(vec![0xee; MAX_KEY_BYTES + 1], b"too long".to_vec());
    assert!(matches!(
        db.write_batch(&batch),
        Err(Error::KeyTooLarge { .. })
    ));
    let mut huge = Batch::new();
    for i in 0..=MAX_BATCH_OPS as u32 {
        huge.delete(i.to_be_bytes().to_vec());
    }
    assert!(matches!(
        db.write_batch(&huge),
        Err(Error::BatchTooLarge { .. })
    ));
    assert_eq!(snapshot_dir(&path), before, "a refused write changed files");
    assert_eq!(db.get(&[3]).unwrap(), None);
    // Keys at the limit are fine.
    db.put(&vec![7u8; MAX_KEY_BYTES], b"max").unwrap();
    assert_eq!(
        db.get(&vec![7u8; MAX_KEY_BYTES]).unwrap(),
        Some(b"max".to_vec())
    );
}

#[test]
fn missing_directory_without_create_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    let e = Db::open(&path, Options::new()).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("create_if_missing"), "{e}");
    assert!(!path.exists());
}

#[test]
fn foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a database").unwrap();
    let e = open_fails_unchanged(dir.path(), options(Sharding::Single));
    assert!(matches!(e, Error::NotADatabase { .. }), "{e}");
    // A plain file where the directory should be.
    let file = dir.path().join("notes.txt");
    assert!(matches!(
        Db::open(&file, options(Sharding::Single)),
        Err(Error::NotADatabase { .. })
    ));
}

#[test]
fn another_sharding_rule_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let e = open_fails_unchanged(dir.path(), options(Sharding::Hash { shards: 2 }));
    assert!(matches!(e, Error::OptionsMismatch { .. }), "{e}");
    assert!(e.to_string().contains("2 hash shards"), "{e}");
}

#[test]
fn a_second_handle_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(Sharding::Single)).unwrap();
    let e = Db::open(dir.path(), options(Sharding::Single)).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    drop(db);
    Db::open(dir.path(), options(Sharding::Single)).unwrap();
}

#[test]
fn manifest_of_another_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let manifest = dir.path().join("shard-0000000000000000").join("MANIFEST");
    set_version(&manifest, 8);
    let e = open_fails_unchanged(dir.path(), options(Sharding::Single));
    assert!(
        matches!(&e, Error::UnsupportedVersion { found: 99, .. }),
        "{e}"
    );
    assert_eq!(e.file(), Some(manifest.as_path()));
}

#[test]
fn database_file_of_another_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    set_version(&dir.path().join("STRATA"), 8);
    let e = open_fails_unchanged(dir.path(), options(Sharding::Single));
    assert!(
        matches!(&e, Error::UnsupportedVersion { found: 99, .. }),
        "{e}"
    );
}

#[test]
fn damaged_run_footer_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let run = first_file(dir.path(), ".run");
    let mut bytes = std::fs::read(&run).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    std::fs::write(&run, bytes).unwrap();
    let e = open_fails_unchanged(dir.path(), options(Sharding::Single));
    assert!(matches!(&e, Error::ChecksumMismatch { .. }), "{e}");
    assert_eq!(e.file(), Some(run.as_path()));
}

/// A manifest whose checksum holds but whose fields would make strata overwrite a live run,
/// delete live WAL segments as compacted, or overflow sequence numbers.
#[test]
fn manifest_fields_a_checksum_cannot_vouch_for_are_refused_untouched() {
    use strata_engine::format::{check_shard_manifest_bytes, encode_shard_manifest};
    type Change = fn(&mut strata_engine::format::ShardManifest);
    let changes: [(&str, Change); 3] = [
        ("next run id of a live run", |m| {
            m.next_run_id = m.runs[0].id
        }),
        ("sequence numbers about to overflow", |m| {
            m.last_seq = u64::MAX
        }),
        ("WAL floor above every segment", |m| m.wal_floor += 10),
    ];
    for (what, change) in changes {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let path = dir.path().join("shard-0000000000000000").join("MANIFEST");
        let mut m = check_shard_manifest_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
        change(&mut m);
        std::fs::write(&path, encode_shard_manifest(&m)).unwrap();
        let e = open_fails_unchanged(dir.path(), options(Sharding::Single));
        assert!(matches!(&e, Error::Corrupt { .. }), "{what}: {e}");
    }
}
