//! The history node's store: sealed shards in the engine, a node simulation against a model,
//! SIGKILL at random points, and era1 import of real mainnet blocks (and of built blocks with
//! transactions and receipts).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::{Rng, SeedableRng};
use strata_history::era1::{self, Era1Reader};
use strata_history::{Error, HistoryOptions, HistoryStore, BODY, HEADER, RECEIPTS};
use strata_tests::{history_value, HISTORY_BLOCKS, HISTORY_COLUMNS, HISTORY_SHARD_BLOCKS};

fn era1_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/era1")
}

fn era1_files() -> Vec<PathBuf> {
    vec![
        era1_dir().join("mainnet-00000-5ec1ffb8.era1"),
        era1_dir().join("mainnet-00001-a5364e9a.era1"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Sealed shards in the engine.

#[test]
fn a_sealed_shard_refuses_writes_survives_reopen_and_verify_checks_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut o = strata_tests::options(strata::Sharding::Range { width: 10 });
    o.compaction.complete_when_full = false;
    let db = strata::Db::open(&path, o.clone()).unwrap();
    for k in 0u64..25 {
        db.put(&k.to_be_bytes(), format!("v{k}").as_bytes())
            .unwrap();
    }
    db.delete(&3u64.to_be_bytes()).unwrap();
    let seal = db.seal(strata::ShardId(0)).unwrap();
    assert_eq!(seal.entries, 9, "nine live keys in shard 0");
    assert_eq!(
        db.seal(strata::ShardId(0)).unwrap(),
        seal,
        "sealing again is a no-op"
    );
    let e = db.put(&4u64.to_be_bytes(), b"x").unwrap_err();
    assert!(matches!(e, strata::Error::Sealed { shard: 0 }), "{e}");
    // A batch that touches a sealed shard is refused whole.
    let mut b = strata::Batch::new();
    b.put(15u64.to_be_bytes().to_vec(), b"y".to_vec());
    b.put(5u64.to_be_bytes().to_vec(), b"y".to_vec());
    assert!(matches!(
        db.write_batch(&b),
        Err(strata::Error::Sealed { shard: 0 })
    ));
    assert_eq!(db.get(&15u64.to_be_bytes()).unwrap(), Some(b"v15".to_vec()));
    assert_eq!(
        db.stats().shards[0].runs.len(),
        1,
        "sealed shard is one run"
    );
    db.close().unwrap();

    let manifest = path.join("shard-0000000000000000/MANIFEST");
    let bytes = std::fs::read(&manifest).unwrap();
    assert_eq!(
        bytes[8..12],
        2u32.to_le_bytes(),
        "a sealed manifest is version 2"
    );
    assert!(!strata::verify::verify(&path).unwrap().damaged());

    let db = strata::Db::open(&path, o.clone()).unwrap();
    assert_eq!(db.seal_of(strata::ShardId(0)), Some(seal.clone()));
    assert!(db.put(&4u64.to_be_bytes(), b"x").is_err());
    assert_eq!(db.get(&4u64.to_be_bytes()).unwrap(), Some(b"v4".to_vec()));
    db.close().unwrap();

    // A digest that does not match the contents is damage.
    let mut m = strata_engine::format::check_shard_manifest_bytes(&bytes, &manifest).unwrap();
    m.seal.as_mut().unwrap().digest[0] ^= 1;
    std::fs::write(&manifest, strata_engine::format::encode_shard_manifest(&m)).unwrap();
    let report = strata::verify::verify(&path).unwrap();
    assert!(report.damaged());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.detail.contains("seal's digest")),
        "{:?}",
        report.findings
    );
    m.seal.as_mut().unwrap().digest[0] ^= 1;
    std::fs::write(&manifest, strata_engine::format::encode_shard_manifest(&m)).unwrap();

    // Unsealed: writes are accepted again and the manifest is version 1.
    let db = strata::Db::open(&path, o).unwrap();
    db.unseal(strata::ShardId(0)).unwrap();
    db.put(&4u64.to_be_bytes(), b"x").unwrap();
    db.close().unwrap();
    assert_eq!(std::fs::read(&manifest).unwrap()[8..12], 1u32.to_le_bytes());
    assert!(!strata::verify::verify(&path).unwrap().damaged());
}

