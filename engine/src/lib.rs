//! strata's kernel: keys and entries, the [`Index`], [`Wal`] and [`Compactor`] traits, the
//! sorted-run format, the memtable of WAL positions, shards, manifests, the one k-way merge
//! ([`Merger`]) behind scans and compaction, events and stats. Generic over the traits; knows no
//! concrete index or WAL.
//!
//! Memory is bounded by design: memtables hold positions, not values; compaction streams values
//! in [`COPY_CHUNK_BYTES`] chunks; scans hold one key per source. Every limit is in one place and
//! re-exported here (see the `limits` list below).
//!
//! # The kernel's face
//!
//! Modules are private; what users and plug-ins need is re-exported at this root. Three modules
//! are public on purpose: [`format`] (file names, frames and whole-file checks, for tools such
//! as `verify`), [`sync`] (the loom/std facade the WAL and the compactor build on) and, behind
//! the `conformance` feature, `conformance` (the suite every `Index` runs).

mod compactor;
mod engine;
mod error;
mod event;
mod files;
pub mod format;
mod fs;
mod index;
mod layout;
mod limits;
mod manifest;
mod memtable;
mod merge;
mod options;
mod policy;
mod run;
mod scan;
mod shard;
mod stall;
pub mod sync;
mod types;
mod wal;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use compactor::{CompactionTarget, Compactor};
pub use engine::{stored_sharding, Engine, Stats};
pub use error::{Error, Result};
pub use event::{Event, EventLog, EventSink, NoEvents};
pub use files::FileCache;
pub use fs::{
    DirEntry, FileLock, FileReader, FileSystem, FileWriter, FsFile, Mapped, Metadata, OpenMode,
    StdFs,
};
pub use index::{
    check_index_frame, Index, IndexBuilder, IndexFactory, IndexKind, IndexParams, RunIdentity, Span,
};
pub use limits::*;
pub use manifest::{SealDigest, ShardSeal};
pub use merge::{fused_next, MergeSource, Merger};
pub use options::{CompactionOptions, Durability, IndexPolicy, Options, Sharding};
pub use policy::{Plan, PolicyOptions, ShardShape};
pub use scan::Scan;
pub use shard::{CompactionReport, RunStats, ShardStats};
pub use stall::{Admission, StallGate};
pub use types::{
    checksum, prefix_successor, Batch, EntryKind, OpRef, SegmentId, SeqNo, ShardId, ValuePointer,
    WalPos, VALUE_POINTER_BYTES,
};
pub use wal::{Appended, LoadedSegment, RecoveredRecord, Wal, WalStats};
