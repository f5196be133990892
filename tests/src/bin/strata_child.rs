//! Child process for strata's process-level tests (`tests/tests/rss.rs`, `crash.rs`).
//!
//! - `strata_child ingest DIR BLOCKS`: runs the history ingest into DIR and prints
//!   `peak_rss_bytes max_concurrent_compactions balanced compactions` on one line.
//! - `strata_child crash-writer DIR FIRST_BATCH`: writes batches from FIRST_BATCH on, forever,
//!   into DIR with tiny compaction thresholds; prints `synced N` after each sync that covers
//!   batch N, and `compaction_start` / `compaction_end` as compactions run. Meant to be killed.
//! - `strata_child many-shards DIR KEYS MAX_OPEN_FILES`: opens the range-width-1 database in DIR
//!   (made by `tests/tests/open_files.rs`), reads keys `0..KEYS`, writes and compacts 50 more
//!   shards, reads everything again, and prints `ok FDS` with the descriptors it held at the
//!   end. Run under `ulimit -n`.
//! - `strata_child fault-workload DIR`: the I/O-error campaign's workload
//!   (`tests/tests/io_faults.rs`, run under `tests/shim/faults.c`): writes, syncs and
//!   compactions over three range shards, printing `synced R` after each acknowledged sync and
//!   `error ...` (then stopping) at the first error.
//! - `strata_child random-workload DIR SEED`: the power-loss campaign's seeded random workload
//!   (`strata_tests::crash_ops`), printing `durable I` once every op up to I is acknowledged as
//!   durable, and `error ...` (then stopping) at the first error.
//! - `strata_child stellar-url-import URL DB CACHE`: fetches the latest checkpoint of the
//!   archive at URL into CACHE, imports it into the store DB, and prints `downloaded_bytes
//!   entries peak_rss_bytes`.
//! - `strata_child era1-import DIR FILE...`: imports era1 files into a history store in DIR and
//!   prints `blocks peak_rss_bytes`.
//! - `strata_child history-writer DIR SEED`: a history node's random writes, rollbacks and
//!   seals on the store in DIR (`strata_tests::history_step`), each synced; prints `op ...`
//!   before and `acked` after each one. Meant to be killed.
//! - `strata_child fsync-fail DIR TRIGGER buffered|per-batch`: run under the fsync-failing
//!   shim (`tests/shim/fail_fdatasync.c`); puts `k1`, syncs, arms the shim by creating TRIGGER,
//!   then puts `k2`, syncs twice, puts `k3` and closes, printing `STEP ok` or
//!   `STEP err KIND` for each step.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use strata::{Db, Event, EventSink};

/// Prints compaction events as lines, flushed at once, so that a parent can kill mid-way.
struct PrintEvents;

impl EventSink for PrintEvents {
    fn event(&self, event: &Event) {
        if matches!(
            event,
            Event::CompactionStart { .. } | Event::CompactionEnd { .. }
        ) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", event.name());
            let _ = out.flush();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("ingest") => {
            let params = strata_bench::IngestParams {
                blocks: args[3].parse().expect("BLOCKS"),
                verify_blocks: 200,
                ..Default::default()
            };
            let r =
                strata_bench::ingest(Path::new(&args[2]), &params, &mut |_| {}).expect("ingest");
            println!(
                "{} {} {} {}",
                r.peak_rss_bytes,
                r.compaction.max_concurrent,
                r.compaction.balanced,
                r.compaction.compactions
            );
        }
        Some("crash-writer") => {
            let first: u64 = args[3].parse().expect("FIRST_BATCH");
            let db = Db::open(&args[2], strata_tests::crash_options(Arc::new(PrintEvents)))
                .expect("open");
            for batch in first.. {
                db.write_batch(&strata_tests::crash_batch(batch))
                    .expect("write");
                if batch % 10 == 9 {
                    db.sync().expect("sync");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "synced {batch}");
                    let _ = out.flush();
                }
            }
        }
        Some("many-shards") => many_shards(
            Path::new(&args[2]),
            args[3].parse().expect("KEYS"),
            args[4].parse().expect("MAX_OPEN_FILES"),
        ),
        Some("random-workload") => {
            random_workload(Path::new(&args[2]), args[3].parse().expect("SEED"))
        }
        Some("fault-workload") => fault_workload(Path::new(&args[2])),
        Some("stellar-url-import") => {
            // URL DB CACHE: fetch the latest checkpoint into CACHE and import it into DB.
            let cache = Path::new(&args[4]);
            let fetched = strata_stellar::fetch::mirror_checkpoint(
                &args[2],
                None,
                cache,
                &strata_stellar::fetch::FetchOptions::default(),
                &|_| {},
            )
            .expect("fetch");
            let mut store = strata_stellar::store::LedgerStore::open(&args[3]).expect("open");
            let report = store
                .import_archive(
                    &strata_stellar::Archive::new(cache),
                    Some(fetched.checkpoint),
                )
                .expect("import");
            store.close().expect("close");
            println!(
                "{} {} {}",
                fetched.bytes,
                report.entries,
                strata_bench::Rss::now().vm_hwm
            );
        }
        Some("era1-import") => {
            let store =
                strata_history::HistoryStore::open(&args[2], Default::default()).expect("open");
            let files: Vec<std::path::PathBuf> = args[3..].iter().map(Into::into).collect();
            let r = strata_history::era1::import(&store, &files, &mut |_| {}).expect("import");
            store.close().expect("close");
            println!("{} {}", r.blocks, strata_bench::Rss::now().vm_hwm);
        }
        Some("history-writer") => {
            let store = strata_tests::open_history(Path::new(&args[2]));
            let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(
                args[3].parse().expect("SEED"),
            );
            loop {
                strata_tests::history_step(&store, &mut rng, &mut |line| {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                });
            }
        }
        Some("fsync-fail") => fsync_fail(Path::new(&args[2]), Path::new(&args[3]), &args[4]),
        _ => {
            eprintln!("usage: strata_child ingest DIR BLOCKS | crash-writer DIR FIRST_BATCH | fsync-fail DIR TRIGGER MODE");
            std::process::exit(2);
        }
    }
}

