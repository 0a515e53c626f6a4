//! A request body must arrive whole within a deadline. tower-http's body
//! timeout restarts its clock at every frame, so a client sending a byte
//! every few seconds could hold a connection for hours; this one does not.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;

/// How long a request's body may take to arrive, in all.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Gives the request's body [`BODY_READ_TIMEOUT`] to arrive (for
/// `axum::middleware::map_request`); past it, reading the body fails and
/// the extractor answers 400.
pub(crate) async fn with_body_deadline(request: Request) -> Request {
    request.map(|body| Body::new(DeadlineBody::new(body, BODY_READ_TIMEOUT)))
}

/// A body that fails once its deadline has passed.
pub(crate) struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    pub(crate) fn new(inner: Body, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(format!(
                "the request body did not arrive within {:?}",
                this.timeout
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
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
        let body = DeadlineBody::new(Body::from_stream(trickle), Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = body.collect().await.expect_err("it must fail");
        assert!(error.to_string().contains("did not arrive"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let whole = DeadlineBody::new(Body::from("hello"), Duration::from_millis(300));
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "hello");
    }
}
