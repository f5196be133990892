//! Durability modes under concurrent writers: group commit shares syncs, periodic sync runs in
//! the background, and after reopening every acknowledged write is there.

use std::sync::Arc;

use strata::{Batch, Db, Durability, Sharding};
use strata_tests::options;

fn concurrent_writers(durability: Durability, sharding: Sharding) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(sharding);
    o.durability = durability;
    let db = Arc::new(Db::open(dir.path(), o.clone()).unwrap());
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let mut b = Batch::new();
                    b.put(
                        format!("t{t}-{i:04}").into_bytes(),
                        vec![t as u8; (i % 50) as usize],
                    );
                    b.put(
                        format!("t{t}-{i:04}-b").into_bytes(),
                        i.to_le_bytes().to_vec(),
                    );
                    db.write_batch(&b).unwrap();
                    if i == 120 && t == 0 {
                        db.compact_all().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(db).unwrap().close().unwrap();
    let db = Db::open(dir.path(), o).unwrap();
    for t in 0..4u32 {
        for i in 0..200u32 {
            assert_eq!(
                db.get(format!("t{t}-{i:04}").as_bytes()).unwrap(),
                Some(vec![t as u8; (i % 50) as usize])
            );
            assert_eq!(
                db.get(format!("t{t}-{i:04}-b").as_bytes()).unwrap(),
                Some(i.to_le_bytes().to_vec())
            );
        }
    }
    assert_eq!(db.range::<&[u8], _>(..).unwrap().count(), 1600);
    db.check_invariants();
}

#[test]
fn group_commit_with_concurrent_writers_loses_nothing() {
    concurrent_writers(Durability::SyncPerBatch, Sharding::Single);
    concurrent_writers(Durability::SyncPerBatch, Sharding::Hash { shards: 3 });
}

#[test]
fn periodic_sync_with_concurrent_writers_loses_nothing() {
    concurrent_writers(
        Durability::Periodic { interval_ms: 5 },
        Sharding::Hash { shards: 2 },
    );
}

#[test]
fn buffered_writes_with_concurrent_writers_lose_nothing() {
    concurrent_writers(Durability::Buffered, Sharding::Single);
}
