//! Descriptors are bounded: run files are read through a cache of `max_open_files`, and an idle
//! shard's WAL holds none. A history node with one shard per 10,000 blocks reaches thousands of
//! shards; it must open, write and read under the common `ulimit -n` of 1024, and lower.

use std::path::Path;
use std::process::Command;

use strata::{Db, Sharding};

/// Shards (one key each); `STRATA_OPEN_FILES_SHARDS` raises it (10,000 for a history node at
/// 100M blocks) outside CI.
fn shards() -> u64 {
    std::env::var("STRATA_OPEN_FILES_SHARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

fn make(dir: &Path) {
    let db = Db::open(dir, strata_tests::options(Sharding::Range { width: 1 })).unwrap();
    for i in 0..shards() {
        db.put(&i.to_be_bytes(), format!("value {i}").as_bytes())
            .unwrap();
    }
    db.compact_all().unwrap();
    db.close().unwrap();
}

/// Runs the child on `dir` under `ulimit -n limit`; returns the descriptors it held at the end.
fn child_under_limit(dir: &Path, limit: u32, max_open_files: usize) -> usize {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" many-shards \"$1\" {} {max_open_files}",
            shards()
        ))
        .arg(env!("CARGO_BIN_EXE_strata_child"))
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "under ulimit -n {limit}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .trim()
        .strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {stdout}"))
}

#[test]
fn many_shards_open_and_serve_under_ulimit_1024_with_default_options() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let fds = child_under_limit(dir.path(), 1024, strata::DEFAULT_MAX_OPEN_FILES);
    assert!(
        fds <= strata::DEFAULT_MAX_OPEN_FILES + 16,
        "{fds} descriptors"
    );
}

#[test]
fn many_shards_open_and_serve_under_ulimit_256_with_a_smaller_cache() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let fds = child_under_limit(dir.path(), 256, 64);
    assert!(fds <= 64 + 16, "{fds} descriptors");
}

/// The default cache (512) is cut to half the descriptor limit at open.
#[test]
fn many_shards_open_and_serve_under_ulimit_256_with_default_options() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let fds = child_under_limit(dir.path(), 256, strata::DEFAULT_MAX_OPEN_FILES);
    assert!(
        fds <= 256 / strata::RLIMIT_NOFILE_DIVISOR + 16,
        "{fds} descriptors"
    );
}
