//! Engine events: everything worth seeing from outside (rotations, compactions, repairs,
//! background errors), delivered to an [`EventSink`] chosen in the options.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::{SegmentId, ShardId};

/// One engine event.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum Event {
    /// A shard's WAL moved to a new segment; the old one is frozen and waits for compaction.
    WalRotated {
        /// The shard.
        shard: ShardId,
        /// The segment new writes go to.
        new_segment: SegmentId,
    },
    /// Recovery cut a torn or damaged tail off the newest WAL segment.
    WalTailTruncated {
        /// The segment file.
        file: PathBuf,
        /// Its length after truncation (the end of the last whole record or batch).
        offset: u64,
        /// Bytes removed.
        dropped_bytes: u64,
    },
    /// A shard was queued for compaction.
    CompactionQueued {
        /// The shard.
        shard: ShardId,
    },
    /// A compaction started.
    CompactionStart {
        /// The shard.
        shard: ShardId,
        /// Frozen WAL segments merged.
        wal_segments: usize,
        /// Runs merged.
        runs: usize,
        /// Bytes of input (WAL segments and runs).
        bytes_in: u64,
    },
    /// A compaction finished and its run is installed.
    CompactionEnd {
        /// The shard.
        shard: ShardId,
        /// Bytes of input.
        bytes_in: u64,
        /// Bytes of the new run (0 when every entry was deleted).
        bytes_out: u64,
        /// Entries written.
        entries_out: u64,
        /// Wall time.
        duration: Duration,
    },
    /// A shard was sealed: compacted whole, its digest recorded, writes refused.
    ShardSealed {
        /// The shard.
        shard: ShardId,
        /// Live records the seal covers.
        entries: u64,
    },
    /// A compaction failed; the shard refuses writes until reopened.
    CompactionFailed {
        /// The shard.
        shard: ShardId,
        /// The error, rendered.
        error: String,
    },
    /// Writers are being slowed or stopped because compaction is behind.
    WriteStallStart {
        /// The shard.
        shard: ShardId,
        /// Frozen, uncompacted WAL bytes.
        wal_debt_bytes: u64,
    },
    /// The stall ended.
    WriteStallEnd {
        /// The shard.
        shard: ShardId,
        /// How long writers waited.
        duration: Duration,
    },
    /// A file that belongs to no live state (a temporary file, an obsolete run or segment) was
    /// removed at open.
    StrayFileRemoved {
        /// The file.
        file: PathBuf,
    },
    /// A run's index file could not be used (missing, damaged, another version or page size)
    /// and was rebuilt from the run.
    IndexRebuilt {
        /// The index file.
        file: PathBuf,
        /// Why the old one was refused.
        reason: String,
    },
    /// A background operation failed.
    BackgroundError {
        /// What failed, rendered.
        error: String,
    },
}

impl Event {
    /// A short snake_case name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Event::WalRotated { .. } => "wal_rotated",
            Event::WalTailTruncated { .. } => "wal_tail_truncated",
            Event::CompactionQueued { .. } => "compaction_queued",
            Event::CompactionStart { .. } => "compaction_start",
            Event::CompactionEnd { .. } => "compaction_end",
            Event::CompactionFailed { .. } => "compaction_failed",
            Event::ShardSealed { .. } => "shard_sealed",
            Event::WriteStallStart { .. } => "write_stall_start",
            Event::WriteStallEnd { .. } => "write_stall_end",
            Event::StrayFileRemoved { .. } => "stray_file_removed",
            Event::IndexRebuilt { .. } => "index_rebuilt",
            Event::BackgroundError { .. } => "background_error",
        }
    }
}

/// Receives engine events. Called on the thread that caused the event; must not block for long
/// and must not call back into the database.
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &Event);
}

/// A sink that drops every event (the default).
#[derive(Debug, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: &Event) {}
}

/// A sink that keeps every event in memory, for tests and short tools.
#[derive(Debug, Default)]
pub struct EventLog {
    events: parking_lot::Mutex<Vec<Event>>,
}

impl EventLog {
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }
}

impl EventSink for EventLog {
    fn event(&self, event: &Event) {
        self.events.lock().push(event.clone());
    }
}
