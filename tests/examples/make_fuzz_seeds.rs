//! Writes seed inputs for the fuzz targets into `fuzz/corpus/<target>/`: the files of a small
//! database (a WAL segment with a batch, a run, its index, manifests). Run from the workspace
//! root: `cargo run -p strata-tests --example make_fuzz_seeds`.

use std::path::Path;

use strata::{Batch, Db, Sharding};

fn copy(from: &Path, target: &str, name: &str) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(from, dir.join(name)).unwrap();
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), strata_tests::options(Sharding::Single)).unwrap();
    for i in 0..12u32 {
        db.put(&i.to_be_bytes(), &vec![i as u8; (i * 13) as usize])
            .unwrap();
    }
    db.delete(&3u32.to_be_bytes()).unwrap();
    db.compact_all().unwrap();
    let mut batch = Batch::new();
    batch
        .put(b"a".to_vec(), b"one".to_vec())
        .delete(b"b".to_vec())
        .put(b"c".to_vec(), vec![7; 40]);
    db.write_batch(&batch).unwrap();
    db.close().unwrap();
    let shard = tmp.path().join("shard-0000000000000000");
    for entry in std::fs::read_dir(&shard).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target = match path.extension().and_then(|e| e.to_str()) {
            Some("log") => "wal_segment",
            Some("run") => "run_file",
            Some("idx") => "index_inmem",
            _ if name == "MANIFEST" => "manifest",
            _ => continue,
        };
        copy(&path, target, &format!("seed-{name}"));
    }
    copy(&tmp.path().join("STRATA"), "manifest", "seed-STRATA");

    // A run indexed by the disk index, with small pages so that it has several.
    let tmp = tempfile::tempdir().unwrap();
    let mut options = strata_tests::options(Sharding::Single);
    options.index_policy = strata::IndexPolicy::Always(strata::DISK_KIND);
    options.index_params.page_size_exponent = 7;
    let db = Db::open(tmp.path(), options).unwrap();
    for i in 0..40u32 {
        db.put(&i.to_be_bytes(), &[i as u8; 20]).unwrap();
    }
    db.compact_all().unwrap();
    db.close().unwrap();
    let index = std::fs::read_dir(tmp.path().join("shard-0000000000000000"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .unwrap();
    copy(&index, "index_disk", "seed-disk.idx");
    bucket_seeds();
}

/// A small bucket (METAENTRY, INIT, LIVE and DEAD records), plain and gzipped.
fn bucket_seeds() {
    use std::io::Write;
    use strata_stellar::bucket::{BucketMeta, BucketWriter, EntryKind};
    use strata_stellar::stellar_xdr::{
        Hash, LedgerEntry, LedgerEntryData, LedgerEntryExt, LedgerKey, LedgerKeyTtl, Limits,
        TtlEntry, WriteXdr,
    };
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("seed.xdr");
    let mut w = BucketWriter::create(&plain).unwrap();
    let meta = BucketMeta {
        ledger_version: 22,
        ext: 0i32.to_be_bytes().to_vec(),
    };
    w.put(&meta.record()).unwrap();
    for i in 0..6u8 {
        let key_hash = Hash([i; 32]);
        let tag = [EntryKind::Init, EntryKind::Live, EntryKind::Dead][usize::from(i % 3)];
        let payload = if tag == EntryKind::Dead {
            LedgerKey::Ttl(LedgerKeyTtl { key_hash }).to_xdr(Limits::none())
        } else {
            LedgerEntry {
                last_modified_ledger_seq: 7,
                data: LedgerEntryData::Ttl(TtlEntry {
                    key_hash,
                    live_until_ledger_seq: 100 + u32::from(i),
                }),
                ext: LedgerEntryExt::V0,
            }
            .to_xdr(Limits::none())
        };
        w.put_parts(&[&tag.tag().to_be_bytes(), &payload.unwrap()])
            .unwrap();
    }
    w.finish().unwrap();
    copy(&plain, "bucket", "seed.xdr");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    let gz_path = tmp.path().join("seed.xdr.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    copy(&gz_path, "bucket", "seed.xdr.gz");
}
