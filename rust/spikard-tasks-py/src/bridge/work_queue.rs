//! The queue that feeds the Python threads: a mutex-guarded deque and a condition
//! variable.
//!
//! Channels built for many cores (crossbeam's, std's) spin and `sched_yield` before a
//! receiver parks. With one Python thread per concurrency slot, most of them idle, on a
//! machine with few cores, that spinning showed up as a fifth of the worker's CPU time.
//! Here an idle thread parks at once, and a push wakes a thread only when one waits.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

struct State<T> {
    items: VecDeque<T>,
    /// Threads parked in [`WorkQueue::recv`].
    waiting: usize,
    closed: bool,
}

/// A multi-producer, multi-consumer FIFO queue with blocking receives.
pub(crate) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                waiting: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic never happens while the lock is held; recover the data regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; false (dropping it) once the queue is closed.
    pub(crate) fn send(&self, item: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.items.push_back(item);
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    pub(crate) fn recv(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state.waiting += 1;
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// Refuses further items and wakes every waiting thread; queued items are still
    /// handed out.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::WorkQueue;

    #[test]
    fn items_reach_waiting_threads_in_order_and_close_ends_them() {
        let queue = Arc::new(WorkQueue::new());
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = queue.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(i) = q.recv() {
                        got.push(i);
                    }
                    got
                })
            })
            .collect();
        for i in 0..1000 {
            assert!(queue.send(i));
        }
        queue.close();
        assert!(!queue.send(1000), "a closed queue refuses items");
        let mut all: Vec<i32> = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "each thread sees FIFO order"
            );
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(queue.try_recv(), None);
    }
}
