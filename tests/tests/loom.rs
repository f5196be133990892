//! loom tests of the compaction scheduler and the write-stall gate, through the engine's
//! `sync` facade. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p strata-tests --no-default-features --test loom`
//! (`--no-default-features` leaves out the layers above the engine, which loom does not need).
#![cfg(loom)]

use std::sync::{Arc as StdArc, Weak};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Mutex;
use strata_compactor::ThreadCompactor;
use strata_engine::{Admission, StallGate};
use strata_engine::{CompactionTarget, Compactor, Result, ShardId};

/// A target that records its jobs and checks that they never overlap.
#[derive(Default)]
struct Recorder {
    running: AtomicUsize,
    jobs: Mutex<Vec<ShardId>>,
}

impl CompactionTarget for Recorder {
    fn compact_shard(&self, shard: ShardId) -> Result<()> {
        assert_eq!(
            self.running.fetch_add(1, Ordering::SeqCst),
            0,
            "two compactions at once"
        );
        loom::thread::yield_now();
        self.jobs.lock().unwrap().push(shard);
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

fn start(recorder: &StdArc<Recorder>) -> ThreadCompactor {
    let target: StdArc<dyn CompactionTarget> = recorder.clone();
    let weak: Weak<dyn CompactionTarget> = StdArc::downgrade(&target);
    ThreadCompactor::start(weak)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn one_job_at_a_time_and_a_job_queued_during_a_run_is_not_lost() {
    model(|| {
        let recorder = StdArc::new(Recorder::default());
        let compactor = StdArc::new(start(&recorder));
        let c2 = compactor.clone();
        let t = loom::thread::spawn(move || usize::from(c2.enqueue(ShardId(1))));
        let mut queued = usize::from(compactor.enqueue(ShardId(1)));
        queued += usize::from(compactor.enqueue(ShardId(2)));
        queued += t.join().unwrap();
        compactor.wait_idle();
        let jobs = recorder.jobs.lock().unwrap().clone();
        // Every enqueue that queued a job got its own run; duplicates were merged.
        assert_eq!(jobs.len(), queued, "{jobs:?}");
        assert!(
            jobs.contains(&ShardId(1)) && jobs.contains(&ShardId(2)),
            "{jobs:?}"
        );
        compactor.shutdown();
    });
}

#[test]
fn a_shard_queued_twice_before_it_runs_is_one_job() {
    model(|| {
        let recorder = StdArc::new(Recorder::default());
        let compactor = start(&recorder);
        // Occupy the worker with shard 9 so that the two enqueues of shard 3 meet in the queue,
        // or see shard 3 run in between.
        compactor.enqueue(ShardId(9));
        let first = compactor.enqueue(ShardId(3));
        let second = compactor.enqueue(ShardId(3));
        compactor.wait_idle();
        let runs_of_3 = recorder
            .jobs
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s == ShardId(3))
            .count();
        assert!(first);
        assert_eq!(runs_of_3, 1 + usize::from(second));
        compactor.shutdown();
    });
}

#[test]
fn shutdown_with_queued_and_running_jobs_returns_and_leaves_nothing_running() {
    model(|| {
        let recorder = StdArc::new(Recorder::default());
        let compactor = start(&recorder);
        compactor.enqueue(ShardId(1));
        compactor.enqueue(ShardId(2));
        compactor.shutdown();
        assert_eq!(
            recorder.running.load(Ordering::SeqCst),
            0,
            "a job was still running after shutdown"
        );
        assert!(recorder.jobs.lock().unwrap().len() <= 2);
        assert!(!compactor.enqueue(ShardId(3)), "enqueue after shutdown");
        compactor.wait_idle(); // returns at once after shutdown
    });
}

#[test]
fn the_stall_gate_wakes_every_waiter() {
    model(|| {
        let gate = loom::sync::Arc::new(StallGate::new(5, 10));
        gate.add_debt(12);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let g = gate.clone();
                loom::thread::spawn(move || g.admit())
            })
            .collect();
        gate.remove_debt(8);
        for w in waiters {
            let a = w.join().unwrap();
            assert!(matches!(a, Admission::Waited | Admission::Free), "{a:?}");
        }
        assert_eq!(gate.waiters(), 0);
    });
}

#[test]
fn opening_the_stall_gate_releases_waiters() {
    model(|| {
        let gate = loom::sync::Arc::new(StallGate::new(5, 10));
        gate.add_debt(50);
        let g = gate.clone();
        let waiter = loom::thread::spawn(move || g.admit());
        gate.open();
        // It either waited and was released, or came after the gate opened; it always returns.
        let a = waiter.join().unwrap();
        assert!(matches!(a, Admission::Waited | Admission::Free), "{a:?}");
        assert_eq!(gate.debt(), 50, "opening drops nothing");
    });
}

#[test]
fn the_frozen_memtable_limit_stops_writers_and_compaction_releases_them() {
    model(|| {
        let gate = loom::sync::Arc::new(StallGate::new(1 << 40, 1 << 40).with_memtable_limit(10));
        gate.add(0, 12);
        let g = gate.clone();
        let waiter = loom::thread::spawn(move || g.admit());
        gate.remove(0, 5);
        // It waited and was released, or came after the removal (7 is over half: slowed).
        let a = waiter.join().unwrap();
        assert!(matches!(a, Admission::Waited | Admission::Slow), "{a:?}");
        assert_eq!(gate.memtable_bytes(), 7);
        assert_eq!(
            gate.admit(),
            Admission::Slow,
            "over half the limit: slowed, not stopped"
        );
    });
}
