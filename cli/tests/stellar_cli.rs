//! `strata stellar ...` end to end on the testnet archive (`../shared/testdata`, read in place).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use strata_stellar::archive::{planned_merges, Archive};
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
    let m = planned_merges(&a)
        .unwrap()
        .into_iter()
        .find(|m| m.curr != [0; 32] && m.snap != [0; 32])
        .unwrap();
    let out_file = dir.path().join("merged.xdr");
    let (ok, out, err) = strata(&[
        "stellar",
        "merge",
        a.bucket_path(&m.curr).to_str().unwrap(),
        a.bucket_path(&m.snap).to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), hex::encode(m.output));
    assert!(err.is_empty(), "a protocol-12+ merge is exact: {err}");

    // The same inputs without their METAENTRY are buckets of before protocol 11: the merge
    // cannot be exact (no shadows), and says so.
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
    let (old, new) = (strip(&m.curr, "old.xdr"), strip(&m.snap, "new.xdr"));
    let args = |json: bool| {
        let mut v = vec![
            "stellar".to_string(),
            "merge".into(),
            old.to_str().unwrap().into(),
            new.to_str().unwrap().into(),
            "--out".into(),
            out_file.to_str().unwrap().into(),
        ];
        if json {
            v.push("--json".into());
        }
        v
    };
    let text: Vec<String> = args(false);
    let (ok, _, err) = strata(&text.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        ok && err.contains("warning: protocol 0 merge") && err.contains("shadows"),
        "{err}"
    );
    let js: Vec<String> = args(true);
    let (ok, out, err) = strata(&js.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    let report = json(&out);
    assert_eq!(
        (report["protocol"].as_u64(), report["exact"].as_bool()),
        (Some(0), Some(false))
    );

    let (ok, out, err) = strata(&["stellar", "check-archive", archive, "--json"]);
    assert!(ok, "{err}");
    let report = json(&out);
    assert_eq!(report["merges"], report["matched"]);
    assert!(report["matched"].as_u64().unwrap() >= 98);
}

/// A `LedgerKey` as the CLI takes it: base64 XDR.
fn key_b64(key: &LedgerKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.to_xdr(Limits::none()).unwrap())
}
