//! After a failed fsync nothing is reported durable again until reopen: the kernel may have
//! dropped the dirty pages, and a retried fsync can then succeed without writing them. A child
//! process runs under an LD_PRELOAD shim (`tests/shim/fail_fdatasync.c`) that fails one
//! fdatasync with EIO on request.

use std::path::Path;
use std::process::Command;

use strata::{Db, Sharding};

/// Runs the child scenario under the shim; returns its `STEP RESULT` lines.
fn run_child(mode: &str) -> (tempfile::TempDir, Vec<String>) {
    let scratch = tempfile::tempdir().unwrap();
    let shim = strata_tests::build_shim("fail_fdatasync.c", scratch.path());
    let db = scratch.path().join("db");
    let trigger = scratch.path().join("fail-next-fsync");
    let out = Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .args(["fsync-fail"])
        .arg(&db)
        .arg(&trigger)
        .arg(mode)
        .env("LD_PRELOAD", &shim)
        .env("STRATA_FAIL_FSYNC_TRIGGER", &trigger)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!trigger.exists(), "the shim never failed an fsync");
    (scratch, stdout.lines().map(str::to_owned).collect())
}

fn eio() -> String {
    format!("err {:?}", std::io::Error::from_raw_os_error(5).kind())
}

fn step<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no step {name} in {lines:?}"))
}

fn reopen_has_k1(dir: &Path) {
    let db = Db::open(dir.join("db"), strata_tests::options(Sharding::Single)).unwrap();
    assert_eq!(db.get(b"k1").unwrap(), Some(b"v1".to_vec()));
    db.sync().unwrap();
    db.close().unwrap();
}

#[test]
fn a_failed_sync_is_never_followed_by_a_successful_one_until_reopen() {
    let (dir, lines) = run_child("buffered");
    assert_eq!(step(&lines, "put-k1"), "ok");
    assert_eq!(step(&lines, "sync-1"), "ok");
    assert_eq!(step(&lines, "put-k2"), "ok");
    assert_eq!(step(&lines, "sync-2"), eio(), "{lines:?}");
    assert_eq!(
        step(&lines, "sync-3"),
        eio(),
        "the second sync reported k2 durable: {lines:?}"
    );
    assert!(step(&lines, "put-k3").starts_with("err"), "{lines:?}");
    assert_eq!(step(&lines, "close"), eio(), "{lines:?}");
    reopen_has_k1(dir.path());
}

#[test]
fn a_write_whose_batch_sync_failed_leaves_every_later_sync_failing() {
    let (dir, lines) = run_child("per-batch");
    assert_eq!(step(&lines, "put-k1"), "ok");
    assert_eq!(step(&lines, "sync-1"), "ok");
    assert_eq!(step(&lines, "put-k2"), eio(), "{lines:?}");
    assert_eq!(step(&lines, "sync-2"), eio(), "{lines:?}");
    assert_eq!(step(&lines, "sync-3"), eio(), "{lines:?}");
    assert!(step(&lines, "put-k3").starts_with("err"), "{lines:?}");
    assert_eq!(step(&lines, "close"), eio(), "{lines:?}");
    reopen_has_k1(dir.path());
}
