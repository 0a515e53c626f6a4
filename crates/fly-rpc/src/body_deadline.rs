//! On an app's port a request body must arrive whole within a deadline.
//! tower-http's body timeout restarts its clock at every frame, so a client
//! sending a byte every few seconds could hold a connection for hours; this
//! clock does not restart. A handler that was still reading when it ran out
//! has its answer (axum's extractors say 400, "failed to buffer the body")
//! replaced by 408, which tells the client what happened.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};

/// How long a request's body may take to arrive, in all, on an app's port
/// served by [`crate::serve_app`]: 10 s, however it trickles in. Change it
/// with [`crate::AppServeOptions::body_deadline`].
pub const DEFAULT_BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Gives the request's body `deadline` to arrive (for
/// `axum::middleware::from_fn_with_state`). If reading it ran out of time,
/// the answer is 408 whatever the handler made of the failed read, and an
/// HTTP/1 connection is closed: the rest of the body may still be on its
/// way, and the connection is of no use until it has arrived.
pub(crate) async fn enforce(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    // Nothing left to arrive (a GET, an empty body): no clock to keep.
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let version = request.version();
    let expired = Arc::new(AtomicBool::new(false));
    let request =
        request.map(|body| Body::new(DeadlineBody::new(body, deadline, Arc::clone(&expired))));
    let response = next.run(request).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    too_slow(deadline, version)
}

fn too_slow(deadline: Duration, version: Version) -> Response {
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        format!("the request body did not arrive within {deadline:?}\n"),
    )
        .into_response();
    // HTTP/2 has no such header (hyper would drop it with a warning); the
    // stream ends with the answer and the connection stays useful.
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A body that fails once its deadline has passed, and says so in
/// `expired`.
pub(crate) struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: Arc<AtomicBool>,
}

impl DeadlineBody {
    /// The clock starts now.
    pub(crate) fn new(inner: Body, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            expired,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(format!(
                    "the request body did not arrive within {:?}",
                    this.timeout
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_trickling_body_fails_at_the_deadline_whatever_it_sends() {
        // A byte every 20 ms, forever: each frame comes in time, the whole
        // never does.
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
        });
        let expired = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody::new(
            Body::from_stream(trickle),
            Duration::from_millis(300),
            Arc::clone(&expired),
        );
        let started = std::time::Instant::now();
        let error = body.collect().await.expect_err("it must fail");
        assert!(error.to_string().contains("did not arrive"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(expired.load(Ordering::Relaxed));

        let in_time = Arc::new(AtomicBool::new(false));
        let whole = DeadlineBody::new(
            Body::from("hello"),
            Duration::from_millis(300),
            Arc::clone(&in_time),
        );
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "hello");
        assert!(!in_time.load(Ordering::Relaxed));
    }

    #[test]
    fn the_answer_closes_http1_connections_only() {
        let answer = too_slow(Duration::from_secs(10), Version::HTTP_11);
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(answer.headers()[header::CONNECTION], "close");
        let answer = too_slow(Duration::from_secs(10), Version::HTTP_2);
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(!answer.headers().contains_key(header::CONNECTION));
    }
}
