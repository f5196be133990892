//! Disk index benchmarks: lookups per second (present and absent keys), load from file, and
//! (printed) build and rebuild time, bytes per key, false-positive rate and run bytes touched
//! per lookup. 32-byte keys, 150-byte values, 1M and 10M keys by default
//! (`STRATA_BENCH_KEYS=1000000` for a quicker run). `cargo bench -p strata-index-disk`.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use strata_engine::IndexParams;
use strata_index_disk::DiskIndexFactory;

fn bench(c: &mut Criterion) {
    strata_engine::conformance::bench_support::bench_index(
        c,
        "disk",
        &DiskIndexFactory::new(IndexParams::default()),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
