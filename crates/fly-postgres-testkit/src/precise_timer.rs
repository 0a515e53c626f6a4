//! Sleeps that end within tens of microseconds of their deadline.
//!
//! tokio's timer ticks in whole milliseconds, which would add up to 1 ms to
//! every hop of the latency proxy and blur what the benchmarks measure;
//! spinning until the deadline instead steals the CPU from the very tasks
//! being measured on a 2-core machine. One OS thread parks until the next
//! deadline (the kernel's high-resolution timers) and wakes the task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

struct Entry {
    due: Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
}

#[derive(Default)]
struct Timer {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

fn timer() -> Option<&'static Arc<Timer>> {
    static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let timer = Arc::new(Timer::default());
            let worker = Arc::clone(&timer);
            std::thread::Builder::new()
                .name("testkit-precise-timer".into())
                .spawn(move || run(&worker))
                .ok()
                .map(|_| timer)
        })
        .as_ref()
}

/// Parking wakes up to a few hundred microseconds late on a VM; the last
/// stretch before a deadline is spun on this thread instead.
const SPIN: Duration = Duration::from_micros(400);

fn run(timer: &Timer) {
    loop {
        let mut queue = timer.queue.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let next = queue.peek().map(|Reverse(entry)| entry.due);
        match next {
            None => {
                drop(timer.changed.wait(queue).unwrap_or_else(|p| p.into_inner()));
            }
            Some(due) if due <= now => {
                if let Some(Reverse(entry)) = queue.pop() {
                    let _ = entry.wake.send(());
                }
            }
            Some(due) if due - now > SPIN => {
                drop(
                    timer
                        .changed
                        .wait_timeout(queue, due - now - SPIN)
                        .unwrap_or_else(|p| p.into_inner()),
                );
            }
            Some(due) => {
                drop(queue);
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// Waits until `due`, precisely; falls back to tokio's timer if the timer
/// thread could not be started.
pub(crate) async fn sleep_until(due: Instant) {
    if due <= Instant::now() {
        return;
    }
    let Some(timer) = timer() else {
        tokio::time::sleep_until(due.into()).await;
        return;
    };
    let (wake, woken) = oneshot::channel();
    {
        let mut queue = timer.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push(Reverse(Entry { due, wake }));
    }
    timer.changed.notify_one();
    let _ = woken.await;
}