// ---------------------------------------------------------------------------------------------
// Node simulation.

fn put(store: &HistoryStore, numbers: &[u64]) -> Result<(), Error> {
    strata_tests::put_history_blocks(store, numbers, &|n, c| history_value(n, c))
}

/// The missing ranges of `present` within `0..end`.
fn model_missing(present: &BTreeSet<u64>, end: u64) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for n in (0..end).filter(|n| !present.contains(n)) {
        match out.last_mut() {
            Some(r) if r.end == n => r.end = n + 1,
            _ => out.push(n..n + 1),
        }
    }
    out
}

/// Presence agrees with `get` for every block, and values are exact.
fn check_store(store: &HistoryStore, present: &BTreeSet<u64>, what: &str) {
    for n in 0..HISTORY_BLOCKS {
        assert_eq!(store.has(n), present.contains(&n), "{what}: has({n})");
        for c in HISTORY_COLUMNS {
            let got = store.get(n, c).unwrap();
            let want = present.contains(&n).then(|| history_value(n, c));
            assert_eq!(got, want, "{what}: block {n} column {}", c.0);
        }
    }
    assert_eq!(
        store.missing(0..HISTORY_BLOCKS).collect::<Vec<_>>(),
        model_missing(present, HISTORY_BLOCKS),
        "{what}"
    );
    let stats = store.stats();
    assert_eq!(stats.blocks, present.len() as u64, "{what}");
    for c in HISTORY_COLUMNS {
        let bytes: u64 = present
            .iter()
            .map(|&n| history_value(n, c).len() as u64)
            .sum();
        assert_eq!(
            stats.column_bytes.get(&c).copied().unwrap_or(0),
            bytes,
            "{what}"
        );
    }
    for shard in stats.sealed_shards {
        assert!(
            store.shard_is_full(shard),
            "{what}: sealed shard {shard} has a gap"
        );
    }
}

#[test]
fn a_node_syncing_from_three_sources_sees_exact_missing_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = strata_tests::open_history(&path);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut present = BTreeSet::new();
    // Three peers, each serving an interleaved third of the chain in its own order, with
    // duplicates of what others sent, and a hole (blocks 70..75) none of them has.
    let mut sources: Vec<Vec<u64>> = (0..3u64)
        .map(|s| {
            let mut v: Vec<u64> = (0..HISTORY_BLOCKS)
                .filter(|n| n % 3 == s || n % 7 == 0)
                .filter(|n| !(70..75).contains(n))
                .collect();
            for i in (1..v.len()).rev() {
                v.swap(i, rng.random_range(0..=i));
            }
            v
        })
        .collect();
    let mut round = 0;
    while sources.iter().any(|s| !s.is_empty()) {
        let s = rng.random_range(0..3);
        let take = rng.random_range(1..=6).min(sources[s].len());
        let mut batch: Vec<u64> = sources[s].drain(..take).collect();
        batch.retain(|&n| !store.is_sealed(store.shard_of(n)));
        put(&store, &batch).unwrap();
        present.extend(&batch);
        check_store(&store, &present, &format!("after batch {round}"));
        // Seal every shard that is full; a shard with a gap is refused.
        for shard in 0..HISTORY_BLOCKS / HISTORY_SHARD_BLOCKS {
            let full = (shard * 16..shard * 16 + 16).all(|n| present.contains(&n));
            match store.seal(shard) {
                Ok(_) => assert!(full, "shard {shard} sealed with a gap"),
                Err(Error::Gap { first_missing, .. }) => {
                    assert!(!full);
                    assert!(!present.contains(&first_missing));
                }
                Err(e) => panic!("seal {shard}: {e}"),
            }
        }
        round += 1;
        if round % 10 == 0 {
            store.close().unwrap();
            store = strata_tests::open_history(&path);
            check_store(&store, &present, &format!("reopened after batch {round}"));
        }
    }
    assert_eq!(
        store.missing(0..HISTORY_BLOCKS).collect::<Vec<_>>(),
        vec![70..75]
    );
    assert!(matches!(
        store.seal(4),
        Err(Error::Gap {
            first_missing: 70,
            missing: 5,
            ..
        })
    ));
    assert!(store.is_sealed(0) && store.is_sealed(3) && !store.is_sealed(4));
    // A write into a sealed shard is refused, before anything is written.
    assert!(matches!(
        put(&store, &[72, 3]),
        Err(Error::Sealed {
            number: 3,
            shard: 0
        })
    ));
    assert!(!store.has(72));

    // A rollback into sealed shard 2 unseals it and removes every block above 40.
    store.rollback_to(40).unwrap();
    present.retain(|&n| n <= 40);
    assert!(!store.is_sealed(2) && store.is_sealed(1));
    check_store(&store, &present, "after rollback");
    put(&store, &[41, 42]).unwrap();
    present.extend([41, 42]);
    store.close().unwrap();
    let store = strata_tests::open_history(&path);
    check_store(&store, &present, "reopened after rollback");
    store.close().unwrap();
    let report = strata::verify::verify(&path).unwrap();
    assert!(!report.damaged(), "{:?}", report.findings);
}

