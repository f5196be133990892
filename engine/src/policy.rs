//! The compaction policy: a pure function from a shard's shape to a plan. No threads, no I/O;
//! the engine runs plans, the compactor decides when.
//!
//! Shape: the active WAL (bytes, entries), frozen WAL segments and runs, newest first. Rules:
//! - the active WAL rotates (is frozen and queued) once it passes `wal_rotate_bytes` or
//!   `wal_rotate_entries`;
//! - a plan merges every frozen segment with the newest runs while the bytes gathered so far,
//!   times `growth_factor`, reach the next run's size: new data is folded into runs at most
//!   `growth_factor` times its size, so run sizes grow geometrically, like the bucket list's
//!   levels, and a shard holds about log_growth(data / wal_rotate_bytes) runs;
//! - a *complete* shard (a range shard that holds a key for every number of its range) is
//!   merged whole, active WAL included, into a single run;
//! - with nothing frozen, a shard whose value file is over the garbage ratio merges every run.

/// Thresholds of the policy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PolicyOptions {
    /// Rotate the active WAL once it holds this many bytes of keys and values.
    pub wal_rotate_bytes: u64,
    /// Rotate the active WAL once it holds this many entries (bounds memtable memory).
    pub wal_rotate_entries: u64,
    /// Size ratio between a run and the data merged into it (at least 2).
    pub growth_factor: u64,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            wal_rotate_bytes: crate::limits::DEFAULT_WAL_ROTATE_BYTES,
            wal_rotate_entries: crate::limits::DEFAULT_WAL_ROTATE_ENTRIES,
            growth_factor: crate::limits::DEFAULT_GROWTH_FACTOR,
        }
    }
}

/// What the policy sees of a shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardShape {
    /// Bytes of keys and values in the active WAL.
    pub active_bytes: u64,
    /// Entries in the active WAL.
    pub active_entries: u64,
    /// Bytes of each frozen WAL segment, newest first.
    pub frozen_bytes: Vec<u64>,
    /// Bytes of each run, newest first.
    pub run_bytes: Vec<u64>,
    /// The shard holds every key it will hold: merge it whole.
    pub complete: bool,
    /// A value file's garbage is over the collection ratio: merge every run (which copies
    /// the file's live values out of it, so that it can be deleted).
    pub value_garbage: bool,
}

/// What one compaction does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Freeze the active WAL first and include it.
    pub freeze_active: bool,
    /// Merge this many of the newest runs (all frozen segments are always merged).
    pub runs: usize,
    /// The plan includes the oldest run: no older data can hide under a tombstone, so
    /// tombstones are dropped.
    pub includes_oldest: bool,
}

/// Whether the active WAL should rotate now.
pub fn should_rotate(shape: &ShardShape, o: &PolicyOptions) -> bool {
    shape.active_entries > 0
        && (shape.active_bytes >= o.wal_rotate_bytes
            || shape.active_entries >= o.wal_rotate_entries)
}

/// The next compaction of a shard, or `None` when there is nothing worth doing.
pub fn plan(shape: &ShardShape, o: &PolicyOptions) -> Option<Plan> {
    if shape.complete {
        let pending = shape.active_entries > 0
            || !shape.frozen_bytes.is_empty()
            || shape.run_bytes.len() > 1
            || (shape.value_garbage && !shape.run_bytes.is_empty());
        return pending.then_some(Plan {
            freeze_active: true,
            runs: shape.run_bytes.len(),
            includes_oldest: true,
        });
    }
    if shape.frozen_bytes.is_empty() {
        return (shape.value_garbage && !shape.run_bytes.is_empty()).then_some(Plan {
            freeze_active: false,
            runs: shape.run_bytes.len(),
            includes_oldest: true,
        });
    }
    let mut gathered: u64 = shape.frozen_bytes.iter().sum();
    let mut runs = 0;
    for &run in &shape.run_bytes {
        if gathered.saturating_mul(o.growth_factor.max(2)) < run {
            break;
        }
        gathered += run;
        runs += 1;
    }
    Some(Plan {
        freeze_active: false,
        runs,
        includes_oldest: runs == shape.run_bytes.len(),
    })
}

