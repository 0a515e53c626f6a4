//! The writes of this process that kept no request record (a generated id
//! in the primary region), by id, until their caller took the outcome: a
//! caller that dropped its future, or was told "maybe committed", settles
//! the write by its id here.
//!
//! The outcome waits in its slot as the write left it (no copy, no JSON)
//! and the caller takes it out; only an outcome nobody took, or one a retry
//! asked for, is turned into JSON ([`Final`]) and kept for the repo's
//! `generated_id_retention`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::xact_probe::XactRef;
use crate::wal_position::WalPosition;

/// Most outcomes kept for retries at once; past it the oldest kept ones
/// go first (writes still running are never dropped).
const MAX_KEPT: usize = 100_000;

/// A kept outcome, as a retry with the id is answered.
#[derive(Debug, Clone)]
pub(crate) enum Final {
    /// Committed with this output (JSON).
    Committed {
        output: String,
        position: Option<WalPosition>,
    },
    /// Did not commit: a retry runs the write.
    NotCommitted,
    /// COMMIT's answer was lost and the outcome is not settled yet.
    Unsettled {
        xact: XactRef,
        pid: i32,
        output: String,
    },
    /// Nothing can tell (the write's task ended abnormally).
    Unknown(String),
}

/// What a slot holds.
enum Held {
    Running,
    /// The write's own outcome, typed, for its caller to take.
    Typed(Box<dyn Any + Send>),
    Kept(Final),
}

/// One write's slot.
pub(crate) struct Slot {
    held: Mutex<Held>,
    done: watch::Sender<bool>,
    /// A retry found it (set under the table's lock).
    looked: AtomicBool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the write ended.
    pub(crate) async fn ended(&self) {
        let mut done = self.done.subscribe();
        // The sender lives in this slot, so the channel never closes.
        let _ = done.wait_for(|done| *done).await;
    }

    /// The kept outcome, turning a typed one nobody took into JSON with
    /// `keep`; `None` while running.
    pub(crate) fn kept<T: Any + Send>(&self, keep: impl FnOnce(&T) -> Final) -> Option<Final> {
        let mut held = self.lock();
        match &*held {
            Held::Running => None,
            Held::Kept(kept) => Some(kept.clone()),
            Held::Typed(typed) => {
                let kept = match typed.downcast_ref::<T>() {
                    Some(typed) => keep(typed),
                    None => Final::Unknown("the id belongs to a write of another type".into()),
                };
                *held = Held::Kept(kept.clone());
                Some(kept)
            }
        }
    }

    /// Replaces the kept outcome (a retry settled it).
    pub(crate) fn settle(&self, kept: Final) {
        *self.lock() = Held::Kept(kept);
    }
}

struct Entry {
    mutation: &'static str,
    args: Arc<str>,
    started: Instant,
    slot: Arc<Slot>,
}

/// The table.
pub(crate) struct Unrecorded {
    entries: Mutex<HashMap<String, Entry>>,
    retention: Duration,
    registered: AtomicUsize,
}

/// A registered write's handle: its task ends it, its caller takes the
/// outcome through it.
#[derive(Clone)]
pub(crate) struct Ticket {
    slot: Arc<Slot>,
}

/// What [`Unrecorded::find`] gives a retry.
pub(crate) struct Found {
    pub(crate) mutation: &'static str,
    pub(crate) args: Arc<str>,
    pub(crate) slot: Arc<Slot>,
}

