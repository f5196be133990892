//! `strata repair` salvages every intact record around damage in the middle of a run and of a
//! WAL segment (where open cannot treat it as a torn tail), reports what it dropped, and keeps
//! the damaged database beside the repaired one.

use std::path::{Path, PathBuf};

use strata::{Batch, Db, Sharding};

fn value(i: u32) -> Vec<u8> {
    format!("value-{i:03}-").repeat(3).into_bytes()
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

fn file_with(dir: &Path, suffix: &str) -> PathBuf {
    let shard = dir.join("shard-0000000000000000");
    std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap()
}

/// Flips a byte in the middle of `needle` inside `file`.
fn damage(file: &Path, needle: &[u8]) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the value is in the file");
    bytes[at + needle.len() / 2] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

/// A single-shard database in `dir` whose keys 0..100 are in one run; still open.
fn one_run_of_100(dir: &Path) -> (Db, strata::Options) {
    let mut o = strata_tests::options(Sharding::Single);
    o.compaction.auto = false;
    let db = Db::open(dir, o.clone()).unwrap();
    for i in 0..100 {
        db.put(&key(i), &value(i)).unwrap();
    }
    db.compact_all().unwrap();
    (db, o)
}

#[test]
fn repair_salvages_every_intact_record_around_damage_in_a_run_and_a_wal_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let (db, o) = one_run_of_100(&dir);
    for b in 0..5 {
        let mut batch = Batch::new();
        for i in 100 + b * 10..110 + b * 10 {
            batch.put(key(i), value(i));
        }
        db.write_batch(&batch).unwrap();
    }
    db.delete(&key(7)).unwrap();
    db.close().unwrap();
    let run = file_with(&dir, ".run");
    let wal = file_with(&dir, ".log");
    damage(&run, &value(50));
    damage(&wal, &value(120));

    let db = Db::open(&dir, o.clone()).unwrap();
    assert!(db.get(&key(50)).is_err());
    assert!(db.get(&key(120)).is_err());
    db.close().unwrap();

    let report = strata::repair::repair(&dir).unwrap();
    let dropped: Vec<(PathBuf, String)> = report
        .dropped
        .iter()
        .map(|d| (d.file.file_name().unwrap().into(), d.detail.clone()))
        .collect();
    assert_eq!(report.dropped.len(), 2, "{dropped:?}");
    assert!(report.dropped.iter().any(|d| d.file == run), "{dropped:?}");
    assert!(
        report
            .dropped
            .iter()
            .any(|d| d.file.ends_with(wal.file_name().unwrap())),
        "{dropped:?}"
    );
    assert!(report.damaged_copy.join("STRATA").exists());

    let db = Db::open(&dir, o).unwrap();
    for i in 0..150 {
        let want = if i == 50 || i == 120 || i == 7 {
            None
        } else {
            Some(value(i))
        };
        assert_eq!(db.get(&key(i)).unwrap(), want, "key {i}");
    }
    assert_eq!(db.prefix(b"k").unwrap().count(), 147);
    db.close().unwrap();
    let verified = strata::verify::verify(&dir).unwrap();
    assert!(!verified.damaged(), "{:?}", verified.findings);
}

