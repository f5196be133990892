//! The write-stall gate: WAL debt (bytes of frozen, uncompacted WAL, the whole database) against
//! two thresholds, and the memory of the frozen memtables against a third. Past `slowdown` (or
//! half the memtable limit), writers are delayed a little per write; past `stop` (or the memtable
//! limit), they wait until compaction brings the debt back down. Nothing is dropped or reordered: a writer
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
    memtable_bytes: u64,
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
    memtable_stop_bytes: u64,
}

impl StallGate {
    /// A gate with no debt. `stop_bytes` at or above `slowdown_bytes`.
    pub fn new(slowdown_bytes: u64, stop_bytes: u64) -> StallGate {
        StallGate {
            state: Mutex::new(GateState {
                debt: 0,
                memtable_bytes: 0,
                waiters: 0,
                open: false,
            }),
            below_stop: Condvar::new(),
            slowdown_bytes,
            stop_bytes: stop_bytes.max(slowdown_bytes),
            memtable_stop_bytes: u64::MAX,
        }
    }

    /// Also stop writers while frozen memtables hold `bytes` or more (slow them from half).
    pub fn with_memtable_limit(mut self, bytes: u64) -> StallGate {
        self.memtable_stop_bytes = bytes.max(1);
        self
    }

    /// Adds a frozen memtable: its WAL bytes and its memory.
    pub fn add(&self, wal_bytes: u64, memtable_bytes: u64) {
        let mut st = self.state.lock();
        st.debt += wal_bytes;
        st.memtable_bytes += memtable_bytes;
    }

    /// Removes compacted (or abandoned) frozen memtables and wakes every waiter once both
    /// figures are under their stops.
    pub fn remove(&self, wal_bytes: u64, memtable_bytes: u64) {
        let mut st = self.state.lock();
        st.debt = st.debt.saturating_sub(wal_bytes);
        st.memtable_bytes = st.memtable_bytes.saturating_sub(memtable_bytes);
        if !self.must_wait(&st) {
            self.below_stop.notify_all();
        }
    }

    fn must_wait(&self, st: &GateState) -> bool {
        st.debt >= self.stop_bytes || st.memtable_bytes >= self.memtable_stop_bytes
    }

    /// Whether a writer arriving now would wait.
    pub fn would_wait(&self) -> bool {
        let st = self.state.lock();
        !st.open && self.must_wait(&st)
    }

    /// Memory of the frozen memtables counted now.
    pub fn memtable_bytes(&self) -> u64 {
        self.state.lock().memtable_bytes
    }

    /// Adds frozen WAL bytes.
    pub fn add_debt(&self, bytes: u64) {
        self.add(bytes, 0);
    }

    /// Removes compacted (or abandoned) WAL bytes and wakes every waiter if the debt fell under
    /// the stop threshold.
    pub fn remove_debt(&self, bytes: u64) {
        self.remove(bytes, 0);
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
        if st.open
            || (st.debt < self.slowdown_bytes && st.memtable_bytes < self.memtable_stop_bytes / 2)
        {
            return Admission::Free;
        }
        if !self.must_wait(&st) {
            return Admission::Slow;
        }
        st.waiters += 1;
        while self.must_wait(&st) && !st.open {
            self.below_stop.wait(&mut st);
        }
        st.waiters -= 1;
        Admission::Waited
    }
}
