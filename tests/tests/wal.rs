//! FileWal damage handling: torn tails are cut at the last whole batch; damage elsewhere is an
//! error naming the file and offset; never a panic, never a wrong value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_engine::format::segment_file_name;
use strata_engine::{EntryKind, Error, Event, EventLog, OpRef, SegmentId, SeqNo, Wal, WalPos};
use strata_wal::FileWal;

const N: usize = 12;

#[derive(Clone, Debug, PartialEq)]
struct Rec {
    seq: SeqNo,
    key: Vec<u8>,
    pos: WalPos,
}

fn open(dir: &Path) -> (Result<FileWal, Error>, Vec<Rec>, Vec<Event>) {
    let log = Arc::new(EventLog::default());
    let mut recs = Vec::new();
    let wal = FileWal::open(
        strata_engine::StdFs::shared(),
        dir,
        SegmentId(0),
        &[],
        SeqNo(0),
        log.clone(),
        &mut |r| {
            recs.push(Rec {
                seq: r.seq,
                key: r.key.to_vec(),
                pos: r.pos,
            });
            Ok(())
        },
    );
    (wal, recs, log.events())
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    (0..(i * 37 + 20)).map(|j| (i * 7 + j) as u8).collect()
}

/// A WAL of N single-record batches; returns its directory, segment file and each record's
/// byte span.
fn build() -> (tempfile::TempDir, PathBuf, Vec<(u64, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recs, _) = open(dir.path());
    let wal = wal.unwrap();
    assert!(recs.is_empty());
    let mut spans = Vec::new();
    for i in 0..N {
        let (k, v) = (key(i), value(i));
        let a = wal
            .append(&[OpRef {
                kind: EntryKind::Put,
                tag: 0,
                key: &k,
                value: &v,
            }])
            .unwrap();
        let pos = a.positions[0];
        let start = pos.value_offset - 32 - k.len() as u64;
        spans.push((start, pos.value_offset + u64::from(pos.value_len) + 8));
    }
    wal.sync().unwrap();
    let file = dir.path().join(segment_file_name(wal.active_segment()));
    (dir, file, spans)
}

fn write_copy(bytes: &[u8], name: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name.file_name().unwrap()), bytes).unwrap();
    dir
}

fn check_prefix(wal: &FileWal, recs: &[Rec], n: usize) {
    assert_eq!(
        recs.len(),
        n,
        "recovered {} records, expected {n}",
        recs.len()
    );
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.key, key(i));
        assert_eq!(r.seq, SeqNo(i as u64 + 1));
        assert_eq!(wal.read_value(r.pos).unwrap(), value(i));
    }
}

#[test]
fn cutting_the_last_record_anywhere_recovers_exactly_the_others() {
    let (_dir, file, spans) = build();
    let bytes = std::fs::read(&file).unwrap();
    let (start, end) = spans[N - 1];
    assert_eq!(end, bytes.len() as u64);
    for cut in start..end {
        let copy = write_copy(&bytes[..cut as usize], &file);
        let (wal, recs, events) = open(copy.path());
        let wal = wal.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        check_prefix(&wal, &recs, N - 1);
        if cut > start {
            assert!(
                events.iter().any(
                    |e| matches!(e, Event::WalTailTruncated { offset, .. } if *offset == start)
                ),
                "cut at {cut}: no truncation event: {events:?}"
            );
        }
        // The log continues after the cut: a new record lands where the torn one was.
        if cut % 64 == 0 {
            let (k, v) = (key(N - 1), value(N - 1));
            wal.append(&[OpRef {
                kind: EntryKind::Put,
                tag: 0,
                key: &k,
                value: &v,
            }])
            .unwrap();
            drop(wal);
            let (wal, recs, _) = open(copy.path());
            check_prefix(&wal.unwrap(), &recs, N);
        }
    }
}

