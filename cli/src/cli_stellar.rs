//! `strata stellar ...`: Stellar ledger state on strata.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use clap::Subcommand;
use serde_json::json;
use strata_stellar::archive::{check_archive, Archive, MergeCheck};
use strata_stellar::fetch::{mirror_checkpoint, FetchOptions, FetchProgress, FetchReport};
use strata_stellar::key::{entry_type_name, parse_entry_type, ENTRY_TYPES};
use strata_stellar::merge::{merge_files, merge_protocol, FIRST_PROTOCOL_WITHOUT_SHADOWS};
use strata_stellar::stellar_xdr::{LedgerKey, Limits, ReadXdr};
use strata_stellar::store::LedgerStore;

use crate::CliResult;

/// Stellar subcommands.
#[derive(Subcommand)]
pub enum Stellar {
    /// Imports a history archive's bucket list at a checkpoint into a store (replacing what it
    /// held; a failed import leaves the store as it was).
    Import {
        /// The history archive: its root directory, or its base URL (`http://...`; `https://`
        /// needs a build with `--features tls`).
        archive: String,
        /// The store's directory (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// The checkpoint ledger (63, 127, ...); default: the archive's latest.
        #[arg(long)]
        checkpoint: Option<u32>,
        /// For a URL: downloads at once.
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        /// For a URL: the folder that keeps what was downloaded, laid out as an archive
        /// (default: `<db>.archive` beside the store). Buckets it holds are not fetched again.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the ledger entry of a key as base64 XDR, or says it is absent.
    Get {
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
        /// The `LedgerKey`, base64 XDR.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints every live entry of one type (base64 XDR, one per line), or counts them.
    Scan {
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
        /// The entry type: account, trustline, offer, data, claimable_balance,
        /// liquidity_pool, contract_data, contract_code, config_setting or ttl.
        #[arg(long = "type")]
        ty: String,
        /// Only count the entries.
        #[arg(long)]
        count: bool,
        /// Print JSON (one object per entry, one per line; or one object with the count).
        #[arg(long)]
        json: bool,
    },
    /// Merges two buckets with stellar-core's rules and prints the output's SHA-256.
    Merge {
        /// The older bucket (plain or gzipped).
        old: PathBuf,
        /// The newer bucket (plain or gzipped).
        new: PathBuf,
        /// The output bucket (uncompressed).
        #[arg(long)]
        out: PathBuf,
        /// The merge is into the last level: DEADENTRY records are dropped.
        #[arg(long)]
        last_level: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-performs every merge whose inputs and output an archive holds and prints how many
    /// outputs match the archive's hashes (exit code 1 if any does not).
    CheckArchive {
        /// The history archive's root directory.
        archive: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a Stellar subcommand.
pub fn run(command: Stellar) -> CliResult {
    match command {
        Stellar::Import {
            archive,
            db,
            checkpoint,
            jobs,
            cache,
            json,
        } => stellar_import(&archive, &db, checkpoint, jobs, cache, json),
        Stellar::Get { db, key, json } => stellar_get(&db, &key, json),
        Stellar::Scan {
            db,
            ty,
            count,
            json,
        } => stellar_scan(&db, &ty, count, json),
        Stellar::Merge {
            old,
            new,
            out,
            last_level,
            json,
        } => stellar_merge(&old, &new, &out, last_level, json),
        Stellar::CheckArchive { archive, json } => stellar_check_archive(archive, json),
    }
}

/// Downloads checkpoint `checkpoint` of the archive at `url` into `cache` (a progress bar on
/// a terminal); returns the fetch report.
fn fetch_archive(
    url: &str,
    checkpoint: Option<u32>,
    cache: &Path,
    jobs: usize,
) -> Result<FetchReport, Box<dyn std::error::Error>> {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {pos}/{len} buckets, {prefix} [{elapsed_precise}]",
            )
            .expect("template"),
        );
        b.set_message("downloading");
        b
    });
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let progress = |p: FetchProgress| {
        let Some(bar) = &bar else { return };
        match p {
            FetchProgress::Planned { buckets } => bar.set_length(buckets as u64),
            FetchProgress::BucketDone => bar.inc(1),
            FetchProgress::Bytes(n) => {
                let total = bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                bar.set_prefix(indicatif::HumanBytes(total).to_string());
            }
        }
    };
    let options = FetchOptions {
        jobs,
        ..FetchOptions::default()
    };
    let report = mirror_checkpoint(url, checkpoint, cache, &options, &progress)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}

/// `stellar import`: from a folder, or from a URL through a local cache folder.
fn stellar_import(
    source: &str,
    db: &Path,
    checkpoint: Option<u32>,
    jobs: usize,
    cache: Option<PathBuf>,
    json: bool,
) -> CliResult {
    let started = Instant::now();
    let is_url = source.starts_with("http://") || source.starts_with("https://");
    let (root, checkpoint, fetched) = if is_url {
        let cache = cache.unwrap_or_else(|| {
            let mut name = db.as_os_str().to_os_string();
            name.push(".archive");
            PathBuf::from(name)
        });
        let fetched = fetch_archive(source, checkpoint, &cache, jobs)?;
        (cache, Some(fetched.checkpoint), Some(fetched))
    } else {
        (PathBuf::from(source), checkpoint, None)
    };
    let archive = Archive::new(root);
    // A missing or bad archive fails before a store is made for it.
    match checkpoint {
        Some(c) => archive.state(c)?,
        None => archive.latest()?,
    };
    let existed = db.exists();
    let mut store = LedgerStore::open(db)?;
    let mut result = store.import_archive(&archive, checkpoint);
    if let (Err(strata_stellar::store::Error::Bucket(e)), true) = (&result, is_url) {
        // A cached bucket that no longer reads (damaged on disk since it was checked) is
        // fetched again, once.
        let damaged = e.file().to_path_buf();
        if damaged.starts_with(archive.root()) && std::fs::remove_file(&damaged).is_ok() {
            eprintln!(
                "{}: damaged in the cache, fetching it again",
                damaged.display()
            );
            fetch_archive(source, checkpoint, archive.root(), jobs)?;
            result = store.import_archive(&archive, checkpoint);
        }
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // A store made for this import alone is removed again: nothing is left behind.
            if !existed && store.close().is_ok() {
                let _ = std::fs::remove_dir_all(db);
            }
            return Err(e.into());
        }
    };
    store.close()?;
    let secs = started.elapsed().as_secs_f64();
    let (downloaded, held, bytes) = fetched.map_or((0, 0, 0), |f| (f.fetched, f.held, f.bytes));
    if json {
        println!(
            "{}",
            json!({"checkpoint": report.checkpoint, "buckets": report.buckets,
                "held_buckets": report.held,
                "entries": report.entries, "bytes": report.bytes, "seconds": secs,
                "downloaded_buckets": downloaded, "cached_buckets": held,
                "downloaded_bytes": bytes})
        );
    } else {
        if is_url {
            println!("downloaded {downloaded} buckets ({bytes} bytes), {held} already held");
        }
        println!(
            "imported checkpoint {}: {} buckets read ({} entries, {} bytes), {} already held, \
             in {secs:.2} s",
            report.checkpoint, report.buckets, report.entries, report.bytes, report.held
        );
    }
    Ok(())
}

