//! The index conformance suite: what every [`IndexFactory`] must do, run by each index crate's
//! tests (`strata_engine::conformance::run_all(&MyFactory)`). Builds real runs in a temporary
//! directory and checks the loaded index against them.

use std::path::Path;
use std::sync::Arc;

use crate::files::FileCache;
use crate::fs::StdFs;

use crate::index::IndexFactory;
use crate::layout::index_file_name;
use crate::limits::MAX_KEY_BYTES;
use crate::run::{Run, RunWriter, RUN_HEADER_BYTES};
use crate::types::{EntryKind, SeqNo};

/// One case: keys (sorted, unique) and the length of each value.
struct Case {
    name: &'static str,
    keys: Vec<Vec<u8>>,
    value_len: fn(usize) -> usize,
}

fn write_run(dir: &Path, id: u64, factory: &dyn IndexFactory, case: &Case) -> (Run, Vec<u64>) {
    let mut w = RunWriter::create(
        &StdFs::shared(),
        dir,
        id,
        factory.builder(case.keys.len() as u64),
    )
    .expect("create run");
    let mut offsets = Vec::new();
    for (i, key) in case.keys.iter().enumerate() {
        offsets.push(w.bytes());
        let value = vec![(i % 251) as u8; (case.value_len)(i)];
        w.add(key, EntryKind::Put, 0, SeqNo(i as u64 + 1), &value)
            .expect("add");
    }
    let finished = w.finish().expect("finish");
    let index = factory
        .load(&StdFs, &dir.join(index_file_name(id)), &finished.identity)
        .expect("load index");
    (
        Run::open(
            dir,
            id,
            index,
            &Arc::new(FileCache::new(4, StdFs::shared())),
        )
        .expect("open run"),
        offsets,
    )
}

fn spread_keys(n: usize, len: usize) -> Vec<Vec<u8>> {
    // Even numbers only, so that odd numbers are absent keys between present ones.
    (0..n)
        .map(|i| {
            let mut k = vec![b'k'; len.saturating_sub(8)];
            k.extend_from_slice(&((i as u64) * 2 + 2).to_be_bytes());
            k
        })
        .collect()
}

fn absent_between(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    let n = k.len();
    let last = u64::from_be_bytes(k[n - 8..].try_into().expect("8 bytes"));
    k[n - 8..].copy_from_slice(&(last + 1).to_be_bytes());
    k
}

fn check(factory: &dyn IndexFactory, case: &Case, dir: &Path, id: u64) {
    let (run, offsets) = write_run(dir, id, factory, case);
    let idx = run.index();
    let name = case.name;
    assert_eq!(idx.key_count(), case.keys.len() as u64, "{name}: key_count");
    for (key, &offset) in case.keys.iter().zip(&offsets) {
        assert!(
            idx.may_contain(key),
            "{name}: may_contain false for a present key"
        );
        let span = idx
            .locate(key)
            .unwrap_or_else(|| panic!("{name}: present key not located"));
        assert!(
            span.start <= offset && offset < span.end,
            "{name}: span {span:?} misses offset {offset}"
        );
        let rec = run
            .get(key)
            .expect("get")
            .unwrap_or_else(|| panic!("{name}: present key not found through the index"));
        assert_eq!(rec.offset, offset, "{name}: found at the wrong offset");
        assert_eq!(
            run.seek(key).expect("seek"),
            offset,
            "{name}: seek to a present key"
        );
        let raw = idx.seek(key);
        assert!(
            raw <= offset && raw >= RUN_HEADER_BYTES as u64,
            "{name}: index seek {raw} past the key's offset {offset}"
        );
    }
    // Absent keys: before the first, between every pair, after the last.
    let mut absent = vec![Vec::new(), vec![0u8]];
    for key in &case.keys {
        absent.push(absent_between(key));
    }
    absent.push(vec![0xff; 9]);
    for key in absent.iter().filter(|k| !case.keys.contains(k)) {
        assert!(
            run.get(key).expect("get").is_none(),
            "{name}: absent key {key:?} found"
        );
        let first_ge = case.keys.iter().position(|k| k > key);
        let expected = first_ge.map_or(run.data_end(), |i| offsets[i]);
        assert_eq!(
            run.seek(key).expect("seek"),
            expected,
            "{name}: seek to absent key {key:?}"
        );
        assert!(
            idx.seek(key) <= expected,
            "{name}: index seek past the first key >= {key:?}"
        );
    }
}

/// Runs every case against `factory`; panics with the case name on the first failure.
pub fn run_all(factory: &dyn IndexFactory) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        Case {
            name: "empty run",
            keys: Vec::new(),
            value_len: |_| 0,
        },
        Case {
            name: "single entry",
            keys: spread_keys(1, 16),
            value_len: |_| 10,
        },
        Case {
            name: "small values",
            keys: spread_keys(2_000, 24),
            value_len: |i| i % 200,
        },
        Case {
            name: "values larger than a page",
            keys: spread_keys(40, 16),
            value_len: |i| 20_000 + i * 997,
        },
        Case {
            name: "maximum-length keys",
            keys: spread_keys(300, MAX_KEY_BYTES),
            value_len: |i| i % 50,
        },
        Case {
            name: "many keys per page",
            keys: spread_keys(20_000, 12),
            value_len: |_| 0,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        check(factory, case, dir.path(), i as u64 + 1);
    }
}

/// Building blocks of the index benchmarks (`cargo bench -p strata-index-disk` and
/// `-p strata-index-inmem`): runs of 32-byte keys and 150-byte values, present and absent keys,
/// and the figures that are counts rather than times.
pub mod bench_support {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::files::FileCache;
    use crate::fs::StdFs;