#[test]
fn a_rollback_interrupted_after_its_record_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = strata_tests::open_history(&path);
    let all: Vec<u64> = (0..40).collect();
    put(&store, &all).unwrap();
    store.close().unwrap();
    // The record a rollback to 20 writes first, as a crash right after it leaves it.
    let mut frame = b"STRHROLL".to_vec();
    frame.extend_from_slice(&1u32.to_le_bytes());
    frame.extend_from_slice(&20u64.to_le_bytes());
    strata_engine::format::seal_frame(&mut frame);
    std::fs::write(path.join(strata_history::ROLLBACK_FILE), &frame).unwrap();
    let store = strata_tests::open_history(&path);
    let present: BTreeSet<u64> = (0..=20).collect();
    check_store(&store, &present, "rollback finished at open");
    assert!(!path.join(strata_history::ROLLBACK_FILE).exists());
    store.close().unwrap();
    // `strata repair` keeps the record: the rollback still finishes after a repair.
    std::fs::write(path.join(strata_history::ROLLBACK_FILE), &frame).unwrap();
    let repaired = strata::repair::repair(&path).unwrap();
    assert_eq!(
        repaired.kept_files,
        vec![strata_history::ROLLBACK_FILE.to_string()]
    );
    let store = strata_tests::open_history(&path);
    let present: BTreeSet<u64> = (0..=20).collect();
    check_store(&store, &present, "rollback finished after a repair");
    // Repair drops seals; full shards are sealed again on request.
    assert!(!store.is_sealed(0));
    assert_eq!(store.seal_full().unwrap(), vec![0]);
    // Block numbers stop at MAX_BLOCK_NUMBER.
    let e = put(&store, &[strata_history::MAX_BLOCK_NUMBER + 1]).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    store.close().unwrap();
    // A damaged record is an error naming the file, not a guess.
    frame[14] ^= 1;
    std::fs::write(path.join(strata_history::ROLLBACK_FILE), &frame).unwrap();
    let e = HistoryStore::open(&path, HistoryOptions::default()).unwrap_err();
    assert!(e.to_string().contains("HISTORY-ROLLBACK"), "{e}");
}

