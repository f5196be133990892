//! Workloads behind `strata bench`, as a library so that tests run the same code: the
//! history-node ingest, an RSS sampler (`/proc/self/status` every 250 ms) and an event sink that
//! timestamps events.

pub mod report;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

use strata::{Db, Durability, EntryKind, Event, EventSink, OpRef, Options, Result, Sharding};

/// Milliseconds between RSS samples.
pub const SAMPLE_INTERVAL_MS: u64 = 250;

/// Memory figures of this process, from `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    /// Resident set size.
    pub vm_rss: u64,
    /// Peak resident set size so far.
    pub vm_hwm: u64,
    /// Anonymous resident memory (heap).
    pub rss_anon: u64,
    /// Resident file-backed memory (mapped files).
    pub rss_file: u64,
}

impl Rss {
    /// Reads the current figures (zeros where `/proc` is unavailable).
    pub fn now() -> Rss {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        Rss {
            vm_rss: field("VmRSS:"),
            vm_hwm: field("VmHWM:"),
            rss_anon: field("RssAnon:"),
            rss_file: field("RssFile:"),
        }
    }
}

/// One sample of the timeline.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since the start.
    pub t_s: f64,
    /// Memory.
    pub rss: Rss,
    /// WAL debt (frozen, uncompacted WAL bytes).
    pub wal_debt_bytes: u64,
}

/// An event with the time it happened.
#[derive(Clone, Debug)]
pub struct TimedEvent {
    /// Seconds since the start.
    pub t_s: f64,
    /// The event.
    pub event: Event,
}

/// An [`EventSink`] that keeps events with their times, and counts compactions in flight.
#[derive(Debug)]
pub struct TimedEvents {
    start: Instant,
    events: Mutex<Vec<TimedEvent>>,
}

impl TimedEvents {
    /// A sink whose clock starts now.
    pub fn new() -> TimedEvents {
        TimedEvents {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<TimedEvent> {
        self.events.lock().expect("event log").clone()
    }
}

impl Default for TimedEvents {
    fn default() -> Self {
        TimedEvents::new()
    }
}

impl EventSink for TimedEvents {
    fn event(&self, event: &Event) {
        let t_s = self.start.elapsed().as_secs_f64();
        self.events.lock().expect("event log").push(TimedEvent {
            t_s,
            event: event.clone(),
        });
    }
}

/// Compaction figures derived from events.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompactionFigures {
    /// Compactions started.
    pub compactions: u64,
    /// Most compactions in flight at once.
    pub max_concurrent: u64,
    /// Whether every start was matched by an end (or a failure).
    pub balanced: bool,
    /// Bytes of runs written.
    pub bytes_out: u64,
    /// Milliseconds writers spent stalled.
    pub stall_ms: f64,
}

/// Derives compaction figures from a timeline of events.
pub fn compaction_figures(events: &[TimedEvent]) -> CompactionFigures {
    let mut f = CompactionFigures::default();
    let mut open = 0u64;
    for e in events {
        match &e.event {
            Event::CompactionStart { .. } => {
                f.compactions += 1;
                open += 1;
                f.max_concurrent = f.max_concurrent.max(open);
            }
            Event::CompactionEnd { bytes_out, .. } => {
                open = open.saturating_sub(1);
                f.bytes_out += bytes_out;
            }
            Event::CompactionFailed { .. } => open = open.saturating_sub(1),
            Event::WriteStallEnd { duration, .. } => f.stall_ms += duration.as_secs_f64() * 1e3,
            _ => {}
        }
    }
    f.balanced = open == 0;
    f
}

/// Samples RSS (and a WAL debt reading) every [`SAMPLE_INTERVAL_MS`] on its own thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling; `debt` is read at each sample.
    pub fn start(debt: Arc<dyn Fn() -> u64 + Send + Sync>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), samples.clone());
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let sample = Sample {
                    t_s: started.elapsed().as_secs_f64(),
                    rss: Rss::now(),
                    wal_debt_bytes: debt(),
                };
                v.lock().expect("samples").push(sample);
                std::thread::sleep(Duration::from_millis(SAMPLE_INTERVAL_MS));
            }
        });
        Sampler {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Stops and returns the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let mut samples = self.samples.lock().expect("samples").clone();
        samples.push(Sample {
            t_s: samples.last().map_or(0.0, |s| s.t_s),
            rss: Rss::now(),
            wal_debt_bytes: 0,
        });
        samples
    }
}