    use crate::index::IndexFactory;
    use crate::layout::index_file_name;
    use crate::run::{Run, RunWriter};
    use crate::types::{EntryKind, SeqNo};

    /// Bytes of every benchmark value.
    pub const BENCH_VALUE_BYTES: usize = 150;

    /// Present key `i`: an 8-byte big-endian `2 i`, then 24 pseudo-random bytes. Sorted by `i`.
    pub fn present_key(i: u64) -> [u8; 32] {
        key(2 * i)
    }

    /// Absent key `i`: sorts between present keys `i` and `i + 1`.
    pub fn absent_key(i: u64) -> [u8; 32] {
        key(2 * i + 1)
    }

    fn key(n: u64) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&n.to_be_bytes());
        for (j, chunk) in k[8..].chunks_mut(8).enumerate() {
            chunk.copy_from_slice(
                &xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), j as u64).to_le_bytes(),
            );
        }
        k
    }

    /// Writes run 1 of `n` keys in `dir` with `factory`'s index; returns it and the build time
    /// (writing run and index, syncs included).
    pub fn build_run(dir: &Path, factory: &dyn IndexFactory, n: u64) -> (Run, Duration) {
        let started = Instant::now();
        let mut w =
            RunWriter::create(&StdFs::shared(), dir, 1, factory.builder(n)).expect("create run");
        let value = [0x5au8; BENCH_VALUE_BYTES];
        for i in 0..n {
            w.add(&present_key(i), EntryKind::Put, 0, SeqNo(i + 1), &value)
                .expect("add");
        }
        let finished = w.finish().expect("finish");
        let built = started.elapsed();
        let index = factory
            .load(&StdFs, &dir.join(index_file_name(1)), &finished.identity)
            .expect("load");
        (
            Run::open(dir, 1, index, &Arc::new(FileCache::new(4, StdFs::shared()))).expect("open"),
            built,
        )
    }

    /// Fraction of `probes` absent keys the index does not rule out.
    pub fn false_positive_rate(run: &Run, n: u64, probes: u64) -> f64 {
        let hits = (0..probes)
            .filter(|&i| {
                run.index()
                    .may_contain(&absent_key(i * (n / probes).max(1) % n))
            })
            .count();
        hits as f64 / probes as f64
    }

    /// Average run bytes read per lookup of `probes` present keys and of `probes` absent keys.
    pub fn bytes_touched_per_lookup(run: &Run, n: u64, probes: u64) -> (f64, f64) {
        let step = (n / probes).max(1);
        let before = run.bytes_touched();
        for i in 0..probes {
            assert!(run.get(&present_key(i * step % n)).expect("get").is_some());
        }
        let present = run.bytes_touched() - before;
        let before = run.bytes_touched();
        for i in 0..probes {
            assert!(run.get(&absent_key(i * step % n)).expect("get").is_none());
        }
        let absent = run.bytes_touched() - before;
        (
            present as f64 / probes as f64,
            absent as f64 / probes as f64,
        )
    }

    /// The whole index benchmark for `factory`, at every size of [`sizes`]: prints build and
    /// rebuild time, bytes per key, false-positive rate and run bytes per lookup, and times
    /// present and absent lookups and loading the index file with criterion.
    pub fn bench_index(c: &mut criterion::Criterion, name: &str, factory: &dyn IndexFactory) {
        for n in sizes() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (run, built) = build_run(dir.path(), factory, n);
            let index_path = dir.path().join(index_file_name(1));
            let file_bytes = std::fs::metadata(&index_path).expect("index file").len();
            let fp = false_positive_rate(&run, n, 1_000_000.min(n));
            let (touched_present, touched_absent) =
                bytes_touched_per_lookup(&run, n, 100_000.min(n));
            let started = Instant::now();
            drop(crate::run::rebuild_index(&StdFs, dir.path(), 1, factory).expect("rebuild"));
            let rebuild = started.elapsed();
            println!(
                "{name} index, {n} keys: build {:.2} s, rebuild from run {:.2} s, memory {:.3} bytes/key, file {:.3} bytes/key, \
                 false positives {:.3}%, run bytes per present lookup {touched_present:.0}, per absent lookup {touched_absent:.1}",
                built.as_secs_f64(),
                rebuild.as_secs_f64(),
                run.index().memory_bytes() as f64 / n as f64,
                file_bytes as f64 / n as f64,
                fp * 100.0
            );
            let mut g = c.benchmark_group(format!("{name}/{n}"));
            g.throughput(criterion::Throughput::Elements(1));
            let mut i = 0u64;
            let mut next = move || {
                i = i
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407)
                    % n;
                i
            };
            g.bench_function("get_present", |b| {
                b.iter(|| run.get(&present_key(next())).expect("get").is_some())
            });
            g.bench_function("get_absent", |b| {
                b.iter(|| run.get(&absent_key(next())).expect("get").is_none())
            });
            g.sample_size(10);
            g.bench_function("load_from_file", |b| {
                b.iter(|| {
                    factory
                        .load(&StdFs, &index_path, &run.identity())
                        .expect("load")
                        .key_count()
                })
            });
            g.finish();
        }
    }

    /// Key counts to benchmark: `STRATA_BENCH_KEYS` (comma-separated), default 1M and 10M.
    pub fn sizes() -> Vec<u64> {
        std::env::var("STRATA_BENCH_KEYS")
            .unwrap_or_else(|_| "1000000,10000000".into())
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("STRATA_BENCH_KEYS: numbers separated by commas")
            })
            .collect()
    }
}
