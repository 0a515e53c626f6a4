//! Reading request bodies under three limits: a per-request size, a
//! server-wide budget of body bytes in flight, and a read deadline. Only
//! requests whose headers passed the cheap auth checks get here.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyRefusal {
    #[error("request body is over the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the node is reading too many request bodies at once; retry")]
    Busy,
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("the request body could not be read: {0}")]
    Broken(String),
}

/// The limits, shared by every connection of a node.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    in_flight: Arc<Semaphore>,
    max_body: usize,
    read_timeout: Duration,
}

/// A read body; its bytes count against the budget until this is dropped.
#[derive(Debug)]
pub(crate) struct BudgetedBody {
    pub(crate) bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    pub(crate) fn new(total: usize, max_body: usize, read_timeout: Duration) -> Self {
        BodyBudget {
            // The semaphore's own ceiling is far above any sane budget.
            in_flight: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            max_body,
            read_timeout,
        }
    }

    /// Bytes of the budget not held by a body right now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.in_flight.available_permits()
    }

    /// Reads `body`; refuses at once what cannot fit.
    pub(crate) async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<BudgetedBody, BodyRefusal> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut permit = match declared {
            Some(len) if len > self.max_body => return Err(BodyRefusal::TooLarge(self.max_body)),
            Some(0) => None,
            Some(len) => Some(self.take(len)?),
            None => None,
        };
        let read = async {
            let mut body = body;
            let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| BodyRefusal::Broken(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buf.len() + data.len() > self.max_body {
                    return Err(BodyRefusal::TooLarge(self.max_body));
                }
                // A body without a declared length pays as it arrives.
                if declared.is_none() && !data.is_empty() {
                    let more = self.take(data.len())?;
                    match &mut permit {
                        Some(held) => held.merge(more),
                        None => permit = Some(more),
                    }
                } else if buf.len() + data.len() > declared.unwrap_or(0) {
                    return Err(BodyRefusal::Broken(
                        "the body is longer than its content-length".into(),
                    ));
                }
                buf.extend_from_slice(&data);
            }
            Ok(buf.freeze())
        };
        let bytes = tokio::time::timeout(self.read_timeout, read)
            .await
            .map_err(|_| BodyRefusal::Timeout(self.read_timeout))??;
        Ok(BudgetedBody {
            bytes,
            _permit: permit,
        })
    }

    fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, BodyRefusal> {
        let n = u32::try_from(bytes).map_err(|_| BodyRefusal::TooLarge(self.max_body))?;
        Arc::clone(&self.in_flight)
            .try_acquire_many_owned(n)
            .map_err(|_| BodyRefusal::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, n.to_string().parse().unwrap());
        h
    }

    #[tokio::test]
    async fn bodies_count_against_the_budget_until_dropped() {
        let budget = BodyBudget::new(100, 60, Duration::from_secs(1));
        let first = budget
            .read(&with_length(50), Body::from(vec![1u8; 50]))
            .await
            .unwrap();
        assert_eq!(first.bytes.len(), 50);
        assert_eq!(budget.available(), 50);
        // Over the budget while the first is held: refused at once.
        assert_eq!(
            budget
                .read(&with_length(60), Body::from(vec![1u8; 60]))
                .await
                .unwrap_err(),
            BodyRefusal::Busy
        );
        drop(first);
        assert_eq!(budget.available(), 100);
        assert_eq!(
            budget
                .read(&with_length(61), Body::from(vec![1u8; 61]))
                .await
                .unwrap_err(),
            BodyRefusal::TooLarge(60)
        );
        // Without a declared length the limits apply as bytes arrive.
        assert_eq!(
            budget
                .read(&HeaderMap::new(), Body::from(vec![1u8; 61]))
                .await
                .unwrap_err(),
            BodyRefusal::TooLarge(60)
        );
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out() {
        let budget = BodyBudget::new(100, 60, Duration::from_millis(50));
        let (mut tx, body) = {
            let (tx, rx) =
                tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
            (
                tx,
                Body::new(http_body_util::StreamBody::new(tokio_stream_from(rx))),
            )
        };
        let _ = &mut tx;
        tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        assert_eq!(
            budget.read(&with_length(10), body).await.unwrap_err(),
            BodyRefusal::Timeout(Duration::from_millis(50))
        );
        assert_eq!(budget.available(), 100, "the permit went back");
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