impl Unrecorded {
    pub(crate) fn new(retention: Duration) -> Self {
        Unrecorded {
            entries: Mutex::new(HashMap::new()),
            retention,
            registered: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a write about to run under the generated `id`.
    pub(crate) fn register(&self, id: &str, mutation: &'static str, args: &str) -> Ticket {
        let slot = Arc::new(Slot {
            held: Mutex::new(Held::Running),
            done: watch::Sender::new(false),
            looked: AtomicBool::new(false),
        });
        let mut entries = self.lock();
        // Now and then, and whenever full: outcomes nobody took expire.
        let registered = self.registered.fetch_add(1, Ordering::Relaxed);
        if entries.len() >= MAX_KEPT || (registered.is_multiple_of(4096) && !entries.is_empty()) {
            self.prune(&mut entries);
        }
        entries.insert(
            id.to_owned(),
            Entry {
                mutation,
                args: Arc::from(args),
                started: Instant::now(),
                slot: Arc::clone(&slot),
            },
        );
        Ticket { slot }
    }

    /// Drops kept outcomes past their retention, then the oldest kept ones
    /// while the table is full.
    fn prune(&self, entries: &mut HashMap<String, Entry>) {
        let running = |e: &Entry| matches!(*e.slot.lock(), Held::Running);
        entries.retain(|_, e| running(e) || e.started.elapsed() < self.retention);
        if entries.len() >= MAX_KEPT {
            let mut kept: Vec<(Instant, String)> = entries
                .iter()
                .filter(|(_, e)| !running(e))
                .map(|(id, e)| (e.started, id.clone()))
                .collect();
            kept.sort();
            let excess = entries.len() + 1 - MAX_KEPT;
            for (_, id) in kept.into_iter().take(excess) {
                entries.remove(&id);
            }
            tracing::warn!(
                max = MAX_KEPT,
                "too many unsettled write outcomes kept in memory; dropped the oldest"
            );
        }
    }

    /// The write registered under `id`, if its outcome is still kept.
    pub(crate) fn find(&self, id: &str) -> Option<Found> {
        let entries = self.lock();
        let entry = entries.get(id)?;
        if entry.started.elapsed() >= self.retention && !matches!(*entry.slot.lock(), Held::Running)
        {
            return None;
        }
        entry.slot.looked.store(true, Ordering::SeqCst);
        Some(Found {
            mutation: entry.mutation,
            args: Arc::clone(&entry.args),
            slot: Arc::clone(&entry.slot),
        })
    }

    /// Forgets `id` (its write did not commit and a retry runs it).
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The caller took its outcome: forgotten, unless a retry is looking at
    /// it too (it then stays, as JSON, for the retry and the next).
    pub(crate) fn take<T: Any + Send>(
        &self,
        id: &str,
        ticket: &Ticket,
        keep: impl FnOnce(&T) -> Final,
    ) -> Option<T> {
        let mut entries = self.lock();
        let mut held = ticket.slot.lock();
        let typed = match std::mem::replace(&mut *held, Held::Running) {
            Held::Typed(typed) => typed,
            other => {
                *held = other;
                return None;
            }
        };
        let typed = match typed.downcast::<T>() {
            Ok(typed) => typed,
            Err(other) => {
                *held = Held::Typed(other);
                return None;
            }
        };
        if ticket.slot.looked.load(Ordering::SeqCst) {
            *held = Held::Kept(keep(&typed));
        } else {
            drop(held);
            entries.remove(id);
        }
        Some(*typed)
    }
}

impl Ticket {
    /// Leaves the write's outcome in its slot and wakes whoever waits.
    pub(crate) fn end<T: Any + Send>(&self, outcome: T) {
        *self.slot.lock() = Held::Typed(Box::new(outcome));
        self.slot.done.send_replace(true);
    }

    /// Leaves a kept outcome (one its caller is not to take).
    pub(crate) fn keep(&self, kept: Final) {
        *self.slot.lock() = Held::Kept(kept);
        self.slot.done.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_outcome_is_forgotten_unless_a_retry_looks() {
        let table = Unrecorded::new(Duration::from_secs(60));
        let ticket = table.register("a", "m", "{}");
        ticket.end(7u32);
        assert_eq!(
            table.take::<u32>("a", &ticket, |_| Final::NotCommitted),
            Some(7)
        );
        assert!(table.find("a").is_none());

        let ticket = table.register("b", "m", "{}");
        let found = table.find("b").expect("registered");
        ticket.end(8u32);
        let keep = |v: &u32| Final::Committed {
            output: v.to_string(),
            position: None,
        };
        assert_eq!(table.take::<u32>("b", &ticket, keep), Some(8));
        assert!(matches!(
            found.slot.kept::<u32>(|_| Final::NotCommitted),
            Some(Final::Committed { output, .. }) if output == "8"
        ));
    }

    #[test]
    fn an_outcome_nobody_took_is_kept_as_json_for_a_retry() {
        let table = Unrecorded::new(Duration::from_secs(60));
        let ticket = table.register("c", "m", "{\"x\":1}");
        ticket.end(9u32);
        drop(ticket);
        let found = table.find("c").expect("kept");
        assert_eq!(&*found.args, "{\"x\":1}");
        let kept = found.slot.kept::<u32>(|v| Final::Committed {
            output: v.to_string(),
            position: None,
        });
        assert!(matches!(kept, Some(Final::Committed { output, .. }) if output == "9"));
        // Another type under the same id is not taken for it.
        let other = table.register("d", "m", "{}");
        other.end("text");
        let found = table.find("d").unwrap();
        assert!(matches!(
            found.slot.kept::<u32>(|_| Final::NotCommitted),
            Some(Final::Unknown(_))
        ));
    }
}