#[test]
fn sigkill_at_random_points_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut present: BTreeSet<u64> = BTreeSet::new();
    let rounds: u64 = std::env::var("STRATA_HISTORY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata_child"))
            .arg("history-writer")
            .arg(&path)
            .arg((1000 + round).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let acks = rng.random_range(5..60);
        let mut lines = Vec::new();
        let mut line = String::new();
        while lines.iter().filter(|l: &&String| *l == "acked").count() < acks {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                break;
            }
            lines.push(line.trim().to_string());
        }
        std::thread::sleep(std::time::Duration::from_micros(rng.random_range(0..3000)));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        lines.extend(rest.lines().map(str::to_string));

        // The model: every acknowledged op applied; the op in flight may or may not be.
        let mut pending: Option<&str> = None;
        for l in &lines {
            if l == "acked" {
                apply(&mut present, pending.take().unwrap());
            } else if let Some(op) = l.strip_prefix("op ") {
                pending = Some(op);
            }
        }
        let store = strata_tests::open_history(&path);
        let actual: BTreeSet<u64> = (0..HISTORY_BLOCKS).filter(|&n| store.has(n)).collect();
        let allowed_after = pending.map(|op| {
            let mut after = present.clone();
            apply(&mut after, op);
            after
        });
        let what = format!("round {round}, pending {pending:?}");
        match (pending, &allowed_after) {
            (Some(op), Some(after)) if op.starts_with("put ") => {
                // Per shard, all of the batch's blocks or none.
                let touched: BTreeSet<u64> = after.difference(&present).copied().collect();
                for n in 0..HISTORY_BLOCKS {
                    if !touched.contains(&n) {
                        assert_eq!(
                            actual.contains(&n),
                            present.contains(&n),
                            "{what}: block {n}"
                        );
                    }
                }
                let shards: BTreeSet<u64> =
                    touched.iter().map(|n| n / HISTORY_SHARD_BLOCKS).collect();
                for s in shards {
                    let in_shard: Vec<bool> = touched
                        .iter()
                        .filter(|n| *n / HISTORY_SHARD_BLOCKS == s)
                        .map(|n| actual.contains(n))
                        .collect();
                    assert!(
                        in_shard.iter().all(|&b| b == in_shard[0]),
                        "{what}: shard {s} half written"
                    );
                }
            }
            (Some(op), Some(after)) if op.starts_with("rollback ") => {
                assert!(
                    actual == present || actual == *after,
                    "{what}: rollback not atomic"
                );
            }
            _ => assert_eq!(actual, present, "{what}"),
        }
        present = actual;
        check_store(&store, &present, &what);
        store.close().unwrap();
        let report = strata::verify::verify(&path).unwrap();
        assert!(!report.damaged(), "{what}: {:?}", report.findings);
    }
}

fn apply(present: &mut BTreeSet<u64>, op: &str) {
    if let Some(list) = op.strip_prefix("put ") {
        present.extend(
            list.split(',')
                .filter(|s| !s.is_empty())
                .map(|n| n.parse::<u64>().unwrap()),
        );
    } else if let Some(to) = op.strip_prefix("rollback ") {
        let to: u64 = to.parse().unwrap();
        present.retain(|&n| n <= to);
    }
}

// ---------------------------------------------------------------------------------------------
// era1.

/// Each block of an era1 file as its raw decompressed (header, body, receipts), read by the
/// test's own e2store walk.
fn blocks_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::new();
    while at < bytes.len() {
        let ty = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let len = u32::from_le_bytes(bytes[at + 2..at + 6].try_into().unwrap()) as usize;
        let data = &bytes[at + 8..at + 8 + len];
        if (3..=5).contains(&ty) {
            let mut d = Vec::new();
            snap::read::FrameDecoder::new(data)
                .read_to_end(&mut d)
                .unwrap();
            parts.push(d);
            if ty == 5 {
                let r = parts.pop().unwrap();
                let b = parts.pop().unwrap();
                let h = parts.pop().unwrap();
                out.push((h, b, r));
            }
        }
        at += 8 + len;
    }
    out
}

