//! The power-loss campaign: the I/O-error campaign's workload (writes, syncs, compactions,
//! three shards) runs under an LD_PRELOAD shim (`tests/shim/power_loss.c`) that turns the Nth
//! write, pwrite or fsync into a power loss: every file the process wrote goes back to its last
//! synced bytes and length, and the process ends. For every N the workload reaches, the
//! database must then open, hold every write acknowledged as synced with its exact value, and
//! hold nothing that was never written. (Unlike SIGKILL, which keeps the page cache, this loses
//! what a missing fsync would lose. Directory entries are not modelled: a create or rename
//! survives without its directory fsync.)
//!
//! CI runs every crash point of one workload; `STRATA_POWER_LOSS_ROUNDS=K` repeats the
//! campaign K times (the workload is deterministic, so more rounds find the same points; the
//! variable is for timing the campaign and soak runs).

use std::path::Path;
use std::process::Command;

use strata_tests::check_fault_workload;

const POWER_LOSS_EXIT: i32 = 86;

/// Runs the child's `workload` (with `args`) with a power loss at call `n`; returns whether it
/// came, and the child's lines.
fn run_child(shim: &Path, scratch: &Path, workload: &[String], n: u32) -> (bool, Vec<String>) {
    let db = scratch.join("db");
    let _ = std::fs::remove_dir_all(&db);
    let out = Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .arg(&workload[0])
        .arg(&db)
        .args(&workload[1..])
        .env("LD_PRELOAD", shim)
        .env("STRATA_CRASH_AT", n.to_string())
        .env("STRATA_CRASH_DIR", &db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lost_power = out.status.code() == Some(POWER_LOSS_EXIT);
    assert!(
        lost_power || out.status.success(),
        "{workload:?} crash point {n}: the workload did not end cleanly\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (lost_power, stdout.lines().map(str::to_owned).collect())
}

fn run(shim: &Path, scratch: &Path, n: u32) -> (bool, Vec<String>) {
    run_child(shim, scratch, &["fault-workload".into()], n)
}

fn run_random(shim: &Path, scratch: &Path, seed: u64, n: u32) -> (bool, Vec<String>) {
    run_child(
        shim,
        scratch,
        &["random-workload".into(), seed.to_string()],
        n,
    )
}

#[test]
fn a_power_loss_at_any_write_or_sync_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("STRATA_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let scratch = tempfile::tempdir().unwrap();
    let shim = strata_tests::build_shim("power_loss.c", scratch.path());
    let mut points = 0;
    for _ in 0..rounds {
        let mut n = 1;
        loop {
            let (lost_power, lines) = run(&shim, scratch.path(), n);
            if !lost_power {
                assert!(lines.iter().any(|l| l == "closed"), "{lines:?}");
                break;
            }
            check_fault_workload(
                &scratch.path().join("db"),
                &lines,
                &format!("power loss at {n}"),
            );
            points += 1;
            assert!(n < 10_000, "the workload never ends");
            n += 1;
        }
    }
    assert!(points > 50, "only {points} crash points");
    eprintln!("{points} power losses, each followed by a clean open and every acknowledged write");
}

/// Seeded random workloads (puts of up to 3 KB, deletes, batches, syncs, compactions, reopens,
/// buffered or per-batch durability, four range shards), each with a power loss at every write
/// and sync it reaches. CI runs `STRATA_CRASH_SEEDS` seeds (default 2); a failing seed replays
/// exactly (`STRATA_CRASH_FIRST_SEED=S STRATA_CRASH_SEEDS=1`).
#[test]
fn random_workloads_lose_nothing_acknowledged_at_any_crash_point() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let first = env("STRATA_CRASH_FIRST_SEED", 1);
    let seeds = env("STRATA_CRASH_SEEDS", 2);
    let scratch = tempfile::tempdir().unwrap();
    let shim = strata_tests::build_shim("power_loss.c", scratch.path());
    let mut points = 0u64;
    for seed in first..first + seeds {
        let mut n = 1;
        loop {
            let (lost_power, lines) = run_random(&shim, scratch.path(), seed, n);
            if !lost_power {
                assert!(
                    lines.iter().any(|l| l == "closed"),
                    "seed {seed}: {lines:?}"
                );
                break;
            }
            let what = format!("seed {seed}, power loss at {n}");
            strata_tests::check_crash_ops(&scratch.path().join("db"), seed, &lines, &what);
            points += 1;
            n += 1;
            assert!(n < 100_000, "seed {seed}: the workload never ends");
        }
        eprintln!("seed {seed} done: {points} power losses so far, all clean");
    }
    assert!(
        points >= seeds * 20,
        "only {points} crash points in {seeds} seeds"
    );
    eprintln!("{seeds} seeds, {points} power losses: 0 lost durable writes, 0 unopenable databases, 0 wrong values");
}
