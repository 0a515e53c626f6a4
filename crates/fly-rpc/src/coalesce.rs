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
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::answer::parse_wire_error;
use crate::auth::{Auth, Extra};
use crate::batch_wire::{BATCH_CONTENT_TYPE, encode_item, item_headers, item_size, next_record};
use crate::client::{HttpClient, TransportFailure};
use crate::wire::{
    BATCH_PATH, CALL_PATH, H_CALLER_REGION, H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY, WireErrorKind,
};

/// A peer's answer to one call, or why there is none.
pub(crate) type Answer = Result<(StatusCode, Bytes), TransportFailure>;

/// Most calls per batch request (the server takes up to
/// [`crate::batch_wire::MAX_BATCH_ITEMS`]).
const MAX_CALLS_PER_BATCH: usize = 64;

/// Most bytes per batch request; a call bigger than a quarter of this goes
/// alone.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How long a peer that does not serve batches (an older version) gets
/// calls one request each before it is asked again.
const UNBATCHED_FOR: Duration = Duration::from_secs(300);

/// How long a batch outlives its callers' last deadline. Each caller's own
/// deadline ends its wait first and tells it "timed out"; the batch giving
/// up at the same instant would race it with a transport error instead.
const AFTER_LAST_DEADLINE: Duration = Duration::from_secs(1);

/// One call on its way to a peer.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) procedure: &'static str,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) require_primary: bool,
    /// The caller's trace context (`traceparent`, `tracestate`).
    pub(crate) trace: HeaderMap,
    pub(crate) body: Bytes,
}

impl Outgoing {
    /// A call with the caller's current trace context.
    pub(crate) fn new(
        procedure: &'static str,
        idempotency_key: Option<String>,
        require_primary: bool,
        body: Bytes,
    ) -> Self {
        let mut trace = HeaderMap::new();
        crate::trace_context::inject(&mut trace);
        Outgoing {
            procedure,
            idempotency_key,
            require_primary,
            trace,
            body,
        }
    }

    fn batch_headers(&self) -> Vec<(String, String)> {
        let mut headers = item_headers(&self.trace);
        if let Some(key) = &self.idempotency_key {
            headers.push((H_IDEMPOTENCY_KEY.to_owned(), key.clone()));
        }
        if self.require_primary {
            headers.push((H_REQUIRE_PRIMARY.to_owned(), "1".to_owned()));
        }
        headers
    }
}

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

/// What sending needs, shared with the tasks that carry batches.
struct Link {
    client: HttpClient,
    auth: Arc<Auth>,
    region: String,
    /// Peers that answered a batch like a version without batches, until
    /// when they are sent lone requests.
    unbatched: Mutex<HashMap<SocketAddr, Instant>>,
    requests: AtomicU64,
    batches: AtomicU64,
    batched_calls: AtomicU64,
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
            link: Arc::new(Link {
                client,
                auth,
                region,
                unbatched: Mutex::new(HashMap::new()),
                requests: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                batched_calls: AtomicU64::new(0),
            }),
            queues: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max_batch_bytes,
        }
    }

    /// Whether calls are batched (and batch requests served).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

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

async fn receive(answer: oneshot::Receiver<Answer>) -> Answer {
    answer.await.unwrap_or_else(|_| {
        Err(TransportFailure::after_sending(
            "the batch carrying this call ended without its answer",
        ))
    })
}

