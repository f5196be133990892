//! The `strata` command-line tool.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use strata::{Batch, Db, Durability, Options, Sharding};

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
}

/// WAL bytes per record besides key and value: header and value checksum.
const WAL_RECORD_OVERHEAD_BYTES: usize =
    strata_wal::format::RECORD_HEADER_BYTES + strata_wal::format::VALUE_CHECKSUM_BYTES;

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

/// Peak resident set size of this process (VmHWM), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The payload of block `n`: incompressible bytes, reproducible from the seed.
fn block_value(seed: u64, n: u64, min: usize, max: usize, buf: &mut Vec<u8>) {
    let mut rng = SmallRng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = rng.random_range(min..=max);
    buf.resize(len, 0);
    rng.fill_bytes(buf);
}

fn bench_ingest(a: IngestArgs) -> Result<(), Box<dyn std::error::Error>> {
    if a.min_value_bytes > a.max_value_bytes || a.window == 0 || a.batch == 0 || a.shard_width == 0
    {
        return Err(
            "need min-value-bytes <= max-value-bytes and non-zero window, batch and shard width"
                .into(),
        );
    }
    let tmp = match &a.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("strata-bench-").tempdir()?),
    };
    let dir = match (&a.dir, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().join("db"),
        (None, None) => unreachable!("a temporary directory exists when no directory is given"),
    };
    let events = std::sync::Arc::new(strata::EventLog::default());
    let mut options = Options::new();
    options.create_if_missing = true;
    options.events = events.clone();
    options.sharding = Sharding::Range {
        width: a.shard_width,
    };
    options.durability = match a.durability {
        DurabilityArg::Buffered => Durability::Buffered,
        DurabilityArg::Sync => Durability::SyncPerBatch,
        DurabilityArg::Periodic => Durability::Periodic { interval_ms: 1000 },
    };
    let db = Db::open(&dir, options)?;
    let started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let mut payload_bytes = 0u64;
    let mut wal_bytes = 0u64;
    let mut value = Vec::new();
    let mut base = 0u64;
    let mut next_shard_to_compact = 0u64;
    while base < a.blocks {
        let end = (base + a.window).min(a.blocks);
        let mut order: Vec<u64> = (base..end).collect();
        order.shuffle(&mut rng);
        for chunk in order.chunks(a.batch) {
            let mut batch = Batch::new();
            for &n in chunk {
                block_value(a.seed, n, a.min_value_bytes, a.max_value_bytes, &mut value);
                payload_bytes += value.len() as u64;
                wal_bytes += (WAL_RECORD_OVERHEAD_BYTES + 8 + value.len()) as u64;
                batch.put(n.to_be_bytes().to_vec(), value.as_slice());
            }
            db.write_batch(&batch)?;
        }
        base = end;
        // A shard whose blocks have all arrived is complete: compact it into one run.
        while (next_shard_to_compact + 1) * a.shard_width <= base {
            db.compact(strata::ShardId(next_shard_to_compact))?;
            next_shard_to_compact += 1;
        }
    }
    db.compact_all()?;
    db.sync()?;
    let wall_s = started.elapsed().as_secs_f64();
    // Spot-check what was written.
    for _ in 0..200.min(a.blocks) {
        let n = rng.random_range(0..a.blocks);
        block_value(a.seed, n, a.min_value_bytes, a.max_value_bytes, &mut value);
        let got = db.get(&n.to_be_bytes())?;
        if got.as_deref() != Some(value.as_slice()) {
            return Err(format!("block {n} reads back wrong").into());
        }
    }
    let stats = db.stats();
    let disk_bytes = stats.run_bytes + stats.wal_bytes;
    db.close()?;
    let peak_rss_mb = peak_rss_bytes() as f64 / (1 << 20) as f64;
    let mb_per_s = payload_bytes as f64 / (1 << 20) as f64 / wall_s;
    let (mut compactions, mut in_flight, mut max_concurrent, mut run_bytes_written) =
        (0u64, 0i64, 0i64, 0u64);
    for e in events.events() {
        match e {
            strata::Event::CompactionStart { .. } => {
                compactions += 1;
                in_flight += 1;
                max_concurrent = max_concurrent.max(in_flight);
            }
            strata::Event::CompactionEnd { bytes_out, .. } => {
                in_flight -= 1;
                run_bytes_written += bytes_out;
            }
            _ => {}
        }
    }
    // Bytes written to disk (WAL records and runs) per byte of payload.
    let write_amp = (wal_bytes + run_bytes_written) as f64 / payload_bytes.max(1) as f64;
    if a.json {
        println!(
            "{{\"payload_bytes\":{payload_bytes},\"wall_s\":{wall_s:.3},\"payload_mb_per_s\":{mb_per_s:.1},\"peak_rss_mb\":{peak_rss_mb:.1},\"compactions\":{compactions},\"max_concurrent_compactions\":{max_concurrent},\"disk_bytes\":{disk_bytes},\"write_amplification\":{write_amp:.2}}}"
        );
    } else {
        println!(
            "bench ingest: {} blocks, {:.1} MiB of payload in {wall_s:.1} s",
            a.blocks,
            payload_bytes as f64 / (1 << 20) as f64
        );
        println!("  throughput       {mb_per_s:.1} MiB/s");
        println!("  peak RSS         {peak_rss_mb:.1} MiB");
        println!("  compactions      {compactions} (at most {max_concurrent} at once)");
        println!("  write amp.       {write_amp:.2} bytes written per payload byte");
        println!(
            "  on disk          {:.1} MiB in {} runs",
            disk_bytes as f64 / (1 << 20) as f64,
            stats.runs
        );
    }
    if let (true, Some(t)) = (a.keep, tmp) {
        eprintln!("kept {}", t.keep().display());
    }
    Ok(())
}