/// Damage that leaves nothing to frame by: three record headers overwritten (the records of
/// keys 30, 31 and 32), and the run's own header and footer. Repair still salvages every other
/// record, reporting the skipped span and the damaged header and footer.
#[test]
fn repair_resynchronises_after_damaged_record_headers_and_a_damaged_run_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let (db, o) = one_run_of_100(&dir);
    db.close().unwrap();
    let run = file_with(&dir, ".run");
    let mut bytes = std::fs::read(&run).unwrap();
    let len = bytes.len();
    for i in 30..33 {
        let k = key(i);
        let at = bytes
            .windows(k.len())
            .position(|w| w == k.as_slice())
            .unwrap();
        // The record header is just before the key: make it unreadable.
        bytes[at - strata_engine::format::RUN_RECORD_HEADER_BYTES..at].fill(0xEE);
    }
    bytes[4] ^= 0xFF; // run header magic
    bytes[len - 3] ^= 0xFF; // run footer checksum
    std::fs::write(&run, &bytes).unwrap();
    assert!(
        Db::open(&dir, o.clone()).is_err(),
        "the damaged run is refused at open"
    );

    let report = strata::repair::repair(&dir).unwrap();
    let details: Vec<String> = report.dropped.iter().map(|d| d.detail.clone()).collect();
    assert_eq!(report.records, 97, "{details:?}");
    assert!(
        details.iter().any(|d| d.contains("bytes skipped")),
        "{details:?}"
    );
    assert!(report.dropped.iter().all(|d| d.file == run), "{details:?}");
    let db = Db::open(&dir, o).unwrap();
    for i in 0..100 {
        let want = (!(30..33).contains(&i)).then(|| value(i));
        assert_eq!(db.get(&key(i)).unwrap(), want, "key {i}");
    }
    db.close().unwrap();
}

/// A WAL record whose header no longer checks (one flipped byte of its sequence number):
/// repair resumes at the next intact record header and loses that record alone.
#[test]
fn repair_resumes_after_a_damaged_wal_record_header() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut o = strata_tests::options(Sharding::Single);
    o.compaction.auto = false;
    let db = Db::open(&dir, o.clone()).unwrap();
    for b in 0..5 {
        let mut batch = Batch::new();
        for i in b * 10..b * 10 + 10 {
            batch.put(key(i), value(i));
        }
        db.write_batch(&batch).unwrap();
    }
    db.close().unwrap();
    let wal = file_with(&dir, ".log");
    let mut bytes = std::fs::read(&wal).unwrap();
    let k = key(23);
    let at = bytes
        .windows(k.len())
        .position(|w| w == k.as_slice())
        .unwrap();
    bytes[at - strata_wal::RECORD_HEADER_BYTES + 10] ^= 0x01;
    std::fs::write(&wal, &bytes).unwrap();
    assert!(
        Db::open(&dir, o.clone()).is_err(),
        "damage before intact records"
    );

    let report = strata::repair::repair(&dir).unwrap();
    let details: Vec<String> = report.dropped.iter().map(|d| d.detail.clone()).collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("bytes skipped up to the next intact record")),
        "{details:?}"
    );
    let db = Db::open(&dir, o).unwrap();
    let lost: Vec<u32> = (0..50)
        .filter(|i| db.get(&key(*i)).unwrap().is_none())
        .collect();
    // Key 23 is lost; so are 20..22, intact records of its batch read before the damage (a
    // batch whose end cannot be framed is not applied).
    assert!(lost.contains(&23), "{lost:?}");
    assert!(lost.iter().all(|i| (20..=23).contains(i)), "{lost:?}");
    for i in (0..50).filter(|i| !lost.contains(i)) {
        assert_eq!(db.get(&key(i)).unwrap(), Some(value(i)), "key {i}");
    }
    db.close().unwrap();
}

/// A flipped run-header version byte (the frame's checksum then fails: damage, not another
/// format) and a footer cut off the file (every record intact before it): repair keeps every
/// record in both.
#[test]
fn repair_keeps_every_record_of_a_run_with_a_flipped_version_or_no_footer() {
    for damage in ["version", "no footer"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        let (db, o) = one_run_of_100(&dir);
        db.close().unwrap();
        let run = file_with(&dir, ".run");
        let mut bytes = std::fs::read(&run).unwrap();
        match damage {
            "version" => bytes[8] = 0x5b,
            _ => bytes.truncate(bytes.len() - strata_engine::format::RUN_FOOTER_BYTES),
        }
        std::fs::write(&run, &bytes).unwrap();
        let report = strata::repair::repair(&dir).unwrap();
        assert_eq!(report.records, 100, "{damage}: {:?}", report.dropped);
        let db = Db::open(&dir, o).unwrap();
        for i in 0..100 {
            assert_eq!(
                db.get(&key(i)).unwrap(),
                Some(value(i)),
                "{damage}: key {i}"
            );
        }
        db.close().unwrap();
    }
}