fn keccak(b: &[u8]) -> [u8; 32] {
    use sha3::Digest;
    sha3::Keccak256::digest(b).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn era1_import_of_mainnet_blocks_0_to_16383_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = HistoryStore::open(&path, HistoryOptions::default()).unwrap();
    let mut calls = 0;
    let report = era1::import(&store, &era1_files(), &mut |_| calls += 1).unwrap();
    assert_eq!((report.files, report.blocks, report.skipped), (2, 16384, 0));
    assert_eq!(report.sealed, vec![0], "blocks 0..10000 fill shard 0");
    assert!(calls >= 2);
    assert_eq!(store.missing(0..16384).count(), 0);
    assert_eq!(
        store.missing(0..16385).collect::<Vec<_>>(),
        vec![16384..16385]
    );

    let expected: Vec<_> = era1_files().iter().flat_map(|f| blocks_of(f)).collect();
    assert_eq!(expected.len(), 16384);
    let mut parent = [0u8; 32];
    for (n, (h, b, r)) in expected.iter().enumerate() {
        let n = n as u64;
        let header = store.get(n, HEADER).unwrap().unwrap();
        assert_eq!(&header, h, "header {n}");
        assert_eq!(&store.get(n, BODY).unwrap().unwrap(), b, "body {n}");
        assert_eq!(&store.get(n, RECEIPTS).unwrap().unwrap(), r, "receipts {n}");
        // Field 0 of the header is the parent hash: the previous header's keccak-256.
        let fields = era1::rlp_list_items(&header).unwrap();
        assert_eq!(fields[0][1..], parent, "parent hash of block {n}");
        assert_eq!(era1::header_number(&header), Some(n));
        parent = keccak(&header);
        let known = match n {
            0 => Some("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"),
            1 => Some("88e96d4537bea4d9c05d12549907b32561d3bf31f45aae734cdc119f13406cb6"),
            8191 => Some("a6860fefa339c963e1bb622526cc8dd4344eedd2a9b969e74de5cccc445fbed4"),
            8192 => Some("ed6f07ec42522e91983ac09b2c2e29568f5454b24bf2034a85acec9e2a8175b7"),
            16383 => Some("05c64fc4842734317f8f1dfe29a7e16f676575ad82a7dae37cef1379cf8500b5"),
            _ => None,
        };
        if let Some(k) = known {
            assert_eq!(hex(&parent), k, "hash of block {n}");
        }
    }
    let stats = store.stats();
    let bytes: u64 = expected
        .iter()
        .map(|(h, b, r)| (h.len() + b.len() + r.len()) as u64)
        .sum();
    assert_eq!(stats.column_bytes.values().sum::<u64>(), bytes);
    assert_eq!(report.bytes, bytes);
    // A second import skips every block it holds: nothing changes.
    let again = era1::import(&store, &era1_files(), &mut |_| {}).unwrap();
    assert_eq!((again.blocks, again.skipped), (0, 16384));
    assert_eq!(store.stats(), stats);
    store.close().unwrap();
    let v = strata::verify::verify(&path).unwrap();
    assert!(!v.damaged(), "{:?}", v.findings);
}

#[test]
fn era1_import_peak_rss_is_under_32_mib() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .arg("era1-import")
        .arg(dir.path().join("db"))
        .args(era1_files())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(f[0], 16384);
    eprintln!(
        "era1 import peak RSS: {:.1} MiB",
        f[1] as f64 / (1 << 20) as f64
    );
    assert!(f[1] < 32 << 20, "peak RSS {} bytes", f[1]);
}

// An era1 writer for built blocks.

fn rlp_bytes(b: &[u8]) -> Vec<u8> {
    if b.len() == 1 && b[0] < 0x80 {
        return b.to_vec();
    }
    let mut out = rlp_len(0x80, b.len());
    out.extend_from_slice(b);
    out
}

fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload: Vec<u8> = items.concat();
    let mut out = rlp_len(0xc0, payload.len());
    out.extend(payload);
    out
}

fn rlp_len(base: u8, len: usize) -> Vec<u8> {
    if len < 56 {
        return vec![base + len as u8];
    }
    let be: Vec<u8> = (len as u64)
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    let mut out = vec![base + 55 + be.len() as u8];
    out.extend(be);
    out
}

fn rlp_uint(n: u64) -> Vec<u8> {
    let be: Vec<u8> = n
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    rlp_bytes(&be)
}

fn snappy(b: &[u8]) -> Vec<u8> {
    let mut w = snap::write::FrameEncoder::new(Vec::new());
    w.write_all(b).unwrap();
    w.into_inner().unwrap()
}

fn record(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(data);
}