/// The history-node ingest workload.
#[derive(Clone, Copy, Debug)]
pub struct IngestParams {
    /// Blocks to write.
    pub blocks: u64,
    /// Smallest value, bytes.
    pub min_value_bytes: usize,
    /// Largest value, bytes.
    pub max_value_bytes: usize,
    /// Blocks arrive shuffled within windows of this many.
    pub window: u64,
    /// Blocks per write batch.
    pub batch: usize,
    /// Blocks per range shard.
    pub shard_width: u64,
    /// Durability of each batch.
    pub durability: Durability,
    /// Random seed.
    pub seed: u64,
    /// Blocks read back and checked at the end (after the peak RSS is taken: reads are another
    /// workload, whose index pages `bench state` measures).
    pub verify_blocks: u64,
}

impl Default for IngestParams {
    fn default() -> Self {
        IngestParams {
            blocks: 40_000,
            min_value_bytes: 4 << 10,
            max_value_bytes: 60 << 10,
            window: 512,
            batch: 64,
            shard_width: 10_000,
            durability: Durability::Buffered,
            seed: 1,
            verify_blocks: 0,
        }
    }
}

/// What an ingest run measured.
#[derive(Clone, Debug, Default)]
pub struct IngestReport {
    /// Bytes of values written.
    pub payload_bytes: u64,
    /// Wall time, compactions included.
    pub wall_s: f64,
    /// Peak RSS of the process during the ingest (VmHWM before the verification reads).
    pub peak_rss_bytes: u64,
    /// Compaction figures.
    pub compaction: CompactionFigures,
    /// Bytes written to disk (WAL records and runs) per byte of payload.
    pub write_amplification: f64,
    /// Bytes of value files at the end (WAL segments that runs point into).
    pub value_log_bytes: u64,
    /// Bytes of value files no live run points at, at the end.
    pub value_log_garbage_bytes: u64,
    /// The RSS timeline.
    pub samples: Vec<Sample>,
    /// The events.
    pub events: Vec<TimedEvent>,
}

impl IngestReport {
    /// Payload MiB per second.
    pub fn payload_mb_per_s(&self) -> f64 {
        self.payload_bytes as f64 / (1 << 20) as f64 / self.wall_s
    }
}

/// Where the ingest's blocks come from.
#[derive(Debug, Default)]
pub enum BlockSource {
    /// Incompressible random values of the sizes [`IngestParams`] gives, one key per block.
    #[default]
    Synthetic,
    /// Real blocks from era1 files: block `n` is the file blocks' `n mod total`-th (repeated
    /// with shifted numbers past the end), stored as three keys `n ++ column` (header, body,
    /// receipts: the history store's layout), read through the block index one at a time.
    Era1(Era1Source),
}

/// Real blocks of era1 files, by position.
#[derive(Debug)]
pub struct Era1Source {
    readers: Vec<strata_history::era1::Era1Reader>,
    total: u64,
}

