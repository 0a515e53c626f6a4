//! The body of a batch request (several calls to one peer in one HTTP/2
//! request) and of its answer, a stream of one record per call in the
//! order they finish. Length-prefixed binary, so a call's arguments and
//! output travel as the same bytes a lone request would carry.
//!
//! Request: per call, `u32` length + JSON [`ItemMeta`], `u32` length + the
//! call's body. Answer: per call, `u32` index + `u16` HTTP status + `u32`
//! length + the body a lone request would have been answered with.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::trace_context::{TRACEPARENT, TRACESTATE};
use crate::wire::{H_IDEMPOTENCY_KEY, H_REQUIRE_PRIMARY};

/// Content type of both bodies.
pub(crate) const BATCH_CONTENT_TYPE: &str = "application/x-fly-rpc-batch";

/// Most calls one batch request may carry; the server refuses more.
pub(crate) const MAX_BATCH_ITEMS: usize = 256;

/// The per-call headers a batch item may carry; the rest of a call's
/// headers (caller region, signature) are the batch request's own.
const ITEM_HEADERS: [&str; 4] = [
    H_IDEMPOTENCY_KEY,
    H_REQUIRE_PRIMARY,
    TRACEPARENT,
    TRACESTATE,
];

/// One call's name and headers, ahead of its body.
#[derive(Debug, Serialize, Deserialize)]
struct ItemMeta {
    procedure: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
}

/// One call of a decoded batch request.
#[derive(Debug)]
pub(crate) struct BatchItem {
    pub(crate) procedure: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why a batch request's body was refused (before any call in it ran).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BatchRefusal {
    #[error("batch body is cut short")]
    Truncated,
    #[error("batch carries no call")]
    Empty,
    #[error("batch carries more than {} calls", MAX_BATCH_ITEMS)]
    TooMany,
    #[error("batch item {index}: {message}")]
    BadItem { index: usize, message: String },
}

/// The per-call headers of `headers` that a batch item carries.
pub(crate) fn item_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    ITEM_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

/// Appends one call to a batch request body.
pub(crate) fn encode_item(
    out: &mut BytesMut,
    procedure: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
) {
    let meta = ItemMeta {
        procedure: procedure.to_owned(),
        headers,
    };
    // A struct of strings always serializes.
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    out.reserve(8 + meta.len() + body.len());
    put_len(out, meta.len());
    out.put_slice(&meta);
    put_len(out, body.len());
    out.put_slice(body);
}

/// The bytes [`encode_item`] adds for a call with this body, roughly.
pub(crate) fn item_size(procedure: &str, body: &[u8]) -> usize {
    body.len() + procedure.len() + 8 + 256
}

