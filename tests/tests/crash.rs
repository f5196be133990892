//! Crash test: a child process writing with compactions running all the time is killed
//! (SIGKILL) right after a compaction starts, several times over. After each reopen: every
//! batch written before the last completed sync is there, whole; nothing half-written is
//! visible (every value read is exactly the one written); no temporary file is left; the
//! shards' invariants hold.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use strata::{Db, NoEvents};
use strata_tests::{crash_key, crash_options, crash_value, CRASH_BATCH_KEYS};

/// Runs the writer from `first` until it has synced `syncs` times and then started a
/// compaction; kills it there. Returns the last batch covered by a completed sync.
fn run_and_kill(dir: &std::path::Path, first: u64, syncs: usize) -> Option<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .arg("crash-writer")
        .arg(dir)
        .arg(first.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last_synced = None;
    let mut seen = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("synced ") {
            last_synced = Some(n.parse().unwrap());
            seen += 1;
        } else if line == "compaction_start" && seen >= syncs {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    last_synced
}

fn tmp_files(dir: &std::path::Path) -> Vec<String> {
    strata_tests::snapshot_dir(dir)
        .into_keys()
        .filter(|k| k.ends_with(".tmp"))
        .collect()
}

#[test]
fn killed_during_compaction_loses_nothing_synced_and_shows_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut next = 0u64;
    let mut durable = None;
    for round in 0..12 {
        let synced = run_and_kill(&path, next, 3 + round * 2);
        durable = synced.or(durable);
        let db = Db::open(&path, crash_options(Arc::new(NoEvents))).unwrap();
        db.check_invariants();
        // Reopening queues the compactions the kill interrupted; once they are done, no
        // temporary file may remain (the crash's own are removed at open).
        db.wait_for_compactions();
        assert!(
            tmp_files(&path).is_empty(),
            "round {round}: temporary files left: {:?}",
            tmp_files(&path)
        );
        let last = durable.expect("the writer synced before the kill");
        for batch in 0..=last {
            for i in 0..CRASH_BATCH_KEYS {
                assert_eq!(
                    db.get(&crash_key(batch, i)).unwrap(),
                    Some(crash_value(batch, i)),
                    "round {round}: batch {batch} key {i} lost"
                );
            }
        }
        // Whatever else is there (written after the last sync) is exactly what was written.
        let mut count = 0u64;
        for item in db.range::<&[u8], _>(..).unwrap() {
            let (key, value) = item.unwrap();
            let text = std::str::from_utf8(&key).unwrap();
            let (batch, i) = text[1..].split_once('-').unwrap();
            assert_eq!(
                value,
                crash_value(batch.parse().unwrap(), i.parse().unwrap()),
                "round {round}: {text} half-written"
            );
            count += 1;
        }
        assert!(count >= (last + 1) * CRASH_BATCH_KEYS);
        db.close().unwrap();
        next = last + 1;
    }
}
