//! `ThreadCompactor`: the scheduler. A queue (crossbeam-channel) and one worker thread, so at
//! most one compaction runs at a time in the whole database.
//!
//! - A shard queued twice is one job: a set of queued shards guards the channel, so the queue
//!   holds each shard at most once (its length is bounded by the number of shards).
//! - A shard queued while it is being compacted is queued again and compacted again after.
//! - `shutdown` lets the running job finish, abandons the queued ones (their work stays on disk
//!   as frozen WAL segments, redone after reopen) and joins the worker.
//! - Errors are the target's to report (event, poisoned shard); the worker moves on.
//!
//! Locks, condition variable, channel and thread come from the engine's `sync` facade, so the
//! loom tests in `tests/` explore this code's schedules.

use std::collections::BTreeSet;
use std::sync::Weak;

use strata_engine::sync::channel::{unbounded, Receiver, Sender};
use strata_engine::sync::{thread, Arc, Condvar, Mutex};
use strata_engine::{CompactionTarget, Compactor, ShardId};

#[derive(Debug, Default)]
struct State {
    /// Shards in the channel, not yet taken by the worker.
    queued: BTreeSet<ShardId>,
    /// The shard being compacted.
    running: Option<ShardId>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    tx: Mutex<Option<Sender<ShardId>>>,
}

/// The compaction scheduler.
pub struct ThreadCompactor {
    shared: Arc<Shared>,
    worker: Mutex<Option<thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for ThreadCompactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadCompactor")
            .field("state", &*self.shared.state.lock())
            .finish()
    }
}

impl ThreadCompactor {
    /// Starts the worker, which compacts through `target` until shutdown or until the target
    /// is gone.
    pub fn start(target: Weak<dyn CompactionTarget>) -> ThreadCompactor {
        let (tx, rx) = unbounded();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            tx: Mutex::new(Some(tx)),
        });
        let worker_shared = shared.clone();
        let worker = thread::spawn(move || worker_loop(&worker_shared, &rx, &target));
        ThreadCompactor {
            shared,
            worker: Mutex::new(Some(worker)),
        }
    }
}

fn worker_loop(shared: &Shared, rx: &Receiver<ShardId>, target: &Weak<dyn CompactionTarget>) {
    while let Ok(shard) = rx.recv() {
        {
            let mut st = shared.state.lock();
            if st.shutdown {
                break;
            }
            st.queued.remove(&shard);
            debug_assert!(st.running.is_none(), "two compactions at once");
            st.running = Some(shard);
        }
        let alive = match target.upgrade() {
            Some(t) => {
                // Failures are reported by the target (event, poisoned shard).
                let _ = t.compact_shard(shard);
                true
            }
            None => false,
        };
        let mut st = shared.state.lock();
        st.running = None;
        shared.changed.notify_all();
        if !alive {
            break;
        }
    }
    let mut st = shared.state.lock();
    st.running = None;
    st.shutdown = true;
    shared.changed.notify_all();
}

impl Compactor for ThreadCompactor {
    fn enqueue(&self, shard: ShardId) -> bool {
        let mut st = self.shared.state.lock();
        if st.shutdown || !st.queued.insert(shard) {
            return false;
        }
        // Sent under the state lock, so the set and the channel agree.
        if let Some(tx) = &*self.shared.tx.lock() {
            let _ = tx.send(shard);
        }
        true
    }

    fn wait_idle(&self) {
        let mut st = self.shared.state.lock();
        while !st.shutdown && (st.running.is_some() || !st.queued.is_empty()) {
            self.shared.changed.wait(&mut st);
        }
    }

    fn shutdown(&self) {
        {
            let mut st = self.shared.state.lock();
            st.shutdown = true;
            self.shared.changed.notify_all();
        }
        // Closing the channel wakes an idle worker; a busy one finishes its job first.
        drop(self.shared.tx.lock().take());
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }
}

impl Drop for ThreadCompactor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
