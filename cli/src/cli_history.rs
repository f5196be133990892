//! `strata history ...`: a history node's block store (era1 import, blocks by number,
//! presence and missing ranges, seal, rollback).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use serde_json::json;
use strata_history::{era1, Column, HistoryOptions, HistoryStore};

use crate::{CliResult, Progress};

/// History subcommands.
#[derive(Subcommand)]
pub enum History {
    /// Imports era1 files (Ethereum history archives): each block's header, body and receipts,
    /// streamed and checked (record framing, block index, RLP); shards are sealed once full.
    Import {
        /// era1 files, in any order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The store's directory (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Blocks per shard of a new store.
        #[arg(long, default_value_t = strata_history::DEFAULT_SHARD_BLOCKS)]
        shard_blocks: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes one column of a block to standard output, exactly as stored (exit code 1 if the
    /// block does not have it).
    Get {
        /// Block number.
        number: u64,
        /// header, body, receipts, or a column number.
        #[arg(long, default_value = "header")]
        column: String,
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
        /// Print hex instead of the raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Prints the missing block ranges (`first-last`, one per line) below the highest block
    /// present, or within --from/--to.
    Missing {
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
        /// First block to consider (default 0).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Last block to consider (default: the highest present).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Blocks, bytes per column, sealed shards (JSON).
    Stats {
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Removes every block above NUMBER, atomically and durably.
    Rollback {
        /// The last block to keep.
        number: u64,
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
    },
}

fn open_existing(db: &PathBuf) -> Result<HistoryStore, Box<dyn std::error::Error>> {
    let options = HistoryOptions {
        create_if_missing: false,
        ..HistoryOptions::default()
    };
    Ok(HistoryStore::open(db, options)?)
}

/// Runs a history subcommand.
pub fn run(command: History) -> CliResult {
    match command {
        History::Import {
            files,
            db,
            shard_blocks,
            json,
        } => import(&files, &db, shard_blocks, json),
        History::Get {
            number,
            column,
            db,
            hex,
        } => {
            let column = Column::parse(&column).ok_or_else(|| {
                format!("unknown column {column:?}: header, body, receipts or 1 to 255")
            })?;
            let store = open_existing(&db)?;
            match store.get(number, column)? {
                Some(v) if hex => println!("{}", hex::encode(v)),
                Some(v) => std::io::stdout().lock().write_all(&v)?,
                None => {
                    return Err(format!("block {number} has no {} column", column.name()).into())
                }
            }
            Ok(())
        }
        History::Missing { db, from, to } => {
            let store = open_existing(&db)?;
            let end = match to {
                Some(t) => t.saturating_add(1),
                None => highest(&store).map_or(0, |h| h + 1),
            };
            let mut out = std::io::stdout().lock();
            for r in store.missing(from..end) {
                writeln!(out, "{}-{}", r.start, r.end - 1)?;
            }
            Ok(())
        }
        History::Stats { db } => {
            let s = open_existing(&db)?.stats();
            let columns: serde_json::Map<String, serde_json::Value> = s
                .column_bytes
                .iter()
                .map(|(c, b)| (c.name(), json!(b)))
                .collect();
            let out = json!({
                "blocks": s.blocks,
                "shard_blocks": s.shard_blocks,
                "shards": s.shards,
                "sealed_shards": s.sealed_shards,
                "column_bytes": columns,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        History::Rollback { number, db } => {
            let store = open_existing(&db)?;
            store.rollback_to(number)?;
            store.close()?;
            Ok(())
        }
    }
}

/// The highest block present (from presence only).
fn highest(store: &HistoryStore) -> Option<u64> {
    let shards = store.db().shards();
    let width = store.shard_blocks();
    for shard in shards.iter().rev() {
        let start = shard.0 * width;
        let mut last = None;
        let mut at = start;
        // Present runs of the shard: the end of the last one is the highest block.
        for gap in store.missing(start..start + width) {
            if gap.start > at {
                last = Some(gap.start - 1);
            }
            at = gap.end;
        }
        if at < start + width {
            last = Some(start + width - 1);
        }
        if last.is_some() {
            return last;
        }
    }
    None
}

fn import(files: &[PathBuf], db: &PathBuf, shard_blocks: u64, json: bool) -> CliResult {
    let mut total = 0;
    for f in files {
        total += era1::Era1Reader::open(f)?.count();
    }
    let options = HistoryOptions {
        shard_blocks,
        ..HistoryOptions::default()
    };
    let store = HistoryStore::open(db, options)?;
    let started = Instant::now();
    let mut progress = Progress::new(total, json);
    let report = era1::import(&store, files, &mut |done| {
        progress.update("import", done, json)
    })?;
    progress.finish();
    store.close()?;
    let secs = started.elapsed().as_secs_f64();
    let mib = report.bytes as f64 / (1 << 20) as f64;
    if json {
        let out = json!({
            "files": report.files,
            "blocks": report.blocks,
            "skipped_blocks": report.skipped,
            "bytes": report.bytes,
            "file_bytes": report.file_bytes,
            "sealed_shards": report.sealed,
            "seconds": secs,
            "blocks_per_s": report.blocks as f64 / secs,
            "mib_per_s": mib / secs,
        });
        println!("{out}");
    } else {
        println!(
            "imported {} blocks ({:.1} MiB decompressed) from {} files in {secs:.2} s: {:.0} blocks/s, {:.1} MiB/s; {} skipped (sealed before); sealed shards {:?}",
            report.blocks,
            mib,
            report.files,
            report.blocks as f64 / secs,
            mib / secs,
            report.skipped,
            report.sealed
        );
    }
    Ok(())
}
