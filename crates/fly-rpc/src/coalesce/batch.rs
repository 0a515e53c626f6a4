//! Carrying a batch: its calls as one request, and each caller handed its
//! answer as the peer's records stream in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, Method, Response, StatusCode, header::CONTENT_TYPE};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::link::Link;
use super::{Answer, Outgoing, Queued, lock};
use crate::answer::parse_wire_error;
use crate::auth::Extra;
use crate::batch_wire::{BATCH_CONTENT_TYPE, encode_item, next_record};
use crate::client::TransportFailure;
use crate::wire::{BATCH_PATH, WireErrorKind};

/// How long a peer that does not serve batches (an older version) gets
/// calls one request each before it is asked again.
const UNBATCHED_FOR: Duration = Duration::from_secs(300);

/// How long a batch outlives its callers' last deadline. Each caller's own
/// deadline ends its wait first and tells it "timed out"; the batch giving
/// up at the same instant would race it with a transport error instead.
const AFTER_LAST_DEADLINE: Duration = Duration::from_secs(1);

/// A batched call awaiting its answer.
struct Pending {
    call: Outgoing,
    reply: Option<oneshot::Sender<Answer>>,
}

impl Link {
    /// Sends `calls` as one request and hands each caller its answer as it
    /// streams in; gives up at the last caller's deadline.
    pub(super) async fn send_batch(self: Arc<Self>, peer: SocketAddr, calls: Vec<Queued>) {
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

    /// The batch request and its answer: streamed records, or one answer
    /// for the whole batch.
    async fn exchange(&self, peer: SocketAddr, body: Bytes, pending: &mut [Pending]) {
        let response = match self.open_batch(peer, body, pending.len()).await {
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
            return self.refused_whole(peer, status, response, pending).await;
        }
        let broke = self.stream_answers(response, pending).await;
        fail_rest(pending, broke);
    }

    /// Sends the signed batch request of `calls` calls, counted, and
    /// returns as soon as the answer's head arrives.
    async fn open_batch(
        &self,
        peer: SocketAddr,
        body: Bytes,
        calls: usize,
    ) -> Result<Response<Incoming>, TransportFailure> {
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
            .fetch_add(calls as u64, Ordering::Relaxed);
        crate::metric::counter!("fly_rpc_batches_total").increment(1);
        crate::metric::counter!("fly_rpc_batched_calls_total").increment(calls as u64);
        self.client
            .open(peer, Method::POST, BATCH_PATH, headers, body)
            .await
    }

    /// The whole batch was answered at once, before any call ran: by a
    /// version without batches, or as too large, each call goes again
    /// alone; any other answer is every call's.
    async fn refused_whole(
        &self,
        peer: SocketAddr,
        status: StatusCode,
        response: Response<Incoming>,
        pending: &mut [Pending],
    ) {
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
        answer_rest(pending, Ok((status, body)))
    }

    /// Hands out each record as it arrives; returns why the stream ended
    /// before every call was answered (or, once all were, that it ended).
    async fn stream_answers(
        &self,
        response: Response<Incoming>,
        pending: &mut [Pending],
    ) -> String {
        let max = self.client.max_response();
        let mut stream = response.into_body();
        let mut buf = BytesMut::new();
        loop {
            let data = match stream.frame().await {
                None => return "the batch's answer ended without this call's".to_owned(),
                Some(Err(e)) => return format!("the batch's answer broke off: {e}"),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            buf.extend_from_slice(&data);
            if let Err(message) = deliver(&mut buf, max, pending) {
                return message;
            }
        }
    }
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