/// A built block: a header of 15 fields (number in the ninth), a body with `txs`
/// transactions of up to 20 KiB, and one receipt per transaction with logs.
fn built_block(n: u64, rng: &mut rand::rngs::SmallRng) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut fields: Vec<Vec<u8>> = (0..8).map(|i| rlp_bytes(&[i as u8 + 1; 32])).collect();
    fields.push(rlp_uint(n));
    fields.extend((0..6).map(|i| rlp_uint(i * 1000 + 7)));
    let header = rlp_list(&fields);
    let txs: Vec<Vec<u8>> = (0..rng.random_range(0..6))
        .map(|t| {
            let data: Vec<u8> = (0..rng.random_range(0..20_000))
                .map(|_| rng.random())
                .collect();
            rlp_list(&[rlp_uint(t), rlp_uint(n), rlp_bytes(&data)])
        })
        .collect();
    let body = rlp_list(&[rlp_list(&txs), rlp_list(&[])]);
    let receipts: Vec<Vec<u8>> = (0..txs.len())
        .map(|i| {
            let log = rlp_list(&[
                rlp_bytes(&[9; 20]),
                rlp_list(&[rlp_bytes(&[i as u8; 32])]),
                rlp_bytes(&[1, 2, 3]),
            ]);
            rlp_list(&[
                rlp_uint(1),
                rlp_uint(21000 * (i as u64 + 1)),
                rlp_bytes(&[0; 256]),
                rlp_list(&[log]),
            ])
        })
        .collect();
    (header, body, rlp_list(&receipts))
}

fn write_era1(path: &Path, start: u64, blocks: &[(Vec<u8>, Vec<u8>, Vec<u8>)]) {
    let mut out = Vec::new();
    record(&mut out, 0x3265, &[]);
    let mut offsets = Vec::new();
    for (h, b, r) in blocks {
        offsets.push(out.len() as i64);
        record(&mut out, 3, &snappy(h));
        record(&mut out, 4, &snappy(b));
        record(&mut out, 5, &snappy(r));
        record(&mut out, 6, &[0; 32]);
    }
    record(&mut out, 7, &[0; 32]);
    let index_at = out.len() as i64;
    let mut index = start.to_le_bytes().to_vec();
    for o in offsets {
        index.extend_from_slice(&(o - index_at).to_le_bytes());
    }
    index.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    record(&mut out, 0x3266, &index);
    std::fs::write(path, out).unwrap();
}

#[test]
fn era1_blocks_with_transactions_and_receipts_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    let blocks: Vec<_> = (0..300).map(|i| built_block(5000 + i, &mut rng)).collect();
    assert!(blocks.iter().any(|(_, b, _)| b.len() > 10_000));
    let file = dir.path().join("built.era1");
    write_era1(&file, 5000, &blocks);
    let options = HistoryOptions {
        shard_blocks: 100,
        ..HistoryOptions::default()
    };
    let store = HistoryStore::open(dir.path().join("db"), options).unwrap();
    let report = era1::import(&store, &[file], &mut |_| {}).unwrap();
    assert_eq!(report.blocks, 300);
    assert_eq!(report.sealed, vec![50, 51, 52]);
    for (i, (h, b, r)) in blocks.iter().enumerate() {
        let n = 5000 + i as u64;
        assert_eq!(&store.get(n, HEADER).unwrap().unwrap(), h);
        assert_eq!(&store.get(n, BODY).unwrap().unwrap(), b);
        assert_eq!(&store.get(n, RECEIPTS).unwrap().unwrap(), r);
    }
    assert_eq!(
        store.missing(4990..5310).collect::<Vec<_>>(),
        vec![4990..5000, 5300..5310]
    );
    store.close().unwrap();
}

