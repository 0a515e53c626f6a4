//! Calls to one peer that are ready at the same moment share one HTTP/2
//! request (a batch), each still its own call: its own handler task on the
//! peer, its own answer, streamed back as soon as it is ready, so a slow
//! call never holds a quick one's answer. A call alone goes as a request of
//! its own, as before. Under load this takes the per-request work (HTTP/2
//! stream, headers, signature, routing) off most calls; idle, it costs one
//! yield.
//!
//! A call's outcome class is the one a lone request would give it: the
//! peer's answer to it; "did not run" when the batch never reached the
//! peer; "may have run" when the connection broke before its answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::StatusCode;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::auth::Auth;
use crate::batch_wire::item_size;
use crate::client::{HttpClient, TransportFailure};

mod batch;
mod link;
mod outgoing;

use link::Link;
pub(crate) use outgoing::Outgoing;

/// A peer's answer to one call, or why there is none.
pub(crate) type Answer = Result<(StatusCode, Bytes), TransportFailure>;

/// Most calls per batch request (the server takes up to
/// [`crate::batch_wire::MAX_BATCH_ITEMS`]).
const MAX_CALLS_PER_BATCH: usize = 64;

/// Most bytes per batch request; a call bigger than a quarter of this goes
/// alone.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How many HTTP requests carried calls, and how many calls went in
/// batches; see [`crate::Node::call_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallCounts {
    /// HTTP requests sent to peers for calls: one per lone call, one per
    /// batch.
    pub requests: u64,
    /// Of those, batch requests.
    pub batches: u64,
    /// Calls carried in batch requests.
    pub batched_calls: u64,
}

/// A call waiting in a peer's queue.
struct Queued {
    id: u64,
    call: Outgoing,
    deadline: Instant,
    reply: oneshot::Sender<Answer>,
}

/// The per-peer queues of a node's outgoing calls.
pub(crate) struct Coalescer {
    enabled: bool,
    link: Arc<Link>,
    queues: Mutex<HashMap<SocketAddr, Vec<Queued>>>,
    next_id: AtomicU64,
    max_batch_bytes: usize,
}

impl Coalescer {
    pub(crate) fn new(enabled: bool, client: HttpClient, auth: Arc<Auth>, region: String) -> Self {
        let max_batch_bytes = MAX_BATCH_BYTES.min(client.max_response());
        Coalescer {
            enabled,
            link: Arc::new(Link::new(client, auth, region)),
            queues: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max_batch_bytes,
        }
    }

    /// Whether calls are batched (and batch requests served).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The requests and batches sent so far.
    pub(crate) fn counts(&self) -> CallCounts {
        CallCounts {
            requests: self.link.requests.load(Ordering::Relaxed),
            batches: self.link.batches.load(Ordering::Relaxed),
            batched_calls: self.link.batched_calls.load(Ordering::Relaxed),
        }
    }

    /// A lone request for `call`, never batched.
    pub(crate) async fn send_alone(&self, peer: SocketAddr, call: &Outgoing) -> Answer {
        self.link.send_alone(peer, call).await
    }

    /// Sends `call` to `peer`, in a batch with the calls to the same peer
    /// that are ready now, or alone.
    pub(crate) async fn send(&self, peer: SocketAddr, call: Outgoing, deadline: Instant) -> Answer {
        if !self.enabled
            || item_size(call.procedure, &call.body) > self.max_batch_bytes / 4
            || self.link.unbatched(peer)
        {
            return self.link.send_alone(peer, &call).await;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let leads = {
            let mut queues = lock(&self.queues);
            let queue = queues.entry(peer).or_default();
            queue.push(Queued {
                id,
                call,
                deadline,
                reply,
            });
            queue.len() == 1
        };
        if !leads {
            return receive(answer).await;
        }
        // The first call into an empty queue sends it, after a yield: the
        // calls other tasks make meanwhile (callers woken by the answers
        // the I/O driver is delivering) join it.
        let mut flush = Flush {
            coalescer: self,
            peer,
            own: id,
            armed: true,
        };
        tokio::task::yield_now().await;
        flush.armed = false;
        let mut chunks = self.take(peer, None).into_iter();
        let Some(mut first) = chunks.next() else {
            return receive(answer).await;
        };
        for chunk in chunks {
            tokio::spawn(Arc::clone(&self.link).send_batch(peer, chunk));
        }
        // The leader's own call is the queue's first.
        if first.len() == 1 && first[0].id == id {
            let own = first.remove(0);
            drop(own.reply);
            return self.link.send_alone(peer, &own.call).await;
        }
        tokio::spawn(Arc::clone(&self.link).send_batch(peer, first));
        receive(answer).await
    }

    /// Takes `peer`'s queue, without calls whose caller is gone (and
    /// without `except`), cut into batches.
    fn take(&self, peer: SocketAddr, except: Option<u64>) -> Vec<Vec<Queued>> {
        let queue = lock(&self.queues).remove(&peer).unwrap_or_default();
        let mut chunks: Vec<Vec<Queued>> = Vec::new();
        let mut bytes = 0;
        for queued in queue {
            if queued.reply.is_closed() || Some(queued.id) == except {
                continue;
            }
            let size = item_size(queued.call.procedure, &queued.call.body);
            match chunks.last_mut() {
                Some(chunk)
                    if chunk.len() < MAX_CALLS_PER_BATCH
                        && bytes + size <= self.max_batch_bytes =>
                {
                    bytes += size;
                    chunk.push(queued);
                }
                _ => {
                    bytes = size;
                    chunks.push(vec![queued]);
                }
            }
        }
        chunks
    }
}

/// Sends the queue if its leader is cancelled before it did.
struct Flush<'a> {
    coalescer: &'a Coalescer,
    peer: SocketAddr,
    own: u64,
    armed: bool,
}

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for chunk in self.coalescer.take(self.peer, Some(self.own)) {
            let link = Arc::clone(&self.coalescer.link);
            let peer = self.peer;
            // Dropped outside a runtime (the runtime shutting down): the
            // queued callers' futures go with it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(link.send_batch(peer, chunk));
            }
        }
    }
}

/// The answer a batch hands this call.
async fn receive(answer: oneshot::Receiver<Answer>) -> Answer {
    answer.await.unwrap_or_else(|_| {
        Err(TransportFailure::after_sending(
            "the batch carrying this call ended without its answer",
        ))
    })
}

/// Locks `mutex` even if poisoned: a panic while it was held leaves a
/// queue or mark that is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