/// Decodes a whole batch request; every item is checked before any runs.
pub(crate) fn decode_request(body: &Bytes) -> Result<Vec<BatchItem>, BatchRefusal> {
    let mut rest = body.clone();
    let mut items = Vec::new();
    while rest.has_remaining() {
        if items.len() == MAX_BATCH_ITEMS {
            return Err(BatchRefusal::TooMany);
        }
        let index = items.len();
        let bad = |message: String| BatchRefusal::BadItem { index, message };
        let meta = take_chunk(&mut rest)?;
        let meta: ItemMeta = serde_json::from_slice(&meta)
            .map_err(|e| bad(format!("header does not decode: {e}")))?;
        let body = take_chunk(&mut rest)?;
        if meta.procedure.is_empty() {
            return Err(bad("no procedure name".into()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in meta.headers {
            if !ITEM_HEADERS.contains(&name.as_str()) {
                return Err(bad(format!("header {name:?} is not a per-call header")));
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad(format!("header name: {e}")))?;
            let value =
                HeaderValue::from_str(&value).map_err(|e| bad(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        items.push(BatchItem {
            procedure: meta.procedure,
            headers,
            body,
        });
    }
    if items.is_empty() {
        return Err(BatchRefusal::Empty);
    }
    Ok(items)
}

/// One call's answer in the batch's answer stream.
pub(crate) fn encode_record(index: usize, status: StatusCode, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(10 + body.len());
    put_len(&mut out, index);
    out.put_u16(status.as_u16());
    put_len(&mut out, body.len());
    out.put_slice(body);
    out.freeze()
}

/// A record read back from the answer stream.
#[derive(Debug, PartialEq)]
pub(crate) struct Record {
    pub(crate) index: usize,
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

/// Takes the next whole record off the front of `buf`: `Ok(None)` until
/// one has fully arrived; an error when the stream cannot be a batch
/// answer (a record over `max_body`, a status that is not one).
pub(crate) fn next_record(buf: &mut BytesMut, max_body: usize) -> Result<Option<Record>, String> {
    const HEAD: usize = 10;
    if buf.len() < HEAD {
        return Ok(None);
    }
    let mut head = &buf[..HEAD];
    let index = head.get_u32() as usize;
    let status = head.get_u16();
    let len = head.get_u32() as usize;
    if len > max_body {
        return Err(format!(
            "a call's answer is {len} bytes, over the limit of {max_body}"
        ));
    }
    let status =
        StatusCode::from_u16(status).map_err(|_| format!("{status} is not an HTTP status"))?;
    if buf.len() < HEAD + len {
        buf.reserve(HEAD + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEAD);
    let body = buf.split_to(len).freeze();
    Ok(Some(Record {
        index,
        status,
        body,
    }))
}

fn put_len(out: &mut BytesMut, len: usize) {
    // Bodies are capped far below 4 GiB (the node's max body size).
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

fn take_chunk(rest: &mut Bytes) -> Result<Bytes, BatchRefusal> {
    if rest.remaining() < 4 {
        return Err(BatchRefusal::Truncated);
    }
    let len = rest.get_u32() as usize;
    if rest.remaining() < len {
        return Err(BatchRefusal::Truncated);
    }
    Ok(rest.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_with_its_per_call_headers() {
        let mut out = BytesMut::new();
        encode_item(
            &mut out,
            "add",
            vec![(H_IDEMPOTENCY_KEY.into(), "k-1".into())],
            b"{\"a\":1}",
        );
        encode_item(&mut out, "echo", Vec::new(), b"");
        let items = decode_request(&out.freeze()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].procedure, "add");
        assert_eq!(items[0].headers.get(H_IDEMPOTENCY_KEY).unwrap(), "k-1");
        assert_eq!(&items[0].body[..], b"{\"a\":1}");
        assert_eq!(items[1].procedure, "echo");
        assert!(items[1].body.is_empty());
    }

    #[test]
    fn bad_requests_are_refused_whole() {
        assert_eq!(
            decode_request(&Bytes::new()).unwrap_err(),
            BatchRefusal::Empty
        );
        let mut out = BytesMut::new();
        encode_item(&mut out, "add", Vec::new(), b"12345");
        let whole = out.freeze();
        let cut = whole.slice(..whole.len() - 1);
        assert_eq!(decode_request(&cut).unwrap_err(), BatchRefusal::Truncated);
        // A length that claims more than there is.
        assert_eq!(
            decode_request(&Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, b'{'])).unwrap_err(),
            BatchRefusal::Truncated
        );
        let mut out = BytesMut::new();
        encode_item(
            &mut out,
            "add",
            vec![("x-fly-rpc-signature".into(), "forged".into())],
            b"",
        );
        assert!(matches!(
            decode_request(&out.freeze()).unwrap_err(),
            BatchRefusal::BadItem { index: 0, .. }
        ));
        let mut out = BytesMut::new();
        for _ in 0..=MAX_BATCH_ITEMS {
            encode_item(&mut out, "add", Vec::new(), b"");
        }
        assert_eq!(
            decode_request(&out.freeze()).unwrap_err(),
            BatchRefusal::TooMany
        );
    }

    #[test]
    fn records_are_read_as_they_complete() {
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&encode_record(1, StatusCode::OK, b"\"one\""));
        stream.extend_from_slice(&encode_record(0, StatusCode::NOT_FOUND, b"{}"));
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        // Arriving a byte at a time, as the worst split of frames would.
        for byte in stream {
            buf.put_u8(byte);
            while let Some(record) = next_record(&mut buf, 100).unwrap() {
                seen.push(record);
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].index, 1);
        assert_eq!(&seen[0].body[..], b"\"one\"");
        assert_eq!(seen[1].status, StatusCode::NOT_FOUND);
        assert!(buf.is_empty());
        let mut big = BytesMut::from(&encode_record(0, StatusCode::OK, &[b'x'; 101])[..]);
        assert!(next_record(&mut big, 100).is_err());
    }
}
