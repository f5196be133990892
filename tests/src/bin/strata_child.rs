//! Child process for strata's process-level tests (`tests/tests/rss.rs`, `crash.rs`).
//!
//! - `strata_child ingest DIR BLOCKS`: runs the history ingest into DIR and prints
//!   `peak_rss_bytes max_concurrent_compactions balanced compactions` on one line.
//! - `strata_child crash-writer DIR FIRST_BATCH`: writes batches from FIRST_BATCH on, forever,
//!   into DIR with tiny compaction thresholds; prints `synced N` after each sync that covers
//!   batch N, and `compaction_start` / `compaction_end` as compactions run. Meant to be killed.

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
        _ => {
            eprintln!("usage: strata_child ingest DIR BLOCKS | crash-writer DIR FIRST_BATCH");
            std::process::exit(2);
        }
    }
}