impl Link {
    fn unbatched(&self, peer: SocketAddr) -> bool {
        let mut unbatched = lock(&self.unbatched);
        match unbatched.get(&peer) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                unbatched.remove(&peer);
                false
            }
            None => false,
        }
    }

    /// One call, one request.
    async fn send_alone(&self, peer: SocketAddr, call: &Outgoing) -> Answer {
        let path = format!("{CALL_PATH}{}", call.procedure);
        let extra = Extra {
            idempotency_key: call.idempotency_key.as_deref(),
            caller_region: Some(&self.region),
            require_primary: call.require_primary,
        };
        let mut headers = self.signed(&path, peer, extra, &call.body);
        if let Some(key) = call
            .idempotency_key
            .as_deref()
            .and_then(|k| HeaderValue::from_str(k).ok())
        {
            headers.insert(H_IDEMPOTENCY_KEY, key);
        }
        if call.require_primary {
            headers.insert(H_REQUIRE_PRIMARY, HeaderValue::from_static("1"));
        }
        headers.extend(call.trace.clone());
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.client
            .send(peer, Method::POST, &path, headers, call.body.clone())
            .await
    }

    /// The signature's headers and the caller's region.
    fn signed(&self, path: &str, peer: SocketAddr, extra: Extra<'_>, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.auth
            .sign("POST", path, &peer.to_string(), extra, body)
            .apply(&mut headers);
        if let Ok(v) = HeaderValue::from_str(&self.region) {
            headers.insert(H_CALLER_REGION, v);
        }
        headers
    }

    /// Sends `calls` as one request and hands each caller its answer as it
    /// streams in; gives up at the last caller's deadline.
    async fn send_batch(self: Arc<Self>, peer: SocketAddr, calls: Vec<Queued>) {
        if calls.len() == 1 {
            for queued in calls {
                let answer = self.send_alone(peer, &queued.call).await;
                let _ = queued.reply.send(answer);
            }
            return;
        }
        let deadline = calls.iter().map(|q| q.deadline + AFTER_LAST_DEADLINE).max();
        let mut body = BytesMut::new();
        let mut pending = Vec::with_capacity(calls.len());
        for queued in calls {
            encode_item(
                &mut body,
                queued.call.procedure,
                queued.call.batch_headers(),
                &queued.call.body,
            );
            pending.push(Pending {
                call: queued.call,
                reply: Some(queued.reply),
            });
        }
        let exchange = self.exchange(peer, body.freeze(), &mut pending);
        match deadline {
            Some(deadline) => {
                let _ = tokio::time::timeout_at(deadline.into(), exchange).await;
            }
            None => exchange.await,
        }
        // Whatever is still unanswered: its caller has given up by now.
        fail_rest(&mut pending, "no answer to this call within its deadline");
    }

    async fn exchange(&self, peer: SocketAddr, body: Bytes, pending: &mut [Pending]) {
        let extra = Extra {
            idempotency_key: None,
            caller_region: Some(&self.region),
            require_primary: false,
        };
        let mut headers = self.signed(BATCH_PATH, peer, extra, &body);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH_CONTENT_TYPE));
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_calls
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        crate::metric::counter!("fly_rpc_batches_total").increment(1);
        crate::metric::counter!("fly_rpc_batched_calls_total").increment(pending.len() as u64);
        let response = match self
            .client
            .open(peer, Method::POST, BATCH_PATH, headers, body)
            .await
        {
            Ok(response) => response,
            Err(failure) => return answer_rest(pending, Err(failure)),
        };
        let status = response.status();
        let streamed = response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == BATCH_CONTENT_TYPE.as_bytes());
        if status == StatusCode::OK && !streamed {
            return fail_rest(pending, "the peer answered a batch with something else");
        }
        if status != StatusCode::OK {
            // The whole batch was answered at once, before any call ran.
            let body = match self.client.read_body(response).await {
                Ok(body) => body,
                Err(failure) => return answer_rest(pending, Err(failure)),
            };
            let older = status == StatusCode::NOT_FOUND
                && parse_wire_error(&body).is_some_and(|e| e.kind == WireErrorKind::BadRequest);
            if older {
                tracing::info!(%peer, "peer does not serve batched calls (an older version); sending them one by one");
                lock(&self.unbatched).insert(peer, Instant::now() + UNBATCHED_FOR);
            }
            if older || status == StatusCode::PAYLOAD_TOO_LARGE {
                // Nothing ran: each call goes again, alone.
                let alone = pending.iter_mut().map(|p| async move {
                    let answer = self.send_alone(peer, &p.call).await;
                    if let Some(reply) = p.reply.take() {
                        let _ = reply.send(answer);
                    }
                });
                futures_util::future::join_all(alone).await;
                return;
            }
            return answer_rest(pending, Ok((status, body)));
        }
        let max = self.client.max_response();
        let mut stream = response.into_body();
        let mut buf = BytesMut::new();
        let broke = loop {
            let data = match stream.frame().await {
                None => break "the batch's answer ended without this call's".to_owned(),
                Some(Err(e)) => break format!("the batch's answer broke off: {e}"),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            buf.extend_from_slice(&data);
            match deliver(&mut buf, max, pending) {
                Ok(()) => {}
                Err(message) => break message,
            }
        };
        fail_rest(pending, broke);
    }
}

/// A batched call awaiting its answer.
struct Pending {
    call: Outgoing,
    reply: Option<oneshot::Sender<Answer>>,
}

/// Hands out every whole record in `buf`.
fn deliver(buf: &mut BytesMut, max: usize, pending: &mut [Pending]) -> Result<(), String> {
    while let Some(record) = next_record(buf, max)? {
        let reply = pending
            .get_mut(record.index)
            .and_then(|p| p.reply.take())
            .ok_or_else(|| {
                format!(
                    "the batch answered call {} twice or never sent it",
                    record.index
                )
            })?;
        let _ = reply.send(Ok((record.status, record.body)));
    }
    Ok(())
}

/// Tells every call not answered yet that it may have run: the batch
/// reached the peer, its answer did not come.
fn fail_rest(pending: &mut [Pending], message: impl Into<String>) {
    answer_rest(pending, Err(TransportFailure::after_sending(message)));
}

/// Gives every call not answered yet the same `answer`.
fn answer_rest(pending: &mut [Pending], answer: Answer) {
    for p in pending.iter_mut() {
        if let Some(reply) = p.reply.take() {
            let _ = reply.send(answer.clone());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