impl Era1Source {
    /// Opens every era1 file of `dir` (in name order).
    pub fn open(dir: &Path) -> std::result::Result<Era1Source, Box<dyn std::error::Error>> {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "era1"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("{} holds no .era1 files", dir.display()).into());
        }
        let mut readers = Vec::new();
        for f in files {
            readers.push(strata_history::era1::Era1Reader::open(&f)?);
        }
        let total = readers.iter().map(|r| r.count()).sum();
        Ok(Era1Source { readers, total })
    }

    /// Real blocks in the files.
    pub fn blocks(&self) -> u64 {
        self.total
    }

    /// Header, body and receipts of block `n` into `out` (3 buffers).
    fn block(&mut self, n: u64, out: &mut [Vec<u8>]) -> Result<()> {
        let mut i = n % self.total;
        for r in &mut self.readers {
            if i < r.count() {
                let b = r
                    .read_block(i)
                    .map_err(|e| strata::Error::InvalidOptions(e.to_string()))?;
                out[0] = b.header;
                out[1] = b.body;
                out[2] = b.receipts;
                return Ok(());
            }
            i -= r.count();
        }
        unreachable!("n mod total is inside one file")
    }
}

/// The payload of block `n`: incompressible bytes, reproducible from the seed.
pub fn block_value(p: &IngestParams, n: u64, buf: &mut Vec<u8>) {
    let mut rng = SmallRng::seed_from_u64(p.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = rng.random_range(p.min_value_bytes..=p.max_value_bytes);
    buf.resize(len, 0);
    rng.fill_bytes(buf);
}

use strata::WAL_RECORD_OVERHEAD_BYTES;

/// Runs the ingest into a new database at `dir`: keys are 8-byte big-endian block numbers,
/// blocks shuffled within windows and written in batches, range shards, automatic compaction.
/// Waits for compactions to finish, reads back `verify_blocks` random blocks, and reports. `progress` gets the
/// number of blocks written after each batch.
pub fn ingest(dir: &Path, p: &IngestParams, progress: &mut dyn FnMut(u64)) -> Result<IngestReport> {
    ingest_from(dir, p, &mut BlockSource::Synthetic, progress)
}

/// [`ingest`] with blocks from `source`. Era1 blocks cannot be read back for checking
/// (`verify_blocks` must be 0).
pub fn ingest_from(
    dir: &Path,
    p: &IngestParams,
    source: &mut BlockSource,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestReport> {
    check_ingest_params(p)?;
    if matches!(source, BlockSource::Era1(_)) && p.verify_blocks > 0 {
        return Err(strata::Error::InvalidOptions(
            "bench ingest --source era1 does not read blocks back (--verify 0)".into(),
        ));
    }
    let events = Arc::new(TimedEvents::new());
    let db = Arc::new(Db::open(dir, ingest_options(p, events.clone()))?);
    let reader = db.clone();
    let sampler = Sampler::start(Arc::new(move || reader.wal_debt_bytes()));
    let started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(p.seed);
    let (payload_bytes, wal_bytes) = write_blocks(&db, p, source, &mut rng, progress)?;
    // Writes have moved past every shard but the last two; finish the job like a node at the
    // end of its sync: compact what is left.
    db.wait_for_compactions();
    db.compact_all()?;
    db.sync()?;
    let wall_s = started.elapsed().as_secs_f64();
    // Peak of the ingest itself; the verification reads below fault in index pages (the disk
    // index's working set, about 24 bytes per block here) that the ingest never needed.
    let peak_rss_bytes = Rss::now().vm_hwm;
    let stats = db.stats();
    verify_blocks(&db, p, &mut rng)?;
    let samples = sampler.finish();
    Arc::into_inner(db)
        .expect("the sampler is stopped")
        .close()?;
    let events = events.events();
    let compaction = compaction_figures(&events);
    Ok(IngestReport {
        payload_bytes,
        wall_s,
        peak_rss_bytes,
        write_amplification: (wal_bytes + compaction.bytes_out) as f64
            / payload_bytes.max(1) as f64,
        compaction,
        samples,
        events,
        value_log_bytes: stats.value_log_bytes,
        value_log_garbage_bytes: stats.value_log_garbage_bytes,
    })
}

/// Rejects parameters the workload cannot run with.
fn check_ingest_params(p: &IngestParams) -> Result<()> {
    if p.min_value_bytes > p.max_value_bytes || p.window == 0 || p.batch == 0 || p.shard_width == 0
    {
        return Err(strata::Error::InvalidOptions(
            "need min_value_bytes <= max_value_bytes and non-zero window, batch and shard width"
                .into(),
        ));
    }
    Ok(())
}

/// A new database of range shards, reporting to `events`.
fn ingest_options(p: &IngestParams, events: Arc<TimedEvents>) -> Options {
    let mut options = Options::new();
    options.create_if_missing = true;
    options.sharding = Sharding::Range {
        width: p.shard_width,
    };
    options.durability = p.durability;
    options.events = events;
    options
}

/// Writes every block, shuffled within windows, in batches. Returns the payload bytes and the
/// WAL bytes (record overhead included) written.
fn write_blocks(
    db: &Db,
    p: &IngestParams,
    source: &mut BlockSource,
    rng: &mut SmallRng,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64)> {
    let (mut payload_bytes, mut wal_bytes, mut written) = (0u64, 0u64, 0u64);
    // Keys per block: one synthetic value, or an era1 block's three columns.
    let per_block = match source {
        BlockSource::Synthetic => 1,
        BlockSource::Era1(_) => 3,
    };
    // One reusable buffer per batch slot: the workload allocates nothing per block.
    let mut values: Vec<Vec<u8>> = (0..p.batch * per_block)
        .map(|_| Vec::with_capacity(if per_block == 1 { p.max_value_bytes } else { 0 }))
        .collect();
    let mut keys: Vec<[u8; 9]> = vec![[0; 9]; p.batch * per_block];
    let key_len = if per_block == 1 { 8 } else { 9 };
    let mut base = 0u64;
    while base < p.blocks {
        let end = (base + p.window).min(p.blocks);
        let mut order: Vec<u64> = (base..end).collect();
        order.shuffle(rng);
        for chunk in order.chunks(p.batch) {
            for (i, &n) in chunk.iter().enumerate() {
                let slots = i * per_block..(i + 1) * per_block;
                match source {
                    BlockSource::Synthetic => block_value(p, n, &mut values[i]),
                    BlockSource::Era1(e) => e.block(n, &mut values[slots.clone()])?,
                }
                for (c, slot) in slots.enumerate() {
                    keys[slot][..8].copy_from_slice(&n.to_be_bytes());
                    keys[slot][8] = c as u8 + 1;
                    payload_bytes += values[slot].len() as u64;
                    wal_bytes += (WAL_RECORD_OVERHEAD_BYTES + key_len + values[slot].len()) as u64;
                }
            }
            let ops: Vec<OpRef<'_>> = (0..chunk.len() * per_block)
                .map(|i| OpRef {
                    kind: EntryKind::Put,
                    tag: 0,
                    key: &keys[i][..key_len],
                    value: &values[i],
                })
                .collect();
            db.write_ops(&ops)?;
            written += chunk.len() as u64;
            progress(written);
        }
        base = end;
    }
    Ok((payload_bytes, wal_bytes))
}

/// Reads back `verify_blocks` random blocks and checks their payloads.
fn verify_blocks(db: &Db, p: &IngestParams, rng: &mut SmallRng) -> Result<()> {
    let mut value = Vec::new();
    for _ in 0..p.verify_blocks.min(p.blocks) {
        let n = rng.random_range(0..p.blocks);
        block_value(p, n, &mut value);
        if db.get(&n.to_be_bytes())?.as_deref() != Some(value.as_slice()) {
            return Err(strata::Error::InvalidOptions(format!(
                "bench ingest: block {n} reads back wrong"
            )));
        }
    }
    Ok(())
}

/// Writes `samples.csv` (time, RSS figures, WAL debt) and `events.jsonl` (one JSON object per
/// event) into `dir`.
pub fn write_timeline(
    dir: &Path,
    samples: &[Sample],
    events: &[TimedEvent],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("samples.csv"))?);
    writeln!(
        csv,
        "t_s,vm_rss_bytes,vm_hwm_bytes,rss_anon_bytes,rss_file_bytes,wal_debt_bytes"
    )?;
    for s in samples {
        writeln!(
            csv,
            "{:.3},{},{},{},{},{}",
            s.t_s, s.rss.vm_rss, s.rss.vm_hwm, s.rss.rss_anon, s.rss.rss_file, s.wal_debt_bytes
        )?;
    }
    csv.flush()?;
    let mut jsonl = std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl"))?);
    for e in events {
        writeln!(jsonl, "{}", event_json(e))?;
    }
    jsonl.flush()
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One event as a JSON object: `{"t_s":..,"event":"compaction_end",...fields}`.
pub fn event_json(e: &TimedEvent) -> String {
    let head = format!(
        "{{\"t_s\":{:.4},\"event\":{}",
        e.t_s,
        json_str(e.event.name())
    );
    let tail = match &e.event {
        Event::WalRotated { shard, new_segment } => format!(",\"shard\":{},\"new_segment\":{}", shard.0, new_segment.0),
        Event::WalTailTruncated { file, offset, dropped_bytes } => {
            format!(",\"file\":{},\"offset\":{offset},\"dropped_bytes\":{dropped_bytes}", json_str(&file.display().to_string()))
        }
        Event::CompactionQueued { shard } => format!(",\"shard\":{}", shard.0),
        Event::CompactionStart { shard, wal_segments, runs, bytes_in } => {
            format!(",\"shard\":{},\"wal_segments\":{wal_segments},\"runs\":{runs},\"bytes_in\":{bytes_in}", shard.0)
        }
        Event::CompactionEnd { shard, bytes_in, bytes_out, entries_out, duration } => format!(
            ",\"shard\":{},\"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\"entries_out\":{entries_out},\"duration_ms\":{:.3}",
            shard.0,
            duration.as_secs_f64() * 1e3
        ),
        Event::CompactionFailed { shard, error } => format!(",\"shard\":{},\"error\":{}", shard.0, json_str(error)),
        Event::WriteStallStart { shard, wal_debt_bytes } => format!(",\"shard\":{},\"wal_debt_bytes\":{wal_debt_bytes}", shard.0),
        Event::WriteStallEnd { shard, duration } => format!(",\"shard\":{},\"duration_ms\":{:.3}", shard.0, duration.as_secs_f64() * 1e3),
        Event::StrayFileRemoved { file } => format!(",\"file\":{}", json_str(&file.display().to_string())),
        Event::IndexRebuilt { file, reason } => format!(",\"file\":{},\"reason\":{}", json_str(&file.display().to_string()), json_str(reason)),
        Event::BackgroundError { error } => format!(",\"error\":{}", json_str(error)),
        other => format!(",\"detail\":{}", json_str(&format!("{other:?}"))),
    };
    format!("{head}{tail}}}")
}

/// The ledger-state workload.
#[derive(Clone, Copy, Debug)]
pub struct StateParams {
    /// Keys to insert.
    pub keys: u64,
    /// Bytes of every value.
    pub value_bytes: usize,
    /// Present-key lookups, and as many absent-key lookups.
    pub lookups: u64,
    /// Index policy.
    pub index: strata::IndexPolicy,
    /// Random seed.
    pub seed: u64,
}

impl Default for StateParams {
    fn default() -> Self {
        StateParams {
            keys: 2_000_000,
            value_bytes: 150,
            lookups: 1_000_000,
            index: strata::IndexPolicy::AUTO,
            seed: 1,
        }
    }
}

/// The entry type scanned after deleting a tenth of it.
pub const STATE_SCAN_TYPE: u8 = 1;

/// The entry type of state key `i`: skewed like a ledger (40% type 0, 30% type 1, 10% type 6,
/// the other seven types share the rest).
pub fn state_type(seed: u64, i: u64) -> u8 {
    let r = xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed ^ 0x7479_7065) % 100;
    match r {
        0..=39 => 0,
        40..=69 => 1,
        70..=79 => 6,
        r => [2, 3, 4, 5, 7, 8, 9][(r - 80) as usize % 7],
    }
}