/// The plan of a manual, whole-shard compaction.
pub fn full(shape: &ShardShape) -> Option<Plan> {
    plan(
        &ShardShape {
            complete: true,
            ..shape.clone()
        },
        &PolicyOptions::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> PolicyOptions {
        PolicyOptions {
            wal_rotate_bytes: 100,
            wal_rotate_entries: 10,
            growth_factor: 4,
        }
    }

    #[test]
    fn rotation_at_either_threshold() {
        let mut s = ShardShape::default();
        assert!(!should_rotate(&s, &o()));
        s.active_entries = 9;
        s.active_bytes = 99;
        assert!(!should_rotate(&s, &o()));
        s.active_bytes = 100;
        assert!(should_rotate(&s, &o()));
        s.active_bytes = 1;
        s.active_entries = 10;
        assert!(should_rotate(&s, &o()));
    }

    #[test]
    fn nothing_frozen_nothing_to_do_unless_complete() {
        let s = ShardShape {
            active_bytes: 50,
            active_entries: 3,
            run_bytes: vec![10, 20],
            ..Default::default()
        };
        assert_eq!(plan(&s, &o()), None);
        let c = ShardShape {
            complete: true,
            ..s
        };
        assert_eq!(
            plan(&c, &o()),
            Some(Plan {
                freeze_active: true,
                runs: 2,
                includes_oldest: true
            })
        );
        // A complete shard already in one run with an empty WAL is done.
        let done = ShardShape {
            complete: true,
            run_bytes: vec![500],
            ..Default::default()
        };
        assert_eq!(plan(&done, &o()), None);
    }

    #[test]
    fn frozen_data_folds_into_runs_up_to_the_growth_factor() {
        // 100 frozen bytes: runs up to 400 are merged, and what is gathered grows.
        let s = ShardShape {
            frozen_bytes: vec![100],
            run_bytes: vec![300, 1_500, 100_000],
            ..Default::default()
        };
        assert_eq!(
            plan(&s, &o()),
            Some(Plan {
                freeze_active: false,
                runs: 2,
                includes_oldest: false
            })
        );
        let s = ShardShape {
            frozen_bytes: vec![100],
            run_bytes: vec![401],
            ..Default::default()
        };
        assert_eq!(
            plan(&s, &o()),
            Some(Plan {
                freeze_active: false,
                runs: 0,
                includes_oldest: false
            })
        );
        let s = ShardShape {
            frozen_bytes: vec![60, 40],
            run_bytes: vec![400],
            ..Default::default()
        };
        assert_eq!(
            plan(&s, &o()),
            Some(Plan {
                freeze_active: false,
                runs: 1,
                includes_oldest: true
            })
        );
        let s = ShardShape {
            frozen_bytes: vec![100],
            ..Default::default()
        };
        assert_eq!(
            plan(&s, &o()),
            Some(Plan {
                freeze_active: false,
                runs: 0,
                includes_oldest: true
            })
        );
    }

    #[test]
    fn steady_ingest_keeps_few_runs() {
        // Simulate 1,000 rotations of 100 bytes each with the policy's plans.
        let mut runs: Vec<u64> = Vec::new();
        let mut written = 0u64;
        for _ in 0..1_000 {
            let s = ShardShape {
                frozen_bytes: vec![100],
                run_bytes: runs.clone(),
                ..Default::default()
            };
            let p = plan(&s, &o()).unwrap();
            let merged: u64 = 100 + runs[..p.runs].iter().sum::<u64>();
            written += merged;
            runs.drain(..p.runs);
            runs.insert(0, merged);
        }
        assert!(runs.len() <= 8, "{} runs: {runs:?}", runs.len());
        let amplification = written as f64 / 100_000.0;
        assert!(amplification < 12.0, "write amplification {amplification}");
    }

    #[test]
    fn manual_compaction_merges_everything() {
        let s = ShardShape {
            active_entries: 1,
            active_bytes: 1,
            frozen_bytes: vec![5],
            run_bytes: vec![1, 2, 3],
            complete: false,
            value_garbage: false,
        };
        assert_eq!(
            full(&s),
            Some(Plan {
                freeze_active: true,
                runs: 3,
                includes_oldest: true
            })
        );
        assert_eq!(full(&ShardShape::default()), None);
    }
}
