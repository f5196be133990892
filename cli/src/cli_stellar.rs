//! `strata stellar ...`: Stellar ledger state on strata.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use clap::Subcommand;
use serde_json::json;
use strata_stellar::archive::{check_archive, Archive, MergeCheck, Outcome, NUM_LEVELS};
use strata_stellar::fetch::{mirror_checkpoint, FetchOptions, FetchProgress, FetchReport};
use strata_stellar::key::{entry_type_name, parse_entry_type, ENTRY_TYPES};
use strata_stellar::merge::{merge_files, ListType};
use strata_stellar::stellar_xdr::{LedgerEntryType, LedgerKey, Limits, ReadXdr};
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
    /// Merges two buckets with stellar-core's rules (live or hot archive buckets, every
    /// protocol) and prints the output's SHA-256.
    Merge {
        /// The older bucket (plain or gzipped).
        old: PathBuf,
        /// The newer bucket (plain or gzipped).
        new: PathBuf,
        /// A shadow bucket (repeat, newest first): before protocol 12, the curr and snap buckets
        /// of the levels above the one merged into, as the merge starts. Refused from 12 on.
        #[arg(long = "shadow")]
        shadows: Vec<PathBuf>,
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
    /// Re-performs every merge of levels 1 to 10 whose output an archive records and whose
    /// inputs (found in checkpoint states, in `next` merges, or by re-performing the level's
    /// previous merge) it holds; prints, per level, merges found, reproduced and not checkable
    /// and why (exit code 1 if any output differs or a merge fails).
    CheckArchive {
        /// The history archive's root directory.
        archive: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the sizes of the live Soroban state: contract data and contract code entries and
    /// their XDR bytes, by two per-type scans whose memory does not grow with the entry count.
    SorobanSize {
        /// The store's directory.
        #[arg(long)]
        db: PathBuf,
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
            shadows,
            out,
            last_level,
            json,
        } => stellar_merge(&old, &new, &shadows, &out, last_level, json),
        Stellar::CheckArchive { archive, json } => stellar_check_archive(archive, json),
        Stellar::SorobanSize { db, json } => stellar_soroban_size(&db, json),
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
    let hot_warning = (report.hot_archive_buckets > 0).then(|| {
        format!(
            "checkpoint {} also has a protocol-23 hot archive list ({} buckets), which is not \
             imported: a ledger store holds the live bucket list only",
            report.checkpoint, report.hot_archive_buckets
        )
    });
    if let Some(w) = &hot_warning {
        eprintln!("warning: {w}");
    }
    if json {
        println!(
            "{}",
            json!({"checkpoint": report.checkpoint, "buckets": report.buckets,
                "held_buckets": report.held,
                "entries": report.entries, "bytes": report.bytes, "seconds": secs,
                "downloaded_buckets": downloaded, "cached_buckets": held,
                "downloaded_bytes": bytes, "hot_archive_buckets": report.hot_archive_buckets,
                "warning": hot_warning})
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
fn stellar_merge(
    old: &Path,
    new: &Path,
    shadows: &[PathBuf],
    out: &Path,
    last_level: bool,
    json: bool,
) -> CliResult {
    let merged = merge_files(old, new, shadows, out, !last_level)?;
    let hash = hex::encode(merged.summary.hash);
    if json {
        println!(
            "{}",
            json!({"sha256": hash, "records": merged.summary.records,
                "bytes": merged.summary.bytes, "protocol": merged.protocol,
                "list": merged.list.name(), "shadows": shadows.len(),
                "shadowed": merged.shadowed})
        );
    } else {
        println!("{hash}");
    }
    Ok(())
}

/// Merges reported in full by `check-archive` (beyond it, only counted).
const MAX_REPORTED_MERGES: usize = 100;

/// What `check-archive` found for one level of one bucket list.
#[derive(Default)]
struct LevelTally {
    found: u64,
    reproduced: u64,
    chained: u64,
    shadowed_merges: u64,
    mismatched: u64,
    failed: u64,
    not_checkable: u64,
    /// Not-checkable merges by the input that was missing, with one example.
    why: BTreeMap<&'static str, (u64, String)>,
}

/// `stellar check-archive`; exits with code 1 if any merge does not match or fails.
fn stellar_check_archive(archive: PathBuf, json: bool) -> CliResult {
    let scratch = tempfile::Builder::new()
        .prefix("strata-check-archive-")
        .tempdir()?;
    // Every level of the live list is reported, found or not; the hot archive's when found.
    let mut levels: BTreeMap<(ListType, u32), LevelTally> = (1..NUM_LEVELS as u32)
        .map(|l| ((ListType::Live, l), LevelTally::default()))
        .collect();
    let mut bad = Vec::new();
    let mut bad_total = 0u64;
    let result = check_archive(&Archive::new(archive), scratch.path(), |c| {
        let t = levels.entry((c.merge.list, c.merge.level)).or_default();
        t.found += 1;
        t.chained += u64::from(c.chained > 0 && c.matched());
        t.shadowed_merges += u64::from(c.shadows > 0);
        match &c.outcome {
            Outcome::Reproduced => t.reproduced += 1,
            Outcome::NotCheckable { input, why } => {
                t.not_checkable += 1;
                t.why.entry(input).or_insert((0, why.clone())).0 += 1;
            }
            Outcome::Mismatch { .. } | Outcome::Failed(_) => {
                if matches!(c.outcome, Outcome::Mismatch { .. }) {
                    t.mismatched += 1;
                } else {
                    t.failed += 1;
                }
                bad_total += 1;
                if bad.len() < MAX_REPORTED_MERGES {
                    bad.push(c.clone());
                }
            }
        }
    });
    // A state that does not read stops the check; what was checked before it is still reported.
    let stopped = result.err().map(|e| e.to_string());
    if json {
        print_checks_json(&levels, &bad, bad_total, stopped.as_deref());
    } else {
        print_checks_text(&levels, &bad, bad_total);
        if let Some(e) = &stopped {
            eprintln!("strata: check stopped: {e}");
        }
    }
    if bad_total > 0 || stopped.is_some() {
        // `exit` runs no destructors: the scratch folder goes first.
        drop(scratch);
        std::process::exit(1);
    }
    Ok(())
}

/// Why level 0 is never checked, as reports say it.
const LEVEL_0_NOTE: &str = "level 0 merges take each ledger's fresh changes, which archives \
                            do not hold as buckets: not checkable";

fn check_json(c: &MergeCheck) -> serde_json::Value {
    let (actual, error) = match &c.outcome {
        Outcome::Mismatch { actual } => (Some(hex::encode(actual)), None),
        Outcome::Failed(e) => (None, Some(e.clone())),
        _ => (None, None),
    };
    json!({"list": c.merge.list.name(), "level": c.merge.level, "ledger": c.merge.ledger,
        "protocol": c.protocol, "shadows": c.shadows, "chained": c.chained,
        "expected": hex::encode(c.expected), "actual": actual, "error": error})
}

/// The outcome of `stellar check-archive --json`: one object.
fn print_checks_json(
    levels: &BTreeMap<(ListType, u32), LevelTally>,
    bad: &[MergeCheck],
    total: u64,
    stopped: Option<&str>,
) {
    let per_level: Vec<_> = levels
        .iter()
        .map(|((list, level), t)| {
            let why: serde_json::Map<String, serde_json::Value> = t
                .why
                .iter()
                .map(|(input, (n, example))| {
                    (input.to_string(), json!({"merges": n, "example": example}))
                })
                .collect();
            json!({"list": list.name(), "level": level, "found": t.found,
                "reproduced": t.reproduced, "chained": t.chained,
                "with_shadows": t.shadowed_merges, "mismatched": t.mismatched,
                "failed": t.failed, "not_checkable": t.not_checkable, "why_not_checkable": why})
        })
        .collect();
    let sum = |f: fn(&LevelTally) -> u64| levels.values().map(f).sum::<u64>();
    println!(
        "{}",
        json!({"found": sum(|t| t.found), "reproduced": sum(|t| t.reproduced),
            "not_checkable": sum(|t| t.not_checkable), "mismatched": sum(|t| t.mismatched),
            "failed": sum(|t| t.failed), "levels": per_level, "level_0": LEVEL_0_NOTE,
            "mismatches": bad.iter().map(check_json).collect::<Vec<_>>(),
            "mismatches_total": total, "stopped": stopped})
    );
}

/// The outcome of `stellar check-archive`: a line per level, per mismatch, and a total.
fn print_checks_text(
    levels: &BTreeMap<(ListType, u32), LevelTally>,
    bad: &[MergeCheck],
    total: u64,
) {
    println!("{LEVEL_0_NOTE}");
    for ((list, level), t) in levels {
        let mut line = format!(
            "{} level {level}: {} merges found, {} reproduced",
            list.name(),
            t.found,
            t.reproduced
        );
        if t.chained > 0 {
            line += &format!(" ({} after re-performing the merge before)", t.chained);
        }
        if t.mismatched + t.failed > 0 {
            line += &format!(", {} MISMATCHED, {} FAILED", t.mismatched, t.failed);
        }
        if t.not_checkable > 0 {
            line += &format!(", {} not checkable", t.not_checkable);
            for (input, (n, example)) in &t.why {
                line += &format!("\n    {n} for want of the {input}; e.g. {example}");
            }
        }
        println!("{line}");
    }
    for c in bad {
        let m = &c.merge;
        let merge = format!(
            "{} level {}, the merge that starts at ledger {}",
            m.list.name(),
            m.level,
            m.ledger
        );
        match &c.outcome {
            Outcome::Mismatch { actual } => println!(
                "MISMATCH {merge} (protocol {}): the archive has {}, strata wrote {}",
                c.protocol.unwrap_or(0),
                hex::encode(c.expected),
                hex::encode(actual)
            ),
            Outcome::Failed(e) => println!("FAILED {merge}: {e}"),
            _ => {}
        }
    }
    if total > bad.len() as u64 {
        println!("... and {} more", total - bad.len() as u64);
    }
    let found: u64 = levels.values().map(|t| t.found).sum();
    let reproduced: u64 = levels.values().map(|t| t.reproduced).sum();
    println!("{reproduced} of {found} merges found reproduced; {total} mismatched or failed");
}

/// `stellar soroban-size`.
fn stellar_soroban_size(db: &Path, json: bool) -> CliResult {
    let store = LedgerStore::open_existing(db)?;
    let mut sizes = Vec::new();
    for ty in [LedgerEntryType::ContractData, LedgerEntryType::ContractCode] {
        let (mut entries, mut bytes) = (0u64, 0u64);
        for item in store.scan_type(ty)? {
            let (_, entry) = item?;
            entries += 1;
            bytes += entry.len() as u64;
        }
        sizes.push((entry_type_name(ty), entries, bytes));
    }
    store.close()?;
    let warning = "contract code bytes are XDR bytes: from protocol 23 stellar-core also counts \
                   each contract's compiled-module memory cost, which strata does not compute \
                   (the code figure is a lower bound)";
    if json {
        let mut out = serde_json::Map::new();
        for (name, entries, bytes) in &sizes {
            out.insert(
                name.to_string(),
                json!({"entries": entries, "xdr_bytes": bytes}),
            );
        }
        out.insert(
            "total_xdr_bytes".into(),
            json!(sizes.iter().map(|s| s.2).sum::<u64>()),
        );
        out.insert("warning".into(), json!(warning));
        println!("{}", serde_json::Value::Object(out));
    } else {
        for (name, entries, bytes) in &sizes {
            println!("{name}: {entries} entries, {bytes} bytes");
        }
        eprintln!("warning: {warning}");
    }
    Ok(())
}