#[test]
fn damaged_era1_files_are_errors_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
    let blocks: Vec<_> = (0..5).map(|i| built_block(i, &mut rng)).collect();
    let good = dir.path().join("good.era1");
    write_era1(&good, 0, &blocks);
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.era1");
    let read_all = |path: &Path| -> Result<u64, Error> {
        let mut r = Era1Reader::open(path)?;
        let mut n = 0;
        while r.next_block()?.is_some() {
            n += 1;
        }
        Ok(n)
    };
    assert_eq!(read_all(&good).unwrap(), 5);
    // Every truncation, and a flip of every byte of the first 600, is an error or (where the
    // flip hits data that nothing frames) a read of the same blocks; never a panic.
    for cut in (0..bytes.len()).step_by(7) {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let e = read_all(&bad).unwrap_err();
        assert!(e.to_string().contains("bad.era1"), "{e}");
    }
    for i in 0..600.min(bytes.len()) {
        let mut b = bytes.clone();
        b[i] ^= 0x55;
        std::fs::write(&bad, &b).unwrap();
        if let Err(e) = read_all(&bad) {
            assert!(e.to_string().contains("bad.era1"), "{e}");
        }
    }
    // What a user meets first: another kind of file, and a file cut short.
    std::fs::write(&bad, b"# README\nnot an era1 file").unwrap();
    let e = read_all(&bad).unwrap_err().to_string();
    assert!(e.contains("not an era1 file"), "{e}");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_all(&bad).unwrap_err().to_string();
    assert!(e.contains("truncated, or not an era1 file"), "{e}");
    // A header whose number is not the index's.
    let mut wrong = blocks.clone();
    wrong.swap(1, 2);
    write_era1(&bad, 0, &wrong);
    let e = read_all(&bad).unwrap_err().to_string();
    assert!(
        e.contains("header of block 2 where the index puts block 1"),
        "{e}"
    );
    // An import that fails stores the blocks before the bad one, all of them present.
    let store = HistoryStore::open(dir.path().join("db"), HistoryOptions::default()).unwrap();
    assert!(era1::import(&store, &[bad], &mut |_| {}).is_err());
    assert_eq!(
        store.stats().blocks,
        0,
        "the bad block was in the first batch"
    );
}

/// `strata repair` salvages records one by one; `strata_history::reconcile` then makes each
/// shard's presence agree: a block that lost its header record is missing again (and an
/// import writes it back), and a dropped presence record is rebuilt from the blocks.
#[test]
fn reconcile_after_repair_reports_lost_blocks_missing_and_rebuilds_presence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h");
    let store = strata_tests::open_history(&dir);
    for n in 0..HISTORY_BLOCKS {
        strata_tests::put_history_blocks(&store, &[n], &history_value).unwrap();
    }
    store.db().compact_all().unwrap();
    store.close().unwrap();
    // Damage the header record of block 37 and the presence record of the shard of block 100.
    let damage = |number: u64, column: u8| {
        let shard = number / HISTORY_SHARD_BLOCKS;
        let shard_dir = dir.join(format!("shard-{shard:016x}"));
        let run = std::fs::read_dir(&shard_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "run"))
            .unwrap();
        let mut bytes = std::fs::read(&run).unwrap();
        let mut k = number.to_be_bytes().to_vec();
        k.push(column);
        let at = bytes.windows(9).position(|w| w == k.as_slice()).unwrap();
        bytes[at + 12] ^= 0x5b;
        std::fs::write(&run, bytes).unwrap();
    };
    damage(37, HEADER.0);
    damage(100 / HISTORY_SHARD_BLOCKS * HISTORY_SHARD_BLOCKS, 0);
    strata::repair::repair(&dir).unwrap();
    let r = strata_history::reconcile(&dir)
        .unwrap()
        .expect("a history store");
    assert_eq!(r.cleared, vec![37]);
    assert_eq!(r.shards, 2);
    let store = strata_tests::open_history(&dir);
    let missing: Vec<_> = store.missing(0..HISTORY_BLOCKS).collect();
    assert_eq!(missing, vec![37..38]);
    assert!(store.has(100));
    strata_tests::put_history_blocks(&store, &[37], &history_value).unwrap();
    assert_eq!(store.missing(0..HISTORY_BLOCKS).count(), 0);
    store.close().unwrap();
    // A plain database is not touched.
    let plain = tmp.path().join("plain");
    let db = strata::Db::open(&plain, strata_tests::options(strata::Sharding::Single)).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    assert!(strata_history::reconcile(&plain).unwrap().is_none());
}
