//! strata's kernel: keys and entries, the [`Index`], [`Wal`] and [`Compactor`] traits, the
//! sorted-run format, the memtable of WAL positions, shards, manifests, the k-way merge behind
//! scans, events and stats. Generic over the traits; knows no concrete index or WAL.
//!
//! Memory is bounded by design: memtables hold positions, not values; compaction streams values
//! in [`COPY_CHUNK_BYTES`] chunks; scans hold one key per source.

pub mod compactor;
pub mod engine;
pub mod error;
pub mod event;
pub mod index;
pub mod manifest;
pub mod memtable;
pub mod options;
pub mod policy;
pub mod run;
pub mod scan;
pub mod shard;
pub mod stall;
pub mod sync;
pub mod types;
pub mod wal;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use compactor::{CompactionTarget, Compactor};
pub use engine::{Engine, Stats};
pub use error::{Error, Result};
pub use event::{Event, EventLog, EventSink, NoEvents};
pub use index::{
    check_index_frame, Index, IndexBuilder, IndexFactory, IndexKind, IndexParams, RunIdentity, Span,
};
pub use options::{
    CompactionOptions, Durability, IndexPolicy, Options, Sharding, AUTO_INDEX_CUTOFF_BYTES,
};
pub use policy::{Plan, PolicyOptions, ShardShape};
pub use scan::Scan;
pub use shard::{CompactionReport, RunStats, ShardStats};
pub use types::*;
pub use wal::{Appended, RecoveredRecord, Wal, WalStats};