#[test]
fn flipping_any_byte_of_a_middle_record_is_an_error_naming_file_and_offset() {
    let (_dir, file, spans) = build();
    let bytes = std::fs::read(&file).unwrap();
    let k = N / 2;
    let (start, end) = spans[k];
    let (mut at_open, mut at_read) = (0, 0);
    for at in start..end {
        for mask in [0x01u8, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at as usize] ^= mask;
            let copy = write_copy(&damaged, &file);
            let path = copy.path().join(file.file_name().unwrap());
            let (wal, recs, _) = open(copy.path());
            match wal {
                Err(e) => {
                    at_open += 1;
                    assert_eq!(e.file(), Some(path.as_path()), "byte {at}: {e}");
                    assert_eq!(e.offset(), Some(start), "byte {at}: {e}");
                }
                Ok(wal) => {
                    at_read += 1;
                    // Headers were intact: every record is there, and the damaged value is
                    // refused when read.
                    assert_eq!(recs.len(), N, "byte {at}: records lost");
                    for (i, r) in recs.iter().enumerate() {
                        assert_eq!(r.key, key(i), "byte {at}");
                        let got = wal.read_value(r.pos);
                        if i == k {
                            let e = got.expect_err("a damaged value was returned");
                            assert_eq!(e.file(), Some(path.as_path()), "byte {at}: {e}");
                            assert_eq!(e.offset(), Some(r.pos.value_offset), "byte {at}: {e}");
                            assert!(
                                matches!(e, Error::ChecksumMismatch { .. }),
                                "byte {at}: {e}"
                            );
                            let mut chunk = [0u8; 16];
                            assert!(
                                wal.copy_value(r.pos, &mut chunk, &mut |_| Ok(())).is_err(),
                                "byte {at}: copy_value"
                            );
                        } else {
                            assert_eq!(got.unwrap(), value(i), "byte {at}: record {i}");
                        }
                    }
                }
            }
        }
    }
    // Header and key damage is found at open; value and value checksum damage when read.
    let (hk, v) = (
        32 + key(k).len() as u64,
        end - start - 32 - key(k).len() as u64,
    );
    assert_eq!((at_open, at_read), (2 * hk, 2 * v));
}

#[test]
fn damaged_header_of_the_last_record_is_a_torn_tail() {
    let (_dir, file, spans) = build();
    let mut bytes = std::fs::read(&file).unwrap();
    let (start, _) = spans[N - 1];
    bytes[start as usize + 9] ^= 0x10;
    let copy = write_copy(&bytes, &file);
    let (wal, recs, _) = open(copy.path());
    check_prefix(&wal.unwrap(), &recs, N - 1);
}

#[test]
fn damage_in_an_older_segment_is_an_error_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path());
    let wal = wal.unwrap();
    let (k, v) = (key(1), value(1));
    wal.append(&[OpRef {
        kind: EntryKind::Put,
        tag: 0,
        key: &k,
        value: &v,
    }])
    .unwrap();
    let old = dir.path().join(segment_file_name(wal.active_segment()));
    wal.rotate().unwrap();
    wal.append(&[OpRef {
        kind: EntryKind::Put,
        tag: 0,
        key: &k,
        value: &v,
    }])
    .unwrap();
    drop(wal);
    let len = std::fs::metadata(&old).unwrap().len();
    // Cut the old segment's only record short: in the newest segment that would be a torn tail.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&old)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (wal, _, _) = open(dir.path());
    let e = wal
        .err()
        .expect("damage in an older segment must not be truncated away");
    assert_eq!(e.file(), Some(old.as_path()), "{e}");
    assert_eq!(e.offset(), Some(32), "{e}");
}

#[test]
fn a_batch_cut_short_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path());
    let wal = wal.unwrap();
    let (k0, v0) = (key(0), value(0));
    wal.append(&[OpRef {
        kind: EntryKind::Put,
        tag: 0,
        key: &k0,
        value: &v0,
    }])
    .unwrap();
    let keys: Vec<Vec<u8>> = (1..4).map(key).collect();
    let values: Vec<Vec<u8>> = (1..4).map(value).collect();
    let ops: Vec<OpRef<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| OpRef {
            kind: EntryKind::Put,
            tag: 0,
            key: k,
            value: v,
        })
        .collect();
    let a = wal.append(&ops).unwrap();
    let file = dir.path().join(segment_file_name(wal.active_segment()));
    drop(wal);
    // Cut exactly after the batch's second record: every record left is whole, the batch is not.
    let second_end = a.positions[1].value_offset + u64::from(a.positions[1].value_len) + 8;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(second_end)
        .unwrap();
    let (wal, recs, _) = open(dir.path());
    check_prefix(&wal.unwrap(), &recs, 1);
}

