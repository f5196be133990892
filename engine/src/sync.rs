//! The synchronization facade: parking_lot and std in normal builds, loom's models under
//! `cfg(loom)`, behind one API. Scheduling code (the compactor's queue and worker, the write-stall
//! gate) takes its locks, condition variables, atomics and threads from here, so that loom tests
//! can explore its schedules (parking_lot and crossbeam hang inside `loom::model`). The data path
//! (memtables, shards, scans) does file I/O that loom cannot model and uses parking_lot directly.

#[cfg(not(loom))]
mod imp {
    pub use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
    pub use std::sync::atomic;
    pub use std::sync::{Arc, Weak};
    pub use std::thread;
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::atomic;
    pub use loom::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};
    pub use loom::thread;
    pub use std::sync::Weak;

    /// A mutex with parking_lot's API over loom's.
    #[derive(Debug, Default)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    /// Guard of [`Mutex`].
    pub struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        /// A new mutex.
        pub fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }
        /// Locks, blocking.
        pub fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
    }

    impl<T> std::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }
    impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    /// A reader-writer lock with parking_lot's API over loom's.
    #[derive(Debug, Default)]
    pub struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        /// A new lock.
        pub fn new(value: T) -> Self {
            RwLock(loom::sync::RwLock::new(value))
        }
        /// Shared access, blocking.
        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap()
        }
        /// Exclusive access, blocking.
        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap()
        }
    }

    /// A condition variable with parking_lot's API over loom's.
    #[derive(Debug, Default)]
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        /// A new condition variable.
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        /// Waits, releasing the guard's lock meanwhile.
        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(inner).unwrap());
        }
        /// Wakes every waiter.
        pub fn notify_all(&self) -> usize {
            self.0.notify_all();
            0
        }
        /// Wakes one waiter.
        pub fn notify_one(&self) -> bool {
            self.0.notify_one();
            false
        }
    }
}

pub use imp::*;
