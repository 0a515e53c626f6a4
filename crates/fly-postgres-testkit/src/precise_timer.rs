//! Sleeps that end within tens of microseconds of their deadline.
//!
//! tokio's timer ticks in whole milliseconds, which would add up to 1 ms to
//! every hop of the latency proxy and blur what the benchmarks measure;
//! spinning until the deadline instead steals the CPU from the very tasks
//! being measured on a 2-core machine. One OS thread parks until the next
//! deadline (the kernel's high-resolution timers, with no timer slack) and
//! wakes the task; the proxy reports how late that is
//! ([`crate::LatencyProxy::lateness`]).

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

/// Parking wakes up ~0.1-0.3 ms late on a VM, so the last stretch before a
/// deadline is spun on this thread instead...
const SPIN: Duration = Duration::from_micros(400);
/// ...but only within a CPU budget: a share of wall time (refilled as time
/// passes, capped at a burst). Sequential latency runs stay precise; under
/// thousands of deadlines a second (throughput runs) the budget runs out
/// and the thread parks, so the harness cannot eat the core the measured
/// processes need.
const SPIN_SHARE: f64 = 0.05;
const SPIN_BURST: Duration = Duration::from_millis(20);

/// The spin budget: a token bucket of CPU time.
struct SpinBudget {
    tokens: Duration,
    refilled: Instant,
}

impl SpinBudget {
    fn new() -> Self {
        SpinBudget {
            tokens: SPIN_BURST,
            refilled: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.refilled).mul_f64(SPIN_SHARE);
        self.tokens = (self.tokens + earned).min(SPIN_BURST);
        self.refilled = now;
    }

    fn spend(&mut self, spun: Duration) {
        self.tokens = self.tokens.saturating_sub(spun);
    }
}

fn run(timer: &Timer) {
    // The default slack lets the kernel defer a wake-up by 50 µs to batch
    // it with others; this thread wants its deadlines to the microsecond.
    let _ = nix::sys::prctl::set_timerslack(1);
    let mut budget = SpinBudget::new();
    loop {
        let mut queue = timer.queue.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        budget.refill(now);
        let next = queue.peek().map(|Reverse(entry)| entry.due);
        let spin = if budget.tokens >= SPIN {
            SPIN
        } else {
            Duration::ZERO
        };
        match next {
            None => {
                drop(timer.changed.wait(queue).unwrap_or_else(|p| p.into_inner()));
            }
            Some(due) if due <= now => {
                // Everything due now, in one go: each wake-up is costly.
                while let Some(Reverse(entry)) = queue.peek()
                    && entry.due <= now
                {
                    if let Some(Reverse(entry)) = queue.pop() {
                        let _ = entry.wake.send(());
                    }
                }
            }
            Some(due) if due - now > spin => {
                drop(
                    timer
                        .changed
                        .wait_timeout(queue, due - now - spin)
                        .unwrap_or_else(|p| p.into_inner()),
                );
            }
            Some(due) => {
                drop(queue);
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
                budget.spend(now.elapsed());
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