#[test]
fn recovery_continues_sequence_numbers_and_a_fresh_wal_is_empty() {
    let (dir, _, _) = build();
    let (wal, recs, _) = open(dir.path());
    let wal = wal.unwrap();
    check_prefix(&wal, &recs, N);
    let (k, v) = (key(99), value(3));
    let a = wal
        .append(&[OpRef {
            kind: EntryKind::Put,
            tag: 0,
            key: &k,
            value: &v,
        }])
        .unwrap();
    assert_eq!(a.first_seq, SeqNo(N as u64 + 1));
}

/// The classic torn write: the header's sector reached the disk, the value's did not. Header,
/// key and value checksum are intact; half the value is zeros.
#[test]
fn a_damaged_value_in_the_newest_batch_is_a_torn_tail_and_the_shard_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = strata_tests::options(strata::Sharding::Single);
    let db = strata::Db::open(dir.path(), options.clone()).unwrap();
    db.put(b"k1", b"v1").unwrap();
    let big = vec![0xABu8; 100 << 10];
    db.put(b"k2", &big).unwrap();
    db.close().unwrap();

    let segment = dir
        .path()
        .join("shard-0000000000000000")
        .join(segment_file_name(SegmentId(1)));
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(big.len())
        .position(|w| w == big.as_slice())
        .expect("k2's value is in the segment");
    bytes[at + big.len() / 2..at + big.len()].fill(0);
    std::fs::write(&segment, &bytes).unwrap();

    let log = Arc::new(EventLog::default());
    let mut o = options.clone();
    o.events = log.clone();
    let db = strata::Db::open(dir.path(), o).unwrap();
    let cut = log.events().into_iter().find_map(|e| match e {
        Event::WalTailTruncated { file, offset, .. } => Some((file, offset)),
        _ => None,
    });
    let k2_record = (at - 2 - strata_wal::RECORD_HEADER_BYTES) as u64;
    assert_eq!(
        cut,
        Some((segment.clone(), k2_record)),
        "{:?}",
        log.events()
    );
    assert_eq!(db.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(db.get(b"k2").unwrap(), None);
    let all: Vec<_> = db.prefix(b"").unwrap().map(|kv| kv.unwrap()).collect();
    assert_eq!(all, vec![(b"k1".to_vec(), b"v1".to_vec())]);
    db.compact_all().unwrap();
    db.put(b"k3", b"v3").unwrap();
    db.close().unwrap();

    let db = strata::Db::open(dir.path(), options).unwrap();
    assert_eq!(db.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(db.get(b"k2").unwrap(), None);
    assert_eq!(db.get(b"k3").unwrap(), Some(b"v3".to_vec()));
    db.close().unwrap();
}

/// A crash between creating a segment and syncing its header can leave it empty. Open writes
/// the header again, so the next acknowledged write is readable after every later open.
#[test]
fn an_empty_newest_segment_gets_its_header_back_and_later_writes_survive() {
    let dir = tempfile::tempdir().unwrap();
    let options = strata_tests::options(strata::Sharding::Single);
    let db = strata::Db::open(dir.path(), options.clone()).unwrap();
    db.put(b"a", b"1").unwrap();
    db.close().unwrap();
    let segment = dir
        .path()
        .join("shard-0000000000000000")
        .join(segment_file_name(SegmentId(1)));
    std::fs::write(&segment, b"").unwrap();
    let report = strata::verify::verify(dir.path()).unwrap();
    assert!(!report.damaged(), "{:?}", report.findings);
    let db = strata::Db::open(dir.path(), options.clone()).unwrap();
    db.put(b"c", b"3").unwrap();
    db.close().unwrap();
    let db = strata::Db::open(dir.path(), options).unwrap();
    assert_eq!(db.get(b"c").unwrap(), Some(b"3".to_vec()));
    db.close().unwrap();
    let report = strata::verify::verify(dir.path()).unwrap();
    assert!(!report.damaged(), "{:?}", report.findings);
}
