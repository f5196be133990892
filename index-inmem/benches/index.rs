//! In-memory index benchmarks, the peer of the disk index's: lookups per second (present and
//! absent keys), load from file, and (printed) build and rebuild time and bytes per key.
//! `cargo bench -p strata-index-inmem`.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_engine::conformance::bench_support::{
    absent_key, build_run, bytes_touched_per_lookup, present_key, sizes,
};
use strata_engine::run::{index_file_name, rebuild_index};
use strata_engine::IndexFactory;
use strata_index_inmem::InMemoryIndexFactory;

fn bench(c: &mut Criterion) {
    for n in sizes() {
        let dir = tempfile::tempdir().unwrap();
        let factory = InMemoryIndexFactory;
        let (run, built) = build_run(dir.path(), &factory, n);
        let index_path = dir.path().join(index_file_name(1));
        let (touched_present, touched_absent) = bytes_touched_per_lookup(&run, n, 100_000.min(n));
        let started = std::time::Instant::now();
        drop(rebuild_index(dir.path(), 1, &factory).unwrap());
        let rebuild = started.elapsed();
        println!(
            "in-memory index, {n} keys: build {:.2} s, rebuild from run {:.2} s, memory {:.3} bytes/key, \
             run bytes per present lookup {touched_present:.0}, per absent lookup {touched_absent:.1}",
            built.as_secs_f64(),
            rebuild.as_secs_f64(),
            run.index().memory_bytes() as f64 / n as f64,
        );
        let mut g = c.benchmark_group(format!("inmem/{n}"));
        g.throughput(Throughput::Elements(1));
        let mut i = 0u64;
        g.bench_function("get_present", |b| {
            b.iter(|| {
                i = (i
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1442695040888963407))
                    % n;
                run.get(&present_key(i)).unwrap().is_some()
            })
        });
        g.bench_function("get_absent", |b| {
            b.iter(|| {
                i = (i
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1442695040888963407))
                    % n;
                run.get(&absent_key(i)).unwrap().is_none()
            })
        });
        g.sample_size(10);
        g.bench_function("load_from_file", |b| {
            b.iter(|| {
                factory
                    .load(&index_path, &run.identity())
                    .unwrap()
                    .key_count()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
