//! `strata stellar ...` end to end on the testnet archive (`../shared/testdata`, read in place).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use strata_stellar::archive::{check_archive, Archive, CurrInput};
use strata_stellar::stellar_xdr::{LedgerEntry, LedgerKey, Limits, ReadXdr, WriteXdr};

fn archive_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/stellar-testnet")
}

fn strata(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap()
}

#[test]
fn import_get_scan_merge_and_check_archive_from_the_command_line() {
    let root = archive_root();
    let archive = root.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();

    let (ok, out, err) = strata(&["stellar", "import", archive, "--db", db, "--json"]);
    assert!(ok, "{err}");
    let report = json(&out);
    assert_eq!(report["checkpoint"], 10047);
    assert_eq!(report["bytes"], 5_836_956);

    // Scan accounts, then look each of the first few up by key.
    let (ok, out, err) = strata(&["stellar", "scan", "--db", db, "--type", "account"]);
    assert!(ok, "{err}");
    let entries: Vec<&str> = out.lines().collect();
    let (ok, count, _) = strata(&[
        "stellar", "scan", "--db", db, "--type", "ACCOUNT", "--count", "--json",
    ]);
    assert!(ok);
    assert_eq!(json(&count)["count"], entries.len());
    assert!(entries.len() > 1000);
    for b64 in entries.iter().step_by(997) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let key = LedgerEntry::from_xdr(&bytes, Limits::none())
            .unwrap()
            .to_key();
        let key64 = key_b64(&key);
        let (ok, out, err) = strata(&["stellar", "get", "--db", db, &key64]);
        assert!(ok, "{err}");
        assert_eq!(out.trim(), *b64);
    }
    // The Soroban state size: the live contract data and code, entries and XDR bytes, as the
    // per-type scans give them.
    let (ok, out, err) = strata(&["stellar", "soroban-size", "--db", db, "--json"]);
    assert!(ok, "{err}");
    let sizes = json(&out);
    assert!(sizes["warning"].as_str().unwrap().contains("lower bound"));
    for ty in ["contract_data", "contract_code"] {
        let (ok, out, err) = strata(&["stellar", "scan", "--db", db, "--type", ty]);
        assert!(ok, "{err}");
        let bytes: usize = out
            .lines()
            .map(|l| {
                base64::engine::general_purpose::STANDARD
                    .decode(l)
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(bytes > 0, "the testnet archive holds {ty} entries");
        assert_eq!(sizes[ty]["entries"], out.lines().count(), "{ty}");
        assert_eq!(sizes[ty]["xdr_bytes"], bytes, "{ty}");
    }

    // A key no bucket holds.
    let absent = LedgerKey::Ttl(strata_stellar::stellar_xdr::LedgerKeyTtl {
        key_hash: strata_stellar::stellar_xdr::Hash([0xAB; 32]),
    });
    let (ok, out, _) = strata(&["stellar", "get", "--db", db, &key_b64(&absent), "--json"]);
    assert!(ok);
    assert_eq!(json(&out)["present"], false);
    let (ok, _, err) = strata(&["stellar", "get", "--db", db, "not base64!"]);
    assert!(!ok && err.contains("base64"), "{err}");
    let missing = dir.path().join("missing");
    let (ok, _, err) = strata(&[
        "stellar",
        "get",
        "--db",
        missing.to_str().unwrap(),
        &key_b64(&absent),
    ]);
    assert!(!ok && err.contains("missing"), "{err}");
    assert!(!missing.exists(), "get must not create a store");
    let (ok, _, err) = strata(&["stellar", "scan", "--db", db, "--type", "nope"]);
    assert!(!ok && err.contains("unknown entry type"), "{err}");

    // One merge into level 4, by hand, gives the archive's output.
    let a = Archive::new(&root);
    let mut found = None;
    let scratch = tempfile::tempdir().unwrap();
    check_archive(&a, scratch.path(), |c| {
        if let (4, Some(CurrInput::Bucket(curr)), Some(snap)) =
            (c.merge.level, &c.merge.curr, c.merge.snap)
        {
            if found.is_none() && *curr != [0; 32] && snap != [0; 32] {
                found = Some((*curr, snap, c.expected));
            }
        }
    })
    .unwrap();
    let (curr, snap, expected) = found.unwrap();
    let out_file = dir.path().join("merged.xdr");
    let merge_args = |old: &Path, new: &Path, extra: &[&Path]| {
        let mut v = vec![
            "stellar".to_string(),
            "merge".into(),
            old.to_str().unwrap().into(),
            new.to_str().unwrap().into(),
            "--out".into(),
            out_file.to_str().unwrap().into(),
            "--json".into(),
        ];
        for s in extra {
            v.push("--shadow".into());
            v.push(s.to_str().unwrap().into());
        }
        v
    };
    let run = |args: Vec<String>| strata(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out, err) = run(merge_args(
        &a.bucket_path(&curr),
        &a.bucket_path(&snap),
        &[],
    ));
    assert!(ok, "{err}");
    let report = json(&out);
    assert_eq!(report["sha256"], hex::encode(expected));
    assert_eq!(
        (report["protocol"].as_u64(), report["list"].as_str()),
        (Some(22), Some("live"))
    );

    // Shadows given to a protocol-22 merge are refused, as stellar-core refuses them.
    let (ok, _, err) = run(merge_args(
        &a.bucket_path(&curr),
        &a.bucket_path(&snap),
        &[&a.bucket_path(&curr)],
    ));
    assert!(
        !ok && err.contains("shadow") && err.contains("protocol 22"),
        "{err}"
    );

    // The same inputs without their METAENTRY are buckets of before protocol 11, which
    // cannot hold their INITENTRY records: the error names the bucket and the offset.
    let strip = |hash: &[u8; 32], name: &str| {
        let mut gz = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(a.bucket_path(hash)).unwrap()),
            &mut gz,
        )
        .unwrap();
        let first = u32::from_be_bytes(gz[..4].try_into().unwrap()) & 0x7fff_ffff;
        let path = dir.path().join(name);
        std::fs::write(&path, &gz[4 + first as usize..]).unwrap();
        path
    };
    let (old, new) = (strip(&curr, "old.xdr"), strip(&snap, "new.xdr"));
    let (ok, _, err) = run(merge_args(&old, &new, &[]));
    assert!(
        !ok && err.contains("INITENTRY at offset") && err.contains("protocol 0"),
        "{err}"
    );

    let (ok, out, err) = strata(&["stellar", "check-archive", archive, "--json"]);
    assert!(ok, "{err}");
    let report = json(&out);
    assert_eq!(report["mismatched"], 0);
    assert_eq!(report["failed"], 0);
    // Levels 3 (chained), 4, 5 and 6; levels 1 and 2 are found but not checkable.
    assert_eq!(report["reproduced"], 254);
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 10, "every live level 1-10 is reported");
    assert_eq!(levels[0]["not_checkable"], 157);
    assert!(levels[0]["why_not_checkable"]["snap"]["example"]
        .as_str()
        .unwrap()
        .contains("no checkpoint state"));
    assert_eq!(levels[2]["chained"], 156);
}

/// A `LedgerKey` as the CLI takes it: base64 XDR.
fn key_b64(key: &LedgerKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.to_xdr(Limits::none()).unwrap())
}
