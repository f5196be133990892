//! The synchronization facade: parking_lot, crossbeam-channel and std in normal builds, loom's models under
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

    /// An unbounded multi-producer channel: crossbeam-channel.
    pub mod channel {
        pub use crossbeam_channel::{Receiver, Sender};

        /// A new channel.
        pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
            crossbeam_channel::unbounded()
        }
    }
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

    /// An unbounded channel with crossbeam's API (the part strata uses), on loom's mutex and
    /// condition variable.
    pub mod channel {
        use std::collections::VecDeque;

        struct Shared<T> {
            queue: loom::sync::Mutex<(VecDeque<T>, usize)>,
            ready: loom::sync::Condvar,
        }

        /// Sending half.
        pub struct Sender<T>(loom::sync::Arc<Shared<T>>);
        /// Receiving half.
        pub struct Receiver<T>(loom::sync::Arc<Shared<T>>);

        /// A new channel.
        pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
            let shared = loom::sync::Arc::new(Shared {
                queue: loom::sync::Mutex::new((VecDeque::new(), 1)),
                ready: loom::sync::Condvar::new(),
            });
            (Sender(shared.clone()), Receiver(shared))
        }

        impl<T> Sender<T> {
            /// Queues `value`; never blocks.
            pub fn send(&self, value: T) -> Result<(), T> {
                self.0.queue.lock().unwrap().0.push_back(value);
                self.0.ready.notify_one();
                Ok(())
            }
        }

        impl<T> Clone for Sender<T> {
            fn clone(&self) -> Self {
                self.0.queue.lock().unwrap().1 += 1;
                Sender(self.0.clone())
            }
        }

        impl<T> Drop for Sender<T> {
            fn drop(&mut self) {
                self.0.queue.lock().unwrap().1 -= 1;
                self.0.ready.notify_all();
            }
        }

        /// The channel is empty and every sender is gone.
        #[derive(Debug)]
        pub struct RecvError;

        impl<T> Receiver<T> {
            /// The next value, blocking; `Err` once empty with no sender left.
            pub fn recv(&self) -> Result<T, RecvError> {
                let mut q = self.0.queue.lock().unwrap();
                loop {
                    if let Some(v) = q.0.pop_front() {
                        return Ok(v);
                    }
                    if q.1 == 0 {
                        return Err(RecvError);
                    }
                    q = self.0.ready.wait(q).unwrap();
                }
            }
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
