//! `strata verify` (the library behind it) finds a byte flipped in a run, in an index file
//! and in a WAL segment, naming each file, and finds nothing in an intact database.

use std::path::{Path, PathBuf};

use strata::{Db, IndexPolicy, Sharding, DISK_KIND, INMEM_KIND};

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
    {
        out.extend(
            std::fs::read_dir(shard)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(suffix)),
        );
    }
    out.sort();
    out
}

fn flip(file: &Path, at: usize) {
    let mut b = std::fs::read(file).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x10;
    std::fs::write(file, b).unwrap();
}

fn build(policy: IndexPolicy) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut o = strata_tests::options(Sharding::Hash { shards: 2 });
    o.index_policy = policy;
    let db = Db::open(dir.path(), o).unwrap();
    for i in 0..2_000u32 {
        db.put(&i.to_be_bytes(), &[i as u8; 100]).unwrap();
    }
    db.compact_all().unwrap();
    for i in 0..50u32 {
        db.put(&(i * 7).to_be_bytes(), b"in the WAL").unwrap();
    }
    db.close().unwrap();
    dir
}

#[test]
fn verify_names_each_damaged_file() {
    for policy in [
        IndexPolicy::Always(INMEM_KIND),
        IndexPolicy::Always(DISK_KIND),
    ] {
        let dir = build(policy);
        let clean = strata::verify::verify(dir.path()).unwrap();
        assert!(!clean.damaged(), "{:?}", clean.findings);
        assert!(clean.files >= 7, "{} files", clean.files);
        let (run, index, wal) = (
            files(dir.path(), ".run")[0].clone(),
            files(dir.path(), ".idx")[0].clone(),
            files(dir.path(), ".log")[0].clone(),
        );
        flip(&run, 5_000);
        flip(&index, 100);
        flip(&wal, 40);
        let report = strata::verify::verify(dir.path()).unwrap();
        assert!(report.damaged());
        for file in [&run, &index, &wal] {
            let f = report
                .findings
                .iter()
                .find(|f| &f.file == file)
                .unwrap_or_else(|| {
                    panic!(
                        "{policy:?}: {} not reported: {:?}",
                        file.display(),
                        report.findings
                    )
                });
            assert!(f.damage && f.offset.is_some(), "{f:?}");
        }
        assert_eq!(
            report.findings.iter().filter(|f| f.damage).count(),
            3,
            "{:?}",
            report.findings
        );
    }
}

#[test]
fn verify_finds_a_run_the_manifest_names_but_the_shard_lacks_and_a_missing_manifest() {
    let dir = build(IndexPolicy::Always(INMEM_KIND));
    let run = files(dir.path(), ".run")[0].clone();
    std::fs::remove_file(&run).unwrap();
    let report = strata::verify::verify(dir.path()).unwrap();
    assert!(report.damaged(), "{:?}", report.findings);
    assert!(report.findings.iter().any(|f| f.file == run && f.damage));

    let dir = build(IndexPolicy::Always(INMEM_KIND));
    let manifest = files(dir.path(), "MANIFEST")[0].clone();
    std::fs::remove_file(&manifest).unwrap();
    let report = strata::verify::verify(dir.path()).unwrap();
    assert!(report
        .findings
        .iter()
        .any(|f| f.file == manifest && f.damage));
    let e = Db::open(
        dir.path(),
        strata_tests::options(Sharding::Hash { shards: 2 }),
    )
    .unwrap_err();
    assert!(matches!(e, strata::Error::Corrupt { .. }), "{e}");
}

/// A FIFO under a WAL segment's name does not block verify (it is reported, not read), and a
/// shard name that leads nowhere (a dangling link), which open refuses, is damage too.
#[test]
fn verify_reports_what_is_not_a_regular_file_without_reading_it() {
    let dir = build(IndexPolicy::Always(INMEM_KIND));
    let wal = files(dir.path(), ".log")[0].clone();
    let fifo = wal.with_file_name("wal-00000000000000ff.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let dangling = dir.path().join("shard-00000000000000aa");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    let report = strata::verify::verify(dir.path()).unwrap();
    assert!(report.damaged());
    for file in [&fifo, &dangling] {
        assert!(
            report.findings.iter().any(|f| &f.file == file && f.damage),
            "{}: {:?}",
            file.display(),
            report.findings
        );
    }
}
