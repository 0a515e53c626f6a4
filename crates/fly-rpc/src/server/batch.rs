//! A batch request: several calls in one request, authenticated as a
//! whole, every item decoded before any runs, then each dispatched as a
//! lone call would be, concurrently, its answer streamed back as soon as
//! it is ready.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;

use crate::batch_wire::{BATCH_CONTENT_TYPE, BatchItem, decode_request, encode_record};
use crate::body_budget::BudgetedBody;
use crate::state::NodeInner;
use crate::wire::{BATCH_PATH, H_CALLER_REGION, WireError, WireErrorKind};

use super::authenticate::authenticate;
use super::dispatch::dispatch;
use super::{count_request, reply};

/// The metric label of batch requests refused as a whole.
const BATCH_LABEL: &str = "_batch";

/// Serves a batch request.
pub(super) async fn batch(State(node): State<Arc<NodeInner>>, request: Request) -> Response {
    let (headers, body) = match authenticate(&node, "POST", BATCH_PATH, request).await {
        Ok(read) => read,
        Err(response) => {
            count_request(BATCH_LABEL, true, response.status());
            return response;
        }
    };
    let items = match decode_request(&body.bytes) {
        Ok(items) => items,
        Err(refusal) => {
            node.rejections.record("batch_malformed", &refusal);
            count_request(BATCH_LABEL, true, StatusCode::BAD_REQUEST);
            return reply(
                StatusCode::BAD_REQUEST,
                WireError::new(WireErrorKind::BadRequest, refusal.to_string()),
            );
        }
    };
    crate::metric::counter!("fly_rpc_server_batches_total").increment(1);
    let caller_region = headers.get(H_CALLER_REGION).cloned();
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)],
        axum::body::Body::from_stream(answers(&node, caller_region, items, body)),
    )
        .into_response()
}

/// Each item dispatched, its answer encoded as a record, in the order
/// they finish. The items carry the batch's caller region, which only the
/// batch's headers name (and its signature covers).
fn answers(
    node: &Arc<NodeInner>,
    caller_region: Option<HeaderValue>,
    items: Vec<BatchItem>,
    body: BudgetedBody,
) -> FuturesUnordered<impl Future<Output = Result<Bytes, Infallible>> + use<>> {
    // Every item's handler holds the batch's body budget until it is done.
    let held = Arc::new(body);
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let (node, held) = (Arc::clone(node), Arc::clone(&held));
            let mut item_headers = item.headers;
            if let Some(region) = &caller_region {
                item_headers.insert(H_CALLER_REGION, region.clone());
            }
            async move {
                let handler = node.registry.handler(&item.procedure);
                let known = handler.is_some();
                let answer = dispatch(
                    &node,
                    &item.procedure,
                    handler,
                    &item_headers,
                    item.body,
                    held,
                )
                .await;
                count_request(&item.procedure, known, answer.status);
                Ok::<_, Infallible>(encode_record(index, answer.status, &answer.body))
            }
        })
        .collect()
}