/// State key `i` (33 bytes: type, then 32 pseudo-random bytes). Keys of another `seed` are
/// absent from a store filled with this one.
pub fn state_key(seed: u64, i: u64) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = state_type(seed, i);
    for (j, chunk) in k[1..].chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &xxhash_rust::xxh3::xxh3_64_with_seed(
                &i.to_le_bytes(),
                seed.wrapping_mul(31).wrapping_add(j as u64),
            )
            .to_le_bytes(),
        );
    }
    k
}

/// The value of state key `i`.
pub fn state_value(seed: u64, i: u64, len: usize, buf: &mut Vec<u8>) {
    let mut rng = SmallRng::seed_from_u64(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    buf.resize(len, 0);
    rng.fill_bytes(buf);
}

/// Whether state key `i` is deleted before the scan: a tenth of the scanned type.
pub fn state_deleted(seed: u64, i: u64) -> bool {
    state_type(seed, i) == STATE_SCAN_TYPE && i % 10 == 3
}

/// What a state run measured.
#[derive(Clone, Debug, Default)]
pub struct StateReport {
    /// Keys inserted.
    pub keys: u64,
    /// Load throughput, MiB of keys and values per second (compactions included).
    pub load_mb_per_s: f64,
    /// Seconds to reopen the store.
    pub reopen_s: f64,
    /// Present-key lookups per second.
    pub hit_lookups_per_s: f64,
    /// Absent-key lookups per second.
    pub miss_lookups_per_s: f64,
    /// Index memory per key after reopening.
    pub index_bytes_per_key: f64,
    /// Keys yielded per second by the scan of one type.
    pub scan_keys_per_s: f64,
    /// Keys the scan yielded.
    pub scan_keys: u64,
    /// RSS the scan added over the RSS before it, MiB.
    pub scan_extra_rss_mb: f64,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
    /// Events.
    pub events: Vec<TimedEvent>,
    /// RSS timeline.
    pub samples: Vec<Sample>,
}

/// Runs the ledger-state workload in a new database at `dir`: insert `keys` entries in random
/// key order, close, reopen, look up present and absent keys, delete a tenth of one type and
/// scan that type. Checks every answer.
pub fn state(
    dir: &Path,
    p: &StateParams,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<StateReport> {
    let events = Arc::new(TimedEvents::new());
    let options = || {
        let mut o = Options::new();
        o.create_if_missing = true;
        o.index_policy = p.index;
        o.events = events.clone();
        o
    };
    let debt = Arc::new(AtomicU64::new(0));
    let reader = debt.clone();
    let sampler = Sampler::start(Arc::new(move || reader.load(Ordering::Relaxed)));
    let load_s = load_state(Db::open(dir, options())?, p, &debt, progress)?;
    let started = Instant::now();
    let db = Db::open(dir, options())?;
    let reopen_s = started.elapsed().as_secs_f64();
    let stats = db.stats();
    let hit_s = look_up_present(&db, p, progress)?;
    let miss_s = look_up_absent(&db, p, progress)?;
    let expected = delete_state_keys(&db, p)?;
    let scan = scan_state_type(&db, progress)?;
    if scan.keys != expected {
        return Err(strata::Error::InvalidOptions(format!(
            "bench state: scan yielded {} keys, expected {expected}",
            scan.keys
        )));
    }
    db.close()?;
    let samples = sampler.finish();
    let mb = (p.keys * (33 + p.value_bytes as u64)) as f64 / (1 << 20) as f64;
    Ok(StateReport {
        keys: p.keys,
        load_mb_per_s: mb / load_s,
        reopen_s,
        hit_lookups_per_s: p.lookups as f64 / hit_s,
        miss_lookups_per_s: p.lookups as f64 / miss_s,
        index_bytes_per_key: stats.index_bytes as f64 / stats.index_keys.max(1) as f64,
        scan_keys_per_s: scan.keys as f64 / scan.seconds,
        scan_keys: scan.keys,
        scan_extra_rss_mb: scan.extra_rss_bytes as f64 / (1 << 20) as f64,
        peak_rss_bytes: Rss::now().vm_hwm,
        events: events.events(),
        samples,
    })
}

/// Inserts every state key in batches of 1000, compacts and closes `db`. Returns the seconds
/// taken (compactions included), and keeps `debt` current for the sampler.
fn load_state(
    db: Db,
    p: &StateParams,
    debt: &AtomicU64,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<f64> {
    let started = Instant::now();
    let mut value = Vec::new();
    let mut batch = strata::Batch::new();
    for i in 0..p.keys {
        state_value(p.seed, i, p.value_bytes, &mut value);
        batch.put(state_key(p.seed, i).to_vec(), value.as_slice());
        if batch.len() == 1000 || i + 1 == p.keys {
            db.write_batch(&batch)?;
            batch = strata::Batch::new();
            debt.store(db.wal_debt_bytes(), Ordering::Relaxed);
            progress("load", i + 1);
        }
    }
    // Loaded once every write is durable and in runs, background work settled: what the peers'
    // flush and wait give. (Not a whole-shard merge, which neither peer does.)
    db.flush()?;
    db.close()?;
    Ok(started.elapsed().as_secs_f64())
}

/// Looks up `lookups` random present keys and checks their values. Returns the seconds taken.
fn look_up_present(db: &Db, p: &StateParams, progress: &mut dyn FnMut(&str, u64)) -> Result<f64> {
    let mut value = Vec::new();
    let mut rng = SmallRng::seed_from_u64(p.seed ^ 0x10_0c_0a);
    let started = Instant::now();
    for n in 0..p.lookups {
        let i = rng.random_range(0..p.keys);
        let got = db.get(&state_key(p.seed, i))?;
        state_value(p.seed, i, p.value_bytes, &mut value);
        if got.as_deref() != Some(value.as_slice()) {
            return Err(strata::Error::InvalidOptions(format!(
                "bench state: key {i} reads back wrong"
            )));
        }
        if n.is_multiple_of(100_000) {
            progress("hits", n);
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Looks up `lookups` keys of another seed and checks that none is found. Returns the seconds
/// taken.
fn look_up_absent(db: &Db, p: &StateParams, progress: &mut dyn FnMut(&str, u64)) -> Result<f64> {
    let absent_seed = p.seed.wrapping_add(0x5eed);
    let started = Instant::now();
    for n in 0..p.lookups {
        if db.get(&state_key(absent_seed, n))?.is_some() {
            return Err(strata::Error::InvalidOptions(format!(
                "bench state: absent key {n} found"
            )));
        }
        if n.is_multiple_of(100_000) {
            progress("misses", n);
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Deletes the keys [`state_deleted`] picks. Returns how many keys of [`STATE_SCAN_TYPE`]
/// remain, which the scan must yield.
fn delete_state_keys(db: &Db, p: &StateParams) -> Result<u64> {
    let mut expected = 0u64;
    let mut batch = strata::Batch::new();
    for i in 0..p.keys {
        if state_deleted(p.seed, i) {
            batch.delete(state_key(p.seed, i).to_vec());
            if batch.len() == 1000 {
                db.write_batch(&batch)?;
                batch = strata::Batch::new();
            }
        } else if state_type(p.seed, i) == STATE_SCAN_TYPE {
            expected += 1;
        }
    }
    db.write_batch(&batch)?;
    Ok(expected)
}

/// What the scan of one type measured.
struct TypeScan {
    keys: u64,
    seconds: f64,
    /// The highest RSS seen during the scan over the RSS before it.
    extra_rss_bytes: u64,
}

/// Scans [`STATE_SCAN_TYPE`], sampling RSS every 65,536 keys.
fn scan_state_type(db: &Db, progress: &mut dyn FnMut(&str, u64)) -> Result<TypeScan> {
    let before = Rss::now();
    let mut peak_during = before.vm_rss;
    let started = Instant::now();
    let mut scanned = 0u64;
    for item in db.prefix(&[STATE_SCAN_TYPE])? {
        let (key, _) = item?;
        debug_assert_eq!(key[0], STATE_SCAN_TYPE);
        scanned += 1;
        if scanned.is_multiple_of(65_536) {
            peak_during = peak_during.max(Rss::now().vm_rss);
            progress("scan", scanned);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    peak_during = peak_during.max(Rss::now().vm_rss);
    Ok(TypeScan {
        keys: scanned,
        seconds,
        extra_rss_bytes: peak_during.saturating_sub(before.vm_rss),
    })
}

/// How the Stellar benchmark scans one entry type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StellarScan {
    /// `LedgerStore::scan_type`: a k-way merge of the slots, one record per slot in memory.
    KWay,
    /// The approach that peaked at 12–13 GB on a Stellar node: read every slot newest first and
    /// keep a set of the keys seen so far (for comparison only).
    SeenSet,
}

/// What the Stellar benchmark measured.
#[derive(Clone, Debug)]
pub struct StellarReport {
    /// Synthetic entries in the older bucket.
    pub entries: u64,
    /// Seconds spent writing and importing the buckets (0 when the store existed).
    pub import_s: f64,
    /// Seconds of the scan.
    pub scan_s: f64,
    /// Live entries the scan yielded.
    pub live: u64,
    /// Peak resident set of the process, MiB.
    pub peak_rss_mb: f64,
}

/// The Stellar scan benchmark: imports a synthetic bucket list of `entries` TTL entries into
/// `dir/db` (unless a store is already there) and scans the TTL type.
pub fn stellar(
    dir: &Path,
    entries: u64,
    scan: StellarScan,
) -> std::result::Result<StellarReport, Box<dyn std::error::Error>> {
    use strata_stellar::bucket::{EntryKind, EMPTY_BUCKET};
    use strata_stellar::stellar_xdr::LedgerEntryType;
    use strata_stellar::store::{synthetic, LedgerStore};

    std::fs::create_dir_all(dir)?;
    let mut store = LedgerStore::open(dir.join("db"))?;
    let mut import_s = 0.0;
    if store.state().is_none() {
        let started = Instant::now();
        let sources = synthetic::write_buckets(dir, entries)?;
        store.import_buckets(1, &sources)?;
        for s in sources.iter().filter_map(|s| s.path.as_ref()) {
            std::fs::remove_file(s)?;
        }
        import_s = started.elapsed().as_secs_f64();
    }
    let started = Instant::now();
    let live = match scan {
        StellarScan::KWay => {
            let mut n = 0;
            for item in store.scan_type(LedgerEntryType::Ttl)? {
                item?;
                n += 1;
            }
            n
        }
        StellarScan::SeenSet => {
            let state = store.state().expect("imported").clone();
            let ty = strata_stellar::key::type_prefix(LedgerEntryType::Ttl);
            let mut seen = std::collections::HashSet::new();
            let mut n = 0;
            for (slot, name) in state.slots.iter().enumerate() {
                if *name == EMPTY_BUCKET {
                    continue;
                }
                let mut prefix = state.slot_prefix(slot);
                let header = prefix.len();
                prefix.extend_from_slice(&ty);
                for item in store.db().prefix(&prefix)? {
                    let (key, value) = item?;
                    if seen.insert(key[header..].to_vec())
                        && EntryKind::of_xdr(&value) != Some(EntryKind::Dead)
                    {
                        n += 1;
                    }
                }
            }
            n
        }
    };
    let scan_s = started.elapsed().as_secs_f64();
    store.close()?;
    Ok(StellarReport {
        entries,
        import_s,
        scan_s,
        live,
        peak_rss_mb: Rss::now().vm_hwm as f64 / (1 << 20) as f64,
    })
}