/// `stellar get`.
fn stellar_get(db: &Path, key: &str, json: bool) -> CliResult {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| format!("KEY is not base64: {e}"))?;
    let limits = Limits::depth(strata_stellar::XDR_DEPTH_LIMIT);
    let key = LedgerKey::from_xdr(&bytes, limits)
        .map_err(|e| format!("KEY is not an XDR LedgerKey: {e}"))?;
    let store = LedgerStore::open_existing(db)?;
    let entry = store.get(&key)?;
    let b64 = entry.map(|e| base64::engine::general_purpose::STANDARD.encode(e));
    match (json, &b64) {
        (true, _) => println!("{}", json!({"present": b64.is_some(), "entry": b64})),
        (false, Some(e)) => println!("{e}"),
        (false, None) => println!("absent"),
    }
    Ok(store.close()?)
}

/// `stellar scan`.
fn stellar_scan(db: &Path, ty: &str, count: bool, json: bool) -> CliResult {
    let ty = parse_entry_type(ty).ok_or_else(|| {
        let names: Vec<&str> = ENTRY_TYPES.iter().map(|(_, n)| *n).collect();
        format!("unknown entry type {ty:?}; one of {}", names.join(", "))
    })?;
    let store = LedgerStore::open_existing(db)?;
    let mut n = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for item in store.scan_type(ty)? {
        let (_, entry) = item?;
        n += 1;
        if !count {
            let b64 = base64::engine::general_purpose::STANDARD.encode(entry);
            if json {
                writeln!(out, "{}", json!({"entry": b64}))?;
            } else {
                writeln!(out, "{b64}")?;
            }
        }
    }
    drop(out);
    if count {
        if json {
            println!("{}", json!({"type": entry_type_name(ty), "count": n}));
        } else {
            println!("{n}");
        }
    }
    Ok(store.close()?)
}

