//! `strata history ...`: a history node's block store (era1 import, blocks by number,
//! presence and missing ranges, seal, rollback).

use std::io::Write;
use std::path::{Path, PathBuf};
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
        /// Blocks per shard of a new store (default 10,000); an existing store keeps its own,
        /// and giving another value is an error.
        #[arg(long)]
        shard_blocks: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes one column of a block to standard output, exactly as stored (exit code 1 if the
    /// block does not have it).
    Get {
        /// Block number.
        number: u64,
        /// `header` (column 1), `body` (2), `receipts` (3), or a column number from 4 to 255
        /// that a program using the library wrote.
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
        /// First block to consider.
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
    /// Seals every shard whose blocks are all present and that is not sealed yet (after a
    /// crash between a write and its seal, or a `strata repair`).
    Seal {
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

fn open_existing(db: &Path) -> Result<HistoryStore, Box<dyn std::error::Error>> {
    if !db.join(strata::DB_FILE).is_file() {
        return Err(format!("{} holds no history store (no STRATA file)", db.display()).into());
    }
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
            if !store.has(number) {
                return Err(format!("block {number} is not in the store").into());
            }
            match store.get(number, column)? {
                Some(v) if hex => writeln!(std::io::stdout(), "{}", hex::encode(v))?,
                Some(v) => std::io::stdout().lock().write_all(&v)?,
                None => {
                    return Err(format!("block {number} has no {} column", column.name()).into())
                }
            }
            Ok(())
        }
        History::Missing { db, from, to } => {
            if to.is_some_and(|t| t < from) {
                return Err(format!("--from {from} is above --to {}", to.unwrap_or(0)).into());
            }
            let store = open_existing(&db)?;
            let end = match to {
                Some(t) => t.saturating_add(1),
                None => store.highest().map_or(0, |h| h + 1),
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
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&out)?)?;
            Ok(())
        }
        History::Seal { db } => {
            let store = open_existing(&db)?;
            let sealed = store.seal_full()?;
            store.close()?;
            writeln!(std::io::stdout(), "sealed: {}", shard_list(&sealed))?;
            Ok(())
        }
        History::Rollback { number, db } => {
            let store = open_existing(&db)?;
            let before = store.stats();
            store.rollback_to(number)?;
            let after = store.stats();
            store.close()?;
            let unsealed: Vec<u64> = before
                .sealed_shards
                .iter()
                .filter(|s| !after.sealed_shards.contains(s))
                .copied()
                .collect();
            writeln!(
                std::io::stdout(),
                "rolled back to block {number}: removed {} blocks; unsealed: {}",
                before.blocks - after.blocks,
                shard_list(&unsealed)
            )?;
            Ok(())
        }
    }
}

fn import(files: &[PathBuf], db: &Path, shard_blocks: Option<u64>, json: bool) -> CliResult {
    // Every file's version record and block index are checked before anything is written.
    let mut total = 0;
    for f in files {
        total += era1::Era1Reader::open(f)?.count();
    }
    let options = HistoryOptions {
        shard_blocks: shard_blocks.unwrap_or(strata_history::DEFAULT_SHARD_BLOCKS),
        ..HistoryOptions::default()
    };
    let store = HistoryStore::open(db, options)?;
    if let Some(w) = shard_blocks.filter(|&w| w != store.shard_blocks()) {
        return Err(format!(
            "{} is a store of {} blocks per shard; --shard-blocks {w} applies to new stores only",
            db.display(),
            store.shard_blocks()
        )
        .into());
    }
    let started = Instant::now();
    let mut progress = Progress::new(total, json);
    let result = era1::import_each(
        &store,
        files,
        &mut |done| progress.update("import", done, json),
        &mut |file, r| {
            if !json {
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: done ({} blocks stored so far)",
                    file.display(),
                    r.blocks
                );
            }
        },
    );
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            let _ = store.close();
            return Err(format!("{e} (files listed before it are imported and kept)").into());
        }
    };
    progress.finish();
    store.close()?;
    let secs = started.elapsed().as_secs_f64();
    let mib = report.bytes as f64 / (1 << 20) as f64;
    if json {
        let out = json!({
            "files": report.files,
            "blocks": report.blocks,
            "skipped_blocks": report.skipped,
            "decompressed_bytes": report.bytes,
            "era1_bytes": report.file_bytes,
            "sealed_shards": report.sealed,
            "seconds": secs,
            "blocks_per_s": report.blocks as f64 / secs,
            "mib_per_s": mib / secs,
        });
        writeln!(std::io::stdout(), "{out}")?;
    } else {
        let sealed = shard_list(&report.sealed);
        writeln!(
            std::io::stdout(),
            "imported {} blocks ({:.1} MiB decompressed) from {} file(s) in {secs:.2} s: {:.0} blocks/s, {:.1} MiB/s; {} skipped (already in the store); sealed: {sealed}",
            report.blocks,
            mib,
            report.files,
            report.blocks as f64 / secs,
            mib / secs,
            report.skipped,
        )?;
    }
    Ok(())
}

/// `none`, `shard N`, or `K shards: A-B, C, ...` (sorted, each shard once, runs as ranges).
fn shard_list(shards: &[u64]) -> String {
    let mut sorted = shards.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &s in &sorted {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => runs.push((s, s)),
        }
    }
    let ranges: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    match sorted.len() {
        0 => "none".into(),
        1 => format!("shard {}", sorted[0]),
        n => format!("{n} shards: {}", ranges.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::shard_list;

    #[test]
    fn shard_lists_are_sorted_deduplicated_ranges() {
        assert_eq!(shard_list(&[]), "none");
        assert_eq!(shard_list(&[4, 4]), "shard 4");
        assert_eq!(
            shard_list(&[3, 15, 0, 1, 2, 3, 7, 8]),
            "7 shards: 0-3, 7-8, 15"
        );
    }
}