fn report(step: &str, r: strata::Result<()>) {
    match r {
        Ok(()) => println!("{step} ok"),
        Err(strata::Error::Io { source, .. }) => println!("{step} err {:?}", source.kind()),
        Err(e) => println!("{step} err {e}"),
    }
}

fn fsync_fail(dir: &Path, trigger: &Path, mode: &str) {
    let mut o = strata_tests::options(strata::Sharding::Single);
    o.compaction.auto = false;
    o.durability = match mode {
        "per-batch" => strata::Durability::SyncPerBatch,
        _ => strata::Durability::Buffered,
    };
    let db = Db::open(dir, o).expect("open");
    report("put-k1", db.put(b"k1", b"v1"));
    report("sync-1", db.sync());
    std::fs::write(trigger, b"").expect("arm the shim");
    report("put-k2", db.put(b"k2", b"v2"));
    report("sync-2", db.sync());
    report("sync-3", db.sync());
    report("put-k3", db.put(b"k3", b"v3"));
    report("close", db.close());
}

fn many_shards(dir: &Path, keys: u64, max_open_files: usize) {
    let mut o = strata_tests::options(strata::Sharding::Range { width: 1 });
    o.max_open_files = max_open_files;
    let db = Db::open(dir, o).expect("open");
    let check = |db: &Db, n: u64| {
        for i in 0..n {
            let got = db.get(&i.to_be_bytes()).expect("get");
            assert_eq!(got, Some(format!("value {i}").into_bytes()), "key {i}");
        }
        let scanned = db.prefix(b"").expect("scan").count() as u64;
        assert_eq!(scanned, n);
    };
    check(&db, keys);
    for i in keys..keys + 50 {
        db.put(&i.to_be_bytes(), format!("value {i}").as_bytes())
            .expect("put");
    }
    db.compact_all().expect("compact");
    check(&db, keys + 50);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    db.close().expect("close");
    println!("ok {fds}");
}

fn fault_workload(dir: &Path) {
    let mut o = strata_tests::options(strata::Sharding::Range { width: 100 });
    o.compaction.auto = false;
    let db = match Db::open(dir, o) {
        Ok(db) => db,
        Err(e) => return println!("error opening: {e}"),
    };
    let run = || -> strata::Result<()> {
        for round in 0..3u64 {
            for i in 0..30u64 {
                let k = round * 100 + i;
                db.put(&k.to_be_bytes(), &strata_tests::fault_value(k))?;
            }
            db.sync()?;
            println!("synced {round}");
            if round == 1 {
                db.compact_all()?;
            }
        }
        db.delete(&5u64.to_be_bytes())?;
        db.put(&6u64.to_be_bytes(), b"six again")?;
        db.sync()?;
        println!("synced 3");
        db.compact_all()
    };
    if let Err(e) = run() {
        return println!("error: {e}");
    }
    match db.close() {
        Ok(()) => println!("closed"),
        Err(e) => println!("error closing: {e}"),
    }
}

fn random_workload(dir: &Path, seed: u64) {
    use strata_tests::CrashOp;
    let (per_batch, ops) = strata_tests::crash_ops(seed);
    let mut o = strata_tests::options(strata::Sharding::Range { width: 10 });
    o.compaction.auto = false;
    if per_batch {
        o.durability = strata::Durability::SyncPerBatch;
    }
    let mut db = Some(match Db::open(dir, o.clone()) {
        Ok(db) => db,
        Err(e) => return println!("error opening: {e}"),
    });
    for (i, op) in ops.iter().enumerate() {
        let d = db.as_ref().expect("open");
        let mut batch = strata::Batch::new();
        let result = match op {
            CrashOp::Put(k, v) => d.put(&k.to_be_bytes(), v).map(|()| per_batch),
            CrashOp::Delete(k) => d.delete(&k.to_be_bytes()).map(|()| per_batch),
            CrashOp::Batch(b) => {
                for (k, v) in b {
                    match v {
                        Some(v) => batch.put(k.to_be_bytes().to_vec(), v.clone()),
                        None => batch.delete(k.to_be_bytes().to_vec()),
                    };
                }
                d.write_batch(&batch).map(|()| per_batch)
            }
            CrashOp::Sync => d.sync().map(|()| true),
            CrashOp::Compact => d.compact_all().map(|()| false),
            CrashOp::Reopen => db
                .take()
                .expect("open")
                .close()
                .and_then(|()| Db::open(dir, o.clone()))
                .map(|reopened| {
                    db = Some(reopened);
                    true
                }),
        };
        match result {
            Ok(true) => println!("durable {i}"),
            Ok(false) => {}
            Err(e) => return println!("error: {e}"),
        }
    }
    if let Some(d) = db {
        match d.close() {
            Ok(()) => println!("closed"),
            Err(e) => println!("error closing: {e}"),
        }
    }
}