/// `stellar merge`.
fn stellar_merge(old: &Path, new: &Path, out: &Path, last_level: bool, json: bool) -> CliResult {
    let protocol = merge_protocol(old, new)?;
    let summary = merge_files(old, new, out, !last_level)?;
    let hash = hex::encode(summary.hash);
    let exact = protocol >= FIRST_PROTOCOL_WITHOUT_SHADOWS;
    let warning = (!exact).then(|| {
        format!(
            "protocol {protocol} merge: before protocol {FIRST_PROTOCOL_WITHOUT_SHADOWS} \
             stellar-core drops entries that newer levels' buckets (shadows) hold, and strata \
             does not apply shadows: this output may keep entries stellar-core's drops"
        )
    });
    if json {
        println!(
            "{}",
            json!({"sha256": hash, "records": summary.records, "bytes": summary.bytes,
                "protocol": protocol, "exact": exact, "warning": warning})
        );
    } else {
        if let Some(w) = &warning {
            eprintln!("warning: {w}");
        }
        println!("{hash}");
    }
    Ok(())
}

/// Merges, matching merges and merges that need shadows (not checkable), by level.
type PerLevel = BTreeMap<u32, (u64, u64, u64)>;

/// `stellar check-archive`; exits with code 1 if any merge does not match.
fn stellar_check_archive(archive: PathBuf, json: bool) -> CliResult {
    let scratch = tempfile::Builder::new()
        .prefix("strata-check-archive-")
        .tempdir()?;
    let checks = check_archive(&Archive::new(archive), scratch.path())?;
    let mut per_level = PerLevel::new();
    for c in &checks {
        let e = per_level.entry(c.merge.level).or_default();
        e.0 += 1;
        e.1 += u64::from(c.matched());
        e.2 += u64::from(!c.matched() && !c.checkable());
    }
    let matched = checks.iter().filter(|c| c.matched()).count();
    if json {
        print_checks_json(&checks, &per_level, matched);
    } else {
        print_checks_text(&checks, &per_level, matched);
    }
    if checks.iter().any(|c| !c.matched() && c.checkable()) {
        std::process::exit(1);
    }
    Ok(())
}

/// The outcome of `stellar check-archive --json`: one object.
fn print_checks_json(checks: &[MergeCheck], per_level: &PerLevel, matched: usize) {
    let levels: Vec<_> = per_level
        .iter()
        .map(|(l, (n, m, s))| json!({"level": l, "merges": n, "matched": m, "need_shadows": s}))
        .collect();
    let mismatches: Vec<_> = checks
        .iter()
        .filter(|c| !c.matched())
        .map(|c| {
            json!({"level": c.merge.level, "ledger": c.merge.ledger, "protocol": c.protocol,
                "checkable": c.checkable(),
                "expected": hex::encode(c.merge.output), "actual": hex::encode(c.actual)})
        })
        .collect();
    println!(
        "{}",
        json!({"merges": checks.len(), "matched": matched, "levels": levels,
            "mismatches": mismatches})
    );
}

/// The outcome of `stellar check-archive`: a line per level, per mismatch, and a total.
fn print_checks_text(checks: &[MergeCheck], per_level: &PerLevel, matched: usize) {
    for (l, (n, m, s)) in per_level {
        let shadows = if *s > 0 {
            format!(" ({s} not checkable: protocol before {FIRST_PROTOCOL_WITHOUT_SHADOWS} needs shadows, which strata does not apply)")
        } else {
            String::new()
        };
        println!("level {l}: {m} of {n} merges match{shadows}");
    }
    for c in checks.iter().filter(|c| !c.matched()) {
        println!(
            "{} level {} ledger {} (protocol {}): expected {}, got {}",
            if c.checkable() {
                "MISMATCH"
            } else {
                "NOT CHECKABLE"
            },
            c.merge.level,
            c.merge.ledger,
            c.protocol,
            hex::encode(c.merge.output),
            hex::encode(c.actual)
        );
    }
    println!("{matched} of {} merges match the archive", checks.len());
}
