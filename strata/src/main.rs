//! The `strata` command-line tool.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use strata::bench::{ingest, IngestParams};
use strata::Durability;

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
}

#[derive(Subcommand)]
enum Bench {
    /// The history-node workload: block payloads arriving out of order into range shards.
    Ingest(IngestArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Buffered,
    Sync,
    Periodic,
}

#[derive(clap::Args)]
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

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(Bench::Ingest(args)) => bench_ingest(args),
    };
    if let Err(e) = result {
        eprintln!("strata: {e}");
        std::process::exit(1);
    }
}

fn bench_ingest(a: IngestArgs) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = match &a.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("strata-bench-").tempdir()?),
    };
    let dir = match (&a.dir, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().join("db"),
        (None, None) => unreachable!("a temporary directory exists when no directory is given"),
    };
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
        seed: a.seed,
    };
    let r = ingest(&dir, &params, &mut |_| {})?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let c = r.compaction;
    if a.json {
        println!(
            "{{\"payload_bytes\":{},\"wall_s\":{:.3},\"payload_mb_per_s\":{:.1},\"peak_rss_mb\":{:.1},\"compactions\":{},\"max_concurrent_compactions\":{},\"stall_ms\":{:.1},\"write_amplification\":{:.3}}}",
            r.payload_bytes,
            r.wall_s,
            r.payload_mb_per_s(),
            mib(r.peak_rss_bytes),
            c.compactions,
            c.max_concurrent,
            c.stall_ms,
            r.write_amplification
        );
    } else {
        println!(
            "bench ingest: {} blocks, {:.1} MiB of payload in {:.1} s",
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
    }
    if let Some(report) = &a.report {
        strata::bench::write_timeline(report, &r.samples, &r.events)?;
    }
    if let (true, Some(t)) = (a.keep, tmp) {
        eprintln!("kept {}", t.keep().display());
    }
    Ok(())
}
