//! The compaction policy: a pure function from a shard's shape to a plan. No threads, no I/O;
//! the engine runs plans, the compactor decides when.
//!
//! Shape: the active WAL (bytes, entries), frozen WAL segments and runs, newest first. Rules:
//! - the active WAL rotates (is frozen and queued) once it passes `wal_rotate_bytes` or
//!   `wal_rotate_entries`;
//! - a plan merges the frozen segments, alone or, size-tiered, with a whole *tier*: the newest
//!   runs smaller than sqrt(`growth_factor`) (sqrt F) times the bytes gathered so far, once
//!   they and the gathered data make F pieces; the merged bytes then count as gathered against
//!   the next tier. Run sizes grow geometrically, like the bucket list's levels: each byte is rewritten
//!   about log_F(data / rotation) times, and a shard holds at most F - 1 runs per tier,
//!   about (F - 1) log_F(data / rotation) runs;
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
    /// Runs per merge and size ratio between tiers (at least 2): new data is merged with a
    /// tier once they make this many pieces.
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
    // Size tiers: new data is merged with the newest runs of about its size once that makes
    // `f` pieces; the merged run then counts as new data against the next tier. "About its
    // size" is under sqrt(f) times it: the geometric middle between two tiers, so that a run of
    // the next tier (f times the data) is not taken in when the data is a little larger.
    let f = o.growth_factor.max(2);
    let mut gathered: u64 = shape.frozen_bytes.iter().sum();
    let mut runs = 0;
    loop {
        let bound = u128::from(gathered) * u128::from(gathered) * u128::from(f);
        let tier = &shape.run_bytes[runs..];
        let len = tier
            .iter()
            .take_while(|&&run| u128::from(run) * u128::from(run) < bound)
            .count();
        if (len as u64) + 1 < f {
            break;
        }
        gathered += tier[..len].iter().sum::<u64>();
        runs += len;
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

    fn frozen_plan(frozen: Vec<u64>, runs: Vec<u64>) -> Plan {
        plan(
            &ShardShape {
                frozen_bytes: frozen,
                run_bytes: runs,
                ..Default::default()
            },
            &o(),
        )
        .expect("frozen data is always planned")
    }

    #[test]
    fn frozen_data_waits_for_a_full_tier() {
        // Fewer than F - 1 runs under 2x (sqrt 4) the new data: the data becomes a run of its
        // own.
        assert_eq!(frozen_plan(vec![100], vec![]).runs, 0);
        assert!(frozen_plan(vec![100], vec![]).includes_oldest);
        assert_eq!(frozen_plan(vec![100], vec![110, 120]).runs, 0);
        assert_eq!(frozen_plan(vec![100], vec![110, 120, 200]).runs, 0);
        // Three runs under 200 and the new data make four pieces: merged.
        let p = frozen_plan(vec![100], vec![110, 120, 199, 5_000]);
        assert_eq!((p.runs, p.includes_oldest), (3, false));
        // Several frozen segments gather together.
        assert_eq!(frozen_plan(vec![60, 40], vec![110, 120, 199]).runs, 3);
        // Twice the usual data does not pull in the next tier's runs (4x a flush each).
        assert_eq!(
            frozen_plan(vec![100, 100], vec![110, 110, 440, 440, 440]).runs,
            0
        );
    }

    #[test]
    fn a_merged_tier_cascades_into_the_next() {
        // 100 + 3 x 100 = 400 gathered; the next three runs are under 800: merged too.
        let p = frozen_plan(vec![100], vec![100, 100, 100, 400, 400, 400, 1_600]);
        assert_eq!((p.runs, p.includes_oldest), (6, false));
        // Two runs of the next tier: not full, the cascade stops after the first tier.
        assert_eq!(
            frozen_plan(vec![100], vec![100, 100, 100, 400, 400, 1_600]).runs,
            3
        );
    }

    #[test]
    fn steady_ingest_writes_each_byte_about_log_f_times() {
        // Simulate 1,000 rotations of 100 bytes each with the policy's plans.
        let mut runs: Vec<u64> = Vec::new();
        let mut written = 0u64;
        let mut most_runs = 0;
        for _ in 0..1_000 {
            let p = frozen_plan(vec![100], runs.clone());
            let merged: u64 = 100 + runs[..p.runs].iter().sum::<u64>();
            written += merged;
            runs.drain(..p.runs);
            runs.insert(0, merged);
            most_runs = most_runs.max(runs.len());
        }
        // log_4(1,000) < 5 tiers of at most 3 runs; each byte written once per tier it
        // passes, plus its first run.
        assert!(most_runs <= 15, "{most_runs} runs: {runs:?}");
        let amplification = written as f64 / 100_000.0;
        assert!(amplification <= 6.0, "write amplification {amplification}");
        // Sizes fall from the oldest run to the newest.
        assert!(runs.windows(2).all(|w| w[0] <= w[1]), "{runs:?}");
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
