//! The write-stall gate: WAL debt (bytes of frozen, uncompacted WAL, the whole database) against
//! two thresholds. Past `slowdown`, writers are delayed a little per write; past `stop`, they
//! wait until compaction brings the debt back down. Nothing is dropped or reordered: a writer
//! waits *before* its write. Built on the [`crate::sync`] facade so that loom can check that
//! every waiter wakes.

use crate::sync::{Condvar, Mutex};

/// Result of passing the gate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Debt under the slowdown threshold.
    Free,
    /// Debt between the thresholds: the caller should pause briefly.
    Slow,
    /// The caller waited for the debt to fall under the stop threshold.
    Waited,
}

#[derive(Debug)]
struct GateState {
    debt: u64,
    waiters: usize,
    open: bool,
}

/// The gate.
#[derive(Debug)]
pub struct StallGate {
    state: Mutex<GateState>,
    below_stop: Condvar,
    slowdown_bytes: u64,
    stop_bytes: u64,
}

impl StallGate {
    /// A gate with no debt. `stop_bytes` at or above `slowdown_bytes`.
    pub fn new(slowdown_bytes: u64, stop_bytes: u64) -> StallGate {
        StallGate {
            state: Mutex::new(GateState {
                debt: 0,
                waiters: 0,
                open: false,
            }),
            below_stop: Condvar::new(),
            slowdown_bytes,
            stop_bytes: stop_bytes.max(slowdown_bytes),
        }
    }

    /// Adds frozen WAL bytes.
    pub fn add_debt(&self, bytes: u64) {
        self.state.lock().debt += bytes;
    }

    /// Removes compacted (or abandoned) WAL bytes and wakes every waiter if the debt fell under
    /// the stop threshold.
    pub fn remove_debt(&self, bytes: u64) {
        let mut st = self.state.lock();
        st.debt = st.debt.saturating_sub(bytes);
        if st.debt < self.stop_bytes {
            self.below_stop.notify_all();
        }
    }

    /// Opens the gate for good (shutdown: nobody will compact any more): every waiter returns.
    pub fn open(&self) {
        self.state.lock().open = true;
        self.below_stop.notify_all();
    }

    /// Current debt.
    pub fn debt(&self) -> u64 {
        self.state.lock().debt
    }

    /// Writers waiting now.
    pub fn waiters(&self) -> usize {
        self.state.lock().waiters
    }

    /// Called before a write: returns at once under the stop threshold, otherwise blocks until
    /// the debt falls under it (or the gate is opened).
    pub fn admit(&self) -> Admission {
        let mut st = self.state.lock();
        if st.open || st.debt < self.slowdown_bytes {
            return Admission::Free;
        }
        if st.debt < self.stop_bytes {
            return Admission::Slow;
        }
        st.waiters += 1;
        while st.debt >= self.stop_bytes && !st.open {
            self.below_stop.wait(&mut st);
        }
        st.waiters -= 1;
        Admission::Waited
    }
}
