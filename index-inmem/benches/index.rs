//! In-memory index benchmarks, the peer of the disk index's (same harness, same figures).
//! `cargo bench -p strata-index-inmem`.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use criterion::{criterion_group, criterion_main, Criterion};
use strata_index_inmem::InMemoryIndexFactory;

fn bench(c: &mut Criterion) {
    strata_engine::conformance::bench_support::bench_index(c, "inmem", &InMemoryIndexFactory);
}

criterion_group!(benches, bench);
criterion_main!(benches);
