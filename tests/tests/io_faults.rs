//! The I/O-error campaign: a short workload (writes, syncs, compactions, new shards) runs in a
//! child process under an LD_PRELOAD shim (`tests/shim/faults.c`) that fails the Nth open,
//! write, pwrite, fsync, rename or mkdir with EIO, ENOSPC or EMFILE, for every N the workload
//! reaches. Each run must end in an error returned to the caller (never a panic), and once the
//! fault is gone the database must open, hold every acknowledged write with its exact value,
//! and hold nothing that was never written.

use std::path::Path;
use std::process::Command;

use strata_tests::check_fault_workload;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const EMFILE: i32 = 24;

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

fn campaign(kind: &str, errno: i32) -> u32 {
    let scratch = tempfile::tempdir().unwrap();
    let shim = strata_tests::build_shim("faults.c", scratch.path());
    let mut n = 1;
    loop {
        let (fired, lines) = run(&shim, scratch.path(), kind, n, errno);
        let what = format!("{kind} #{n} errno {errno}");
        check_fault_workload(&scratch.path().join("db"), &lines, &what);
        if !fired {
            assert!(lines.iter().any(|l| l == "closed"), "{what}: {lines:?}");
            return n - 1;
        }
        assert!(n < 5_000, "{what}: the workload never ends");
        n += 1;
    }
}

/// Every file write goes through the file-system seam's positional `write_all_at`, so the
/// engine issues `pwrite` only (the shim still counts `write`, which stays at zero).
#[test]
fn every_pwrite_failing_with_eio_or_enospc() {
    for (kind, errno) in [("pwrite", EIO), ("pwrite", ENOSPC)] {
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
