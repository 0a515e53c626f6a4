//! The accept loop's table of open connections: what it knows of each, and
//! which one it closes to make room for another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use tokio::task::AbortHandle;

/// What the loop knows of one open connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) in_flight: AtomicUsize,
    /// Milliseconds since the loop started, at the last request's end (or
    /// the accept).
    pub(super) last_active: AtomicU64,
    /// A request on it authenticated: a peer's pooled connection.
    pub(super) trusted: Arc<AtomicBool>,
    /// A complete request head arrived on it (it is not a silent socket).
    pub(super) spoke: AtomicBool,
    /// Milliseconds since the loop started, when the bytes of a request
    /// head began to arrive with no request in flight ([`NO_HEAD`]: none
    /// is arriving).
    pub(super) head_started: AtomicU64,
    /// Closes the connection at once (its task is aborted).
    pub(super) abort: OnceLock<AbortHandle>,
}

/// The open connections of one listener.
#[derive(Debug)]
pub(super) struct Table {
    /// Which listener (`rpc`, `app`): the metrics' `listener` label.
    pub(super) listener: &'static str,
    /// When the loop started: connections' activity is counted from it.
    pub(super) epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Table {
    pub(super) fn new(listener: &'static str, epoch: Instant) -> Self {
        Table {
            listener,
            epoch,
            next: AtomicU64::new(0),
            open: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection just accepted, entered in the table under a new id.
    pub(super) fn open(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(elapsed_ms(self.epoch)),
            trusted: Arc::default(),
            spoke: AtomicBool::new(false),
            head_started: AtomicU64::new(NO_HEAD),
            abort: OnceLock::new(),
        });
        self.lock().insert(id, Arc::clone(&conn));
        (id, conn)
    }

    /// Takes a closed connection out of the table.
    pub(super) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Room for one more connection: true if under the cap, or after
    /// closing the longest-idle connection at once (no request is in flight
    /// on it; a caller's pool reconnects), one that never authenticated if
    /// there is any, so strangers cannot push peers out; false if every one
    /// is busy.
    pub(super) fn make_room(&self, cap: usize) -> bool {
        let mut open = self.lock();
        if open.len() < cap {
            return true;
        }
        let idle = open
            .iter()
            .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| {
                (
                    c.trusted.load(Ordering::Relaxed),
                    c.last_active.load(Ordering::Relaxed),
                )
            })
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(conn) => {
                if let Some(abort) = conn.abort.get() {
                    abort.abort();
                }
                crate::metric::counter!("fly_rpc_server_connections_shed_total", "listener" => self.listener)
                    .increment(1);
                true
            }
            None => false,
        }
    }
}

/// [`Conn::head_started`] when no head is arriving.
pub(super) const NO_HEAD: u64 = u64::MAX;

/// Milliseconds since `epoch`, as connections' activity is stored.
pub(super) fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A request in progress on a connection: it is not idle meanwhile.
pub(super) struct Activity {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Activity {
    pub(super) fn begin(conn: Arc<Conn>, epoch: Instant) -> Self {
        conn.spoke.store(true, Ordering::Relaxed);
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.head_started.store(NO_HEAD, Ordering::Relaxed);
        Activity { conn, epoch }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.conn
            .last_active
            .store(elapsed_ms(self.epoch), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
