//! Replays every fuzz corpus input and every saved crash input through the same decoders the
//! fuzz targets call, so that a fixed bug stays fixed. Each must return (Ok or Err), never
//! panic.

use std::path::{Path, PathBuf};

use strata_engine::format::{check_db_meta_bytes, check_shard_manifest_bytes};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            out.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, check: impl Fn(&[u8], &Path)) -> usize {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for fuzz target {target}");
    for f in &files {
        check(&std::fs::read(f).unwrap(), f);
    }
    files.len()
}

#[test]
fn wal_segment_corpus() {
    let n = replay("wal_segment", |b, p| {
        let _ = strata_wal::check_segment_bytes(b, p, strata_engine::SegmentId(1));
    });
    // The seed segment is intact.
    let seed = inputs("wal_segment")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("seed-"))
        .unwrap();
    let name = seed.file_name().unwrap().to_string_lossy().into_owned();
    let id = u64::from_str_radix(&name["seed-wal-".len()..name.len() - 4], 16).unwrap();
    let (records, ending) = strata_wal::check_segment_bytes(
        &std::fs::read(&seed).unwrap(),
        &seed,
        strata_engine::SegmentId(id),
    )
    .unwrap();
    assert_eq!(
        (records, ending),
        (3, strata_wal::Ending::Clean),
        "{n} inputs"
    );
}

#[test]
fn run_file_corpus() {
    replay("run_file", |b, p| {
        let _ = strata_engine::format::check_run_bytes(b, p);
    });
    for seed in inputs("run_file")
        .iter()
        .filter(|p| p.to_string_lossy().contains("seed-"))
    {
        let bytes = std::fs::read(seed).unwrap();
        assert_eq!(
            strata_engine::format::check_run_bytes(&bytes, seed).unwrap(),
            11
        );
        // Any single flipped byte of a run is found.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            let e = strata_engine::format::check_run_bytes(&b, seed).expect_err("flip not found");
            assert_eq!(e.file(), Some(seed.as_path()));
        }
    }
}

#[test]
fn index_inmem_corpus() {
    replay("index_inmem", |b, p| {
        let _ = strata_index_inmem::check_index_bytes(b, p);
    });
}

#[test]
fn index_disk_corpus() {
    replay("index_disk", |b, p| {
        let _ = strata_index_disk::check_index_bytes(b, p);
    });
    let seed = inputs("index_disk")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("seed-"))
        .unwrap();
    let bytes = std::fs::read(&seed).unwrap();
    assert_eq!(
        strata_index_disk::check_index_bytes(&bytes, &seed).unwrap(),
        40
    );
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x04;
        assert!(
            strata_index_disk::check_index_bytes(&b, &seed).is_err(),
            "flip at {i} not found"
        );
    }
}

#[test]
fn manifest_corpus() {
    replay("manifest", |b, p| {
        let _ = check_shard_manifest_bytes(b, p);
        let _ = check_db_meta_bytes(b, p);
    });
}

#[test]
fn bucket_corpus() {
    use strata_stellar::bucket::BucketReader;
    let n = replay("bucket", |b, p| {
        if let Ok(mut r) = BucketReader::from_reader(p, std::io::Cursor::new(b.to_vec()), None) {
            while let Ok(Some(_)) = r.next_record() {}
        }
    });
    // The seeds are intact buckets: a METAENTRY and six records, plain and gzipped.
    for seed in inputs("bucket")
        .iter()
        .filter(|p| p.to_string_lossy().contains("seed"))
    {
        let r = BucketReader::open(seed, None).unwrap();
        assert_eq!(r.ledger_version(), 22);
        let mut r = r;
        let mut records = 0;
        while r.next_record().unwrap().is_some() {
            records += 1;
        }
        assert_eq!(records, 6, "{}", seed.display());
    }
    assert!(n >= 2);
}
