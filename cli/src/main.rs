//! The `strata` command-line tool: benchmarks with an RSS timeline, and tools to inspect,
//! edit and verify a database.

mod cli_history;
mod cli_stellar;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use strata::{Db, Durability, IndexPolicy, DISK_KIND, INMEM_KIND};
use strata_bench::{state, IngestParams, StateParams};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "strata: an embedded storage engine with memory bounds stated in advance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
    /// Stellar ledger state: import a history archive, look up and scan entries, merge
    /// buckets with stellar-core's rules, check an archive's merges.
    #[command(subcommand)]
    Stellar(cli_stellar::Stellar),
    /// A history node's block store: import era1 files, get blocks, list missing ranges, roll
    /// back.
    #[command(subcommand)]
    History(cli_history::History),
    /// Memory, file and index figures of a database.
    Stats {
        /// Database directory.
        dir: PathBuf,
    },
    /// Prints the value of a key.
    Get {
        /// Database directory.
        dir: PathBuf,
        /// The key (UTF-8, or hex with `--hex`).
        key: String,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Stores a value.
    Put {
        /// Database directory (created if missing).
        dir: PathBuf,
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Deletes a key.
    Delete {
        /// Database directory.
        dir: PathBuf,
        /// The key.
        key: String,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Prints keys and values in key order.
    Scan {
        /// Database directory.
        dir: PathBuf,
        /// Only keys with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        enc: Encoding,
    },
    /// Checks every checksum of every file; reports damage by file and offset (exit code 1).
    Verify {
        /// Database directory.
        dir: PathBuf,
    },
    /// Rebuilds a damaged database from every intact record; keeps the damaged one beside it
    /// (as DIR.damaged-<time>) and lists what was dropped.
    Repair {
        /// Database directory (not open elsewhere).
        dir: PathBuf,
    },
}

#[derive(Args)]
struct Encoding {
    /// Keys and values on the command line are hex.
    #[arg(long)]
    hex: bool,
}

impl Encoding {
    fn decode(&self, s: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        if !self.hex {
            return Ok(s.as_bytes().to_vec());
        }
        hex::decode(s).map_err(|e| format!("bad hex {s:?}: {e}").into())
    }
}

/// UTF-8 when printable, hex otherwise.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

#[derive(Subcommand)]
enum Bench {
    /// The history-node workload: block payloads arriving out of order into range shards.
    Ingest(IngestArgs),
    /// The ledger-state workload: small typed entries, lookups, a per-type scan.
    State(StateArgs),
    /// Stellar: a synthetic bucket list of TTL entries imported into a ledger store, then one
    /// type scanned (by k-way merge, or with a set of seen keys for comparison).
    Stellar(StellarArgs),
}

#[derive(Args)]
struct StellarArgs {
    /// Entries in the older bucket (a newer one shadows every tenth).
    #[arg(long, default_value_t = 2_000_000)]
    entries: u64,
    /// Directory of the store (reused if it holds one); default: a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How to scan: `kway` (the store's scan) or `seen-set` (a set of seen keys).
    #[arg(long, value_enum, default_value_t = StellarScanArg::Kway)]
    scan: StellarScanArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum StellarScanArg {
    Kway,
    SeenSet,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Buffered,
    Sync,
    Periodic,
}

#[derive(Clone, Copy, ValueEnum)]
enum IndexArg {
    Auto,
    Inmem,
    Disk,
}

#[derive(Args)]
struct Common {
    /// Database directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the temporary directory.
    #[arg(long)]
    keep: bool,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write events.jsonl, samples.csv and report.svg into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct IngestArgs {
    /// Blocks to write.
    #[arg(long, default_value_t = 40_000)]
    blocks: u64,
    /// Smallest value, bytes.
    #[arg(long, default_value_t = 4 << 10)]
    min_value_bytes: usize,
    /// Largest value, bytes.
    #[arg(long, default_value_t = 60 << 10)]
    max_value_bytes: usize,
    /// Blocks arrive shuffled within windows of this many.
    #[arg(long, default_value_t = 512)]
    window: u64,
    /// Blocks per write batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Blocks per range shard.
    #[arg(long, default_value_t = 10_000)]
    shard_width: u64,
    /// Durability of each batch.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Buffered)]
    durability: DurabilityArg,
    /// Read back and check this many random blocks at the end (after peak RSS is taken;
    /// synthetic blocks only).
    #[arg(long, default_value_t = 0)]
    verify: u64,
    /// Where blocks come from: `synthetic` (random values of the sizes above) or `era1 DIR`
    /// (real blocks of the era1 files in DIR, three columns each, repeated with shifted
    /// numbers to reach --blocks; the value-size options do not apply).
    #[arg(long, num_args = 1..=2, value_names = ["KIND", "DIR"], default_value = "synthetic")]
    source: Vec<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct StateArgs {
    /// Keys to insert.
    #[arg(long, default_value_t = 2_000_000)]
    keys: u64,
    /// Present-key lookups (and as many absent ones).
    #[arg(long, default_value_t = 1_000_000)]
    lookups: u64,
    /// Index kind of runs.
    #[arg(long, value_enum, default_value_t = IndexArg::Auto)]
    index: IndexArg,
    #[command(flatten)]
    common: Common,
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(Bench::Ingest(args)) => bench_ingest(args),
        Command::Bench(Bench::State(args)) => bench_state(args),
        Command::Bench(Bench::Stellar(args)) => bench_stellar(args),
        Command::Stellar(command) => cli_stellar::run(command),
        Command::History(command) => cli_history::run(command),
        Command::Stats { dir } => stats(&dir),
        Command::Get { dir, key, enc } => (|| -> CliResult {
            let db = Db::open_existing(&dir)?;
            match db.get(&enc.decode(&key)?)? {
                Some(v) => println!("{}", show(&v)),
                None => {
                    eprintln!("absent");
                    std::process::exit(1);
                }
            }
            Ok(db.close()?)
        })(),
        Command::Put {
            dir,
            key,
            value,
            enc,
        } => (|| -> CliResult {
            let db = if dir.join("STRATA").exists() {
                Db::open_existing(&dir)?
            } else {
                let mut o = strata::Options::new();
                o.create_if_missing = true;
                Db::open(&dir, o)?
            };
            db.put(&enc.decode(&key)?, &enc.decode(&value)?)?;
            Ok(db.close()?)
        })(),
        Command::Delete { dir, key, enc } => (|| -> CliResult {
            let db = Db::open_existing(&dir)?;
            db.delete(&enc.decode(&key)?)?;
            Ok(db.close()?)
        })(),
        Command::Scan {
            dir,
            prefix,
            limit,
            enc,
        } => scan(&dir, prefix.as_deref(), limit, &enc),
        Command::Verify { dir } => verify(&dir),
        Command::Repair { dir } => repair(&dir),
    };
    if let Err(e) = result {
        // A reader that went away (`strata scan ... | head`) is not a failure.
        let broken_pipe =
            std::iter::successors(Some(&*e as &dyn std::error::Error), |e| e.source())
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        if broken_pipe {
            return;
        }
        // The engine's message for a missing directory speaks to embedders (an open option);
        // on the command line, the directory is what matters.
        let missing = std::iter::successors(Some(&*e as &dyn std::error::Error), |e| e.source())
            .find_map(|e| match e.downcast_ref::<strata::Error>() {
                Some(strata::Error::NotFound { path }) => Some(path.clone()),
                _ => None,
            });
        if let Some(path) = missing {
            eprintln!(
                "strata: {} does not exist (no database there)",
                path.display()
            );
            std::process::exit(1);
        }
        eprintln!("strata: {e}");
        std::process::exit(1);
    }
}

/// Progress on a terminal (a bar), plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: u64,
    /// Each phase's own total (a phase not listed counts up to `total`).
    phase_totals: Vec<(&'static str, u64)>,
    phase: String,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            b
        });
        Progress {
            bar,
            total,
            last_line: 0,
            phase_totals: Vec::new(),
            phase: String::new(),
        }
    }

    /// Gives `phase` its own total.
    fn with_phase(mut self, phase: &'static str, total: u64) -> Progress {
        self.phase_totals.push((phase, total));
        self
    }

    fn update(&mut self, phase: &str, done: u64, quiet: bool) {
        if phase != self.phase {
            self.phase = phase.to_string();
            self.last_line = 0;
            let total = self.phase_totals.iter().find(|(p, _)| *p == phase);
            self.total = total.map_or(self.total, |(_, t)| *t);
            if let Some(b) = &self.bar {
                b.set_length(self.total);
            }
        }
        match &self.bar {
            Some(b) => {
                b.set_message(phase.to_string());
                b.set_position(done);
            }
            None if !quiet && done * 10 / self.total.max(1) > self.last_line => {
                self.last_line = done * 10 / self.total.max(1);
                eprintln!("{phase}: {done}/{}", self.total);
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// The database directory of a benchmark: the one given, or a temporary one.
fn bench_dir(
    c: &Common,
) -> Result<(PathBuf, Option<tempfile::TempDir>), Box<dyn std::error::Error>> {
    Ok(match &c.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("strata-bench-").tempdir()?;
            (t.path().join("db"), Some(t))
        }
    })
}

fn finish_bench(
    c: &Common,
    tmp: Option<tempfile::TempDir>,
    title: &str,
    samples: &[strata_bench::Sample],
    events: &[strata_bench::TimedEvent],
) -> CliResult {
    if let Some(report) = &c.report {
        strata_bench::write_timeline(report, samples, events)?;
        strata_bench::report::draw(&report.join("report.svg"), title, samples, events)?;
        if !c.json {
            println!("  report           {}", report.display());
        }
    }
    if let (true, Some(t)) = (c.keep, tmp) {
        eprintln!("kept {}", t.keep().display());
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn bench_ingest(a: IngestArgs) -> CliResult {
    let (dir, tmp) = bench_dir(&a.common)?;
    let params = IngestParams {
        blocks: a.blocks,
        min_value_bytes: a.min_value_bytes,
        max_value_bytes: a.max_value_bytes,
        window: a.window,
        batch: a.batch,
        shard_width: a.shard_width,
        durability: match a.durability {
            DurabilityArg::Buffered => Durability::Buffered,
            DurabilityArg::Sync => Durability::SyncPerBatch,
            DurabilityArg::Periodic => Durability::Periodic { interval_ms: 1000 },
        },
        seed: a.common.seed,
        verify_blocks: a.verify,
    };
    let mut source = match a.source.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["synthetic"] => strata_bench::BlockSource::Synthetic,
        ["era1", d] => {
            strata_bench::BlockSource::Era1(strata_bench::Era1Source::open(Path::new(d))?)
        }
        _ => {
            return Err(format!(
                "--source takes `synthetic` or `era1 DIR`, not {:?}",
                a.source.join(" ")
            )
            .into())
        }
    };
    let quiet = a.common.json;
    let mut progress = Progress::new(a.blocks, quiet);
    let r = strata_bench::ingest_from(&dir, &params, &mut source, &mut |n| {
        progress.update("ingest", n, quiet)
    })?;
    progress.finish();
    let c = r.compaction;
    if a.common.json {
        println!(
            "{{\"payload_bytes\":{},\"wall_s\":{:.3},\"payload_mb_per_s\":{:.1},\"peak_rss_mb\":{:.1},\"compactions\":{},\"max_concurrent_compactions\":{},\"stall_ms\":{:.1},\"write_amplification\":{:.3},\"value_log_bytes\":{},\"value_log_garbage_bytes\":{}}}",
            r.payload_bytes,
            r.wall_s,
            r.payload_mb_per_s(),
            mib(r.peak_rss_bytes),
            c.compactions,
            c.max_concurrent,
            c.stall_ms,
            r.write_amplification,
            r.value_log_bytes,
            r.value_log_garbage_bytes
        );
    } else {
        println!(
            "bench ingest ({}): {} blocks, {:.1} MiB of payload in {:.1} s",
            a.source.join(" "),
            a.blocks,
            mib(r.payload_bytes),
            r.wall_s
        );
        println!("  throughput       {:.1} MiB/s", r.payload_mb_per_s());
        println!("  peak RSS         {:.1} MiB", mib(r.peak_rss_bytes));
        println!(
            "  compactions      {} (at most {} at once)",
            c.compactions, c.max_concurrent
        );
        println!("  write stalls     {:.0} ms", c.stall_ms);
        println!(
            "  write amp.       {:.2} bytes written per payload byte",
            r.write_amplification
        );
        println!(
            "  value log        {:.1} MiB in value files, {:.1} MiB of it garbage",
            mib(r.value_log_bytes),
            mib(r.value_log_garbage_bytes)
        );
    }
    finish_bench(
        &a.common,
        tmp,
        &format!("strata bench ingest: {} blocks", a.blocks),
        &r.samples,
        &r.events,
    )
}

fn bench_state(a: StateArgs) -> CliResult {
    let (dir, tmp) = bench_dir(&a.common)?;
    let index = match a.index {
        IndexArg::Auto => IndexPolicy::AUTO,
        IndexArg::Inmem => IndexPolicy::Always(INMEM_KIND),
        IndexArg::Disk => IndexPolicy::Always(DISK_KIND),
    };
    let params = StateParams {
        keys: a.keys,
        lookups: a.lookups,
        index,
        seed: a.common.seed,
        ..StateParams::default()
    };
    let quiet = a.common.json;
    let mut progress = Progress::new(a.keys, quiet)
        .with_phase("hits", a.lookups)
        .with_phase("misses", a.lookups);
    let r = state(&dir, &params, &mut |phase, n| {
        progress.update(phase, n, quiet)
    })?;
    progress.finish();
    if a.common.json {
        println!(
            "{{\"keys\":{},\"load_mb_per_s\":{:.1},\"reopen_s\":{:.3},\"hit_lookups_per_s\":{:.0},\"miss_lookups_per_s\":{:.0},\"index_bytes_per_key\":{:.3},\"scan_keys_per_s\":{:.0},\"scan_extra_rss_mb\":{:.1},\"peak_rss_mb\":{:.1}}}",
            r.keys,
            r.load_mb_per_s,
            r.reopen_s,
            r.hit_lookups_per_s,
            r.miss_lookups_per_s,
            r.index_bytes_per_key,
            r.scan_keys_per_s,
            r.scan_extra_rss_mb,
            mib(r.peak_rss_bytes)
        );
    } else {
        println!("bench state: {} keys of 33 bytes, 150-byte values", r.keys);
        println!("  load             {:.1} MiB/s", r.load_mb_per_s);
        println!("  reopen           {:.3} s", r.reopen_s);
        println!("  present lookups  {:.0} /s", r.hit_lookups_per_s);
        println!("  absent lookups   {:.0} /s", r.miss_lookups_per_s);
        println!("  index            {:.2} bytes/key", r.index_bytes_per_key);
        println!(
            "  scan of one type {} keys, {:.0} keys/s, {:.1} MiB extra RSS",
            r.scan_keys, r.scan_keys_per_s, r.scan_extra_rss_mb
        );
        println!("  peak RSS         {:.1} MiB", mib(r.peak_rss_bytes));
    }
    finish_bench(
        &a.common,
        tmp,
        &format!("strata bench state: {} keys", a.keys),
        &r.samples,
        &r.events,
    )
}

fn stats(dir: &Path) -> CliResult {
    let mut o = strata::Options::new();
    o.compaction.auto = false;
    let db = Db::open_existing_with(dir, o)?;
    let s = db.stats();
    println!(
        "shards {}, runs {}, run bytes {}, WAL bytes {}",
        s.shards.len(),
        s.runs,
        s.run_bytes,
        s.wal_bytes
    );
    println!(
        "memtables: {} keys, {} bytes",
        s.memtable_keys, s.memtable_bytes
    );
    println!(
        "indexes: {} keys, {} bytes ({:.2} bytes/key)",
        s.index_keys,
        s.index_bytes,
        s.index_bytes as f64 / s.index_keys.max(1) as f64
    );
    println!(
        "WAL debt {} bytes; recovery read {} bytes",
        s.wal_debt_bytes, s.recovery_bytes_read
    );
    println!(
        "value log: {} value files, {} bytes, {} of them garbage (WAL bytes include them)",
        s.value_files, s.value_log_bytes, s.value_log_garbage_bytes
    );
    for sh in &s.shards {
        println!(
            "shard {}: memtable {} keys, {} frozen, WAL {} bytes in {} segments ({} value files){}{}",
            sh.id,
            sh.memtable_keys,
            sh.frozen_memtables,
            sh.wal.bytes,
            sh.wal.segments,
            sh.value_files,
            if sh.complete { ", complete" } else { "" },
            if sh.poisoned { ", POISONED" } else { "" }
        );
        for r in &sh.runs {
            println!(
                "  run {}: {} entries, {} bytes, index {} ({} keys, {} bytes)",
                r.id, r.entries, r.file_bytes, r.index, r.index_keys, r.index_bytes
            );
        }
    }
    Ok(db.close()?)
}

fn scan(dir: &Path, prefix: Option<&str>, limit: u64, enc: &Encoding) -> CliResult {
    let db = Db::open_existing(dir)?;
    let scan = match prefix {
        Some(p) => db.prefix(&enc.decode(p)?)?,
        None => db.range::<&[u8], _>(..)?,
    };
    let mut scan = scan.peekable();
    let mut out = std::io::stdout().lock();
    for item in scan.by_ref().take(limit as usize) {
        let (k, v) = item?;
        // `writeln!`, not `println!`: a reader that goes away is an error, not a panic.
        writeln!(out, "{}\t{}", show(&k), show(&v))?;
    }
    if scan.peek().is_some() {
        eprintln!("strata: stopped after {limit} entries (--limit); more follow");
    }
    Ok(db.close()?)
}

fn repair(dir: &Path) -> CliResult {
    let report = strata::repair::repair(dir)?;
    for d in &report.dropped {
        println!(
            "DROPPED {} at offset {}: {}",
            d.file.display(),
            d.offset,
            d.detail
        );
    }
    println!(
        "salvaged {} records into {}; the damaged database is kept at {}",
        report.records,
        dir.display(),
        report.damaged_copy.display()
    );
    if !report.kept_files.is_empty() {
        println!("kept as they were: {}", report.kept_files.join(", "));
    }
    // A history store's presence records must agree with the blocks repair kept.
    if let Some(r) = strata_history::reconcile(dir)? {
        if r.shards > 0 {
            println!(
                "history store: presence rewritten in {} shards; {} blocks that lost a column \
                 are missing again (an import writes them back): {:?}",
                r.shards,
                r.cleared.len(),
                &r.cleared[..r.cleared.len().min(20)]
            );
        }
    }
    if report.seals_not_carried > 0 {
        println!(
            "{} sealed shards are not sealed in the repaired database (`strata history seal \
             --db DIR` seals full shards again)",
            report.seals_not_carried
        );
    }
    Ok(())
}

fn verify(dir: &Path) -> CliResult {
    let report =
        strata::verify::verify(dir).map_err(|e| format!("verify {}: {e}", dir.display()))?;
    for f in &report.findings {
        let at = f
            .offset
            .map(|o| format!(" at offset {o}"))
            .unwrap_or_default();
        println!(
            "{} {}{at}: {}",
            if f.damage { "DAMAGE" } else { "note" },
            f.file.display(),
            f.detail
        );
    }
    println!(
        "checked {} files, {} bytes: {}",
        report.files,
        report.bytes,
        if report.damaged() { "DAMAGED" } else { "ok" }
    );
    if report.damaged() {
        std::process::exit(1);
    }
    Ok(())
}

fn bench_stellar(a: StellarArgs) -> CliResult {
    let tmp = match &a.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("strata-bench-").tempdir()?),
    };
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| tmp.as_ref().expect("temp").path().to_path_buf());
    let scan = match a.scan {
        StellarScanArg::Kway => strata_bench::StellarScan::KWay,
        StellarScanArg::SeenSet => strata_bench::StellarScan::SeenSet,
    };
    let r = strata_bench::stellar(&dir, a.entries, scan)?;
    let per_s = r.live as f64 / r.scan_s.max(1e-9);
    if a.json {
        println!(
            "{{\"entries\":{},\"import_s\":{:.3},\"scan_s\":{:.3},\"live\":{},\"scan_entries_per_s\":{:.0},\"peak_rss_mb\":{:.1}}}",
            r.entries, r.import_s, r.scan_s, r.live, per_s, r.peak_rss_mb
        );
    } else {
        println!(
            "stellar: {} entries, {} live after shadowing",
            r.entries, r.live
        );
        println!("  import           {:.2} s", r.import_s);
        println!(
            "  scan             {:.2} s ({per_s:.0} entries/s)",
            r.scan_s
        );
        println!("  peak RSS         {:.1} MiB", r.peak_rss_mb);
    }
    Ok(())
}
