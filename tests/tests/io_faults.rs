//! The I/O-error campaign: a short workload (writes, syncs, compactions, new shards) runs in a
//! child process under an LD_PRELOAD shim (`tests/shim/faults.c`) that fails the Nth open,
//! write, pwrite, fsync, rename or mkdir with EIO, ENOSPC or EMFILE, for every N the workload
//! reaches. Each run must end in an error returned to the caller (never a panic), and once the
//! fault is gone the database must open, hold every acknowledged write with its exact value,
//! and hold nothing that was never written.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata::{Db, Sharding};
use strata_tests::fault_value;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const EMFILE: i32 = 24;

fn build_shim(out: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("shim/faults.c");
    let lib = out.join("libfaults.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) builds the fault shim");
    assert!(status.success(), "building {}", source.display());
    lib
}

/// Runs the workload with call `n` of `kind` failing with `errno`. Returns whether the fault
/// fired, and the child's lines.
fn run(shim: &Path, scratch: &Path, kind: &str, n: u32, errno: i32) -> (bool, Vec<String>) {
    let db = scratch.join("db");
    let fired = scratch.join("fired");
    let _ = std::fs::remove_dir_all(&db);
    let _ = std::fs::remove_file(&fired);
    let out = Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .arg("fault-workload")
        .arg(&db)
        .env("LD_PRELOAD", shim)
        .env("STRATA_FAULT", format!("{kind}:{n}:{errno}"))
        .env("STRATA_FAULT_DIR", &db)
        .env("STRATA_FAULT_FIRED", &fired)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{kind} #{n} errno {errno}: the workload did not end cleanly\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (fired.exists(), stdout.lines().map(str::to_owned).collect())
}

/// What the database must hold after the run that printed `lines`.
fn check(db_dir: &Path, lines: &[String], what: &str) {
    if !db_dir.join("STRATA").exists() {
        // The fault stopped the database from being created: nothing was acknowledged.
        assert!(
            !lines.iter().any(|l| l.starts_with("synced")),
            "{what}: {lines:?}"
        );
        return;
    }
    let synced: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("synced ")?.parse().ok())
        .collect();
    let db = Db::open(
        db_dir,
        strata_tests::options(Sharding::Range { width: 100 }),
    )
    .unwrap_or_else(|e| panic!("{what}: the database does not open once the fault is gone: {e}"));
    for round in 0..3u64 {
        for k in (round * 100)..(round * 100 + 30) {
            let got = db.get(&k.to_be_bytes()).unwrap();
            let rewritten = match k {
                5 => Some(None),
                6 => Some(Some(b"six again".to_vec())),
                _ => None,
            };
            let first = Some(fault_value(k));
            let durable = synced.contains(&round);
            let ok = match (synced.contains(&3), rewritten) {
                (true, Some(v)) => got == v,
                (false, Some(v)) => got == v || got == first || (!durable && got.is_none()),
                (_, None) if durable => got == first,
                (_, None) => got.is_none() || got == first,
            };
            assert!(ok, "{what}: key {k} reads {got:?} after {lines:?}");
        }
    }
    let keys = db.prefix(b"").unwrap().count();
    assert!(keys <= 90, "{what}: {keys} keys, at most 90 were written");
    db.close().unwrap();
}

fn campaign(kind: &str, errno: i32) -> u32 {
    let scratch = tempfile::tempdir().unwrap();
    let shim = build_shim(scratch.path());
    let mut n = 1;
    loop {
        let (fired, lines) = run(&shim, scratch.path(), kind, n, errno);
        let what = format!("{kind} #{n} errno {errno}");
        check(&scratch.path().join("db"), &lines, &what);
        if !fired {
            assert!(lines.iter().any(|l| l == "closed"), "{what}: {lines:?}");
            return n - 1;
        }
        assert!(n < 5_000, "{what}: the workload never ends");
        n += 1;
    }
}

#[test]
fn every_write_and_pwrite_failing_with_eio_or_enospc() {
    for (kind, errno) in [
        ("write", EIO),
        ("write", ENOSPC),
        ("pwrite", EIO),
        ("pwrite", ENOSPC),
    ] {
        let calls = campaign(kind, errno);
        assert!(calls > 0, "the workload made no {kind} call");
        eprintln!("{kind} errno {errno}: {calls} calls, each failed once");
    }
}

#[test]
fn every_fsync_failing_with_eio() {
    let calls = campaign("fsync", EIO);
    assert!(calls > 0);
    eprintln!("fsync: {calls} calls, each failed once");
}

#[test]
fn every_open_failing_with_emfile_or_enospc() {
    for errno in [EMFILE, ENOSPC] {
        let calls = campaign("open", errno);
        assert!(calls > 0);
        eprintln!("open errno {errno}: {calls} calls, each failed once");
    }
}

#[test]
fn every_rename_and_mkdir_failing_with_eio_or_enospc() {
    for (kind, errno) in [
        ("rename", EIO),
        ("rename", ENOSPC),
        ("mkdir", ENOSPC),
        ("mkdir", EIO),
    ] {
        let calls = campaign(kind, errno);
        assert!(calls > 0, "the workload made no {kind} call");
        eprintln!("{kind} errno {errno}: {calls} calls, each failed once");
    }
}
