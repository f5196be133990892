//! A failed compaction is reported (event, and an error naming the cause to the next writer on
//! that shard); the shard refuses writes until the database is reopened; no retry happens
//! behind the caller's back; other shards keep working.

use std::sync::Arc;

use strata::{Db, Error, Event, EventLog, Sharding};

#[test]
fn a_failed_compaction_poisons_only_its_shard_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EventLog::default());
    let mut o = strata_tests::options(Sharding::Hash { shards: 2 });
    o.compaction.auto = false;
    o.events = log.clone();
    let db = Db::open(dir.path(), o.clone()).unwrap();
    for i in 0..400u32 {
        db.put(&i.to_be_bytes(), &[i as u8; 200]).unwrap();
    }
    db.compact_all().unwrap();
    db.close().unwrap();

    // Damage a record in the middle of shard 0's run: the run opens (header and footer are
    // intact), but compaction reads every record and checks it.
    let shard = dir.path().join("shard-0000000000000000");
    let run = std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "run"))
        .unwrap();
    let mut bytes = std::fs::read(&run).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&run, bytes).unwrap();

    let db = Db::open(dir.path(), o.clone()).unwrap();
    let in_shard_0 = (0..400u32)
        .find(|i| db.shard_of(&i.to_be_bytes()) == strata::ShardId(0))
        .unwrap();
    let in_shard_1 = (0..400u32)
        .find(|i| db.shard_of(&i.to_be_bytes()) == strata::ShardId(1))
        .unwrap();
    db.put(&in_shard_0.to_be_bytes(), b"new").unwrap();
    let e = db.compact(strata::ShardId(0)).unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    assert!(
        log.events()
            .iter()
            .any(|e| matches!(e, Event::CompactionFailed { .. })),
        "no failure event"
    );
    let ends_0 = log
        .events()
        .iter()
        .filter(|e| matches!(e, Event::CompactionEnd { shard, .. } if shard.0 == 0))
        .count();
    assert_eq!(ends_0, 1, "only the first compaction of shard 0 ended");
    // The next writer on that shard gets the cause; the other shard still takes writes.
    let e = db.put(&in_shard_0.to_be_bytes(), b"refused").unwrap_err();
    assert!(
        matches!(&e, Error::Poisoned { shard: 0, cause } if cause.contains("checksum")),
        "{e}"
    );
    assert!(db.stats().shards[0].poisoned);
    db.put(&in_shard_1.to_be_bytes(), b"fine").unwrap();
    // The write before the failure is still readable; nothing was retried or lost.
    assert_eq!(
        db.get(&in_shard_0.to_be_bytes()).unwrap(),
        Some(b"new".to_vec())
    );
    let compactions_started = log
        .events()
        .iter()
        .filter(|e| matches!(e, Event::CompactionStart { .. }))
        .count();
    assert_eq!(
        compactions_started, 3,
        "compact_all twice over 2 shards would be 4: no silent retry"
    );
    db.close().unwrap();

    // Reopened, the shard takes writes again (the damage is still there for `verify` to name).
    let db = Db::open(dir.path(), o).unwrap();
    db.put(&in_shard_0.to_be_bytes(), b"after reopen").unwrap();
    assert_eq!(
        db.get(&in_shard_0.to_be_bytes()).unwrap(),
        Some(b"after reopen".to_vec())
    );
    assert!(strata::verify::verify(dir.path())
        .unwrap()
        .findings
        .iter()
        .any(|f| f.file == run && f.damage));
}
