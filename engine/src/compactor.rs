//! The `Compactor` trait: who decides *when* a shard is compacted. The engine knows *how*
//! ([`CompactionTarget`]); a compactor only schedules.

use crate::error::Result;
use crate::types::ShardId;

/// What a compactor drives: the engine, seen as "compact this shard now".
pub trait CompactionTarget: Send + Sync {
    /// Compacts one shard synchronously. Blocks for the whole compaction. An error leaves the
    /// shard refusing writes until the database is reopened.
    fn compact_shard(&self, shard: ShardId) -> Result<()>;
}

/// Schedules compactions. Implementations must run at most one compaction at a time in the
/// whole database and must never drop a queued shard except at shutdown, where the work stays
/// on disk and is redone after reopen.
pub trait Compactor: Send + Sync {
    /// Queues `shard`. Returns at once; never blocks on a running compaction. A shard already
    /// queued stays queued once. Returns whether it was newly queued (false when already queued
    /// or shut down).
    fn enqueue(&self, shard: ShardId) -> bool;

    /// Blocks until nothing is queued or running (or the compactor is shut down).
    fn wait_idle(&self);

    /// Lets a running compaction finish, abandons queued ones, and joins any worker. Idempotent.
    fn shutdown(&self);
}
