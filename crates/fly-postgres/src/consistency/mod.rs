//! Read-your-writes across requests and instances: the LSN a request wrote
//! goes back to the client (header and cookie); a later request that carries
//! it, to any instance, waits until that instance's replica has replayed it
//! before the handler runs. LiteFS's TXID cookie, for Postgres.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use fly_postgres::{ConsistencyLayer, Repo};
//!
//! # fn app(repo: Repo) -> Router {
//! Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ConsistencyLayer::new(repo))
//! # }
//! ```

mod layer;
mod service;

use std::cell::Cell;

use http::HeaderMap;

use crate::lsn::Lsn;
use crate::repo::WriteTimings;

pub use layer::ConsistencyLayer;
pub use service::ConsistencyService;

/// The response and request header that carries an LSN.
pub const LSN_HEADER: &str = "fly-lsn";
/// The cookie that carries an LSN for browsers.
pub const LSN_COOKIE: &str = "fly_lsn";

tokio::task_local! {
    static WRITTEN: Cell<u64>;
    static TIMINGS: Cell<Option<WriteTimings>>;
}

/// Notes that the current request committed a write at `lsn`. The repo
/// calls it after every write; outside a [`ConsistencyLayer`] it does nothing.
pub(crate) fn record_write(lsn: Lsn) {
    let _ = WRITTEN.try_with(|written| written.set(written.get().max(lsn.as_u64())));
}

/// Keeps the writes made so far in this request from reaching the client:
/// the [`ConsistencyLayer`] sends no `fly-lsn` header or cookie for them, so
/// the client's next request does not wait for them. For a page that shows
/// what a read without the wait looks like; everything else wants the
/// cookie. Outside a [`ConsistencyLayer`] it does nothing.
pub fn forget_written_lsn() {
    let _ = WRITTEN.try_with(|written| written.set(0));
}

/// Adds a write's phases to the current request's; outside a
/// [`ConsistencyLayer`] it does nothing.
pub(crate) fn record_timings(timings: &WriteTimings) {
    let _ = TIMINGS.try_with(|sum| {
        let mut total = sum.get().unwrap_or_default();
        total.add(timings);
        sum.set(Some(total));
    });
}

/// What a request's writes left for its response.
pub(crate) struct Recorded {
    /// The highest LSN it wrote.
    pub(crate) lsn: Option<Lsn>,
    /// The phases of its writes, summed.
    pub(crate) timings: Option<WriteTimings>,
}

/// Runs `future` with a fresh record, and returns what its writes left.
pub(crate) async fn recording<F: Future>(future: F) -> (F::Output, Recorded) {
    let record = async {
        let output = future.await;
        let written = WRITTEN.with(Cell::get);
        let timings = TIMINGS.with(Cell::get);
        (
            output,
            Recorded {
                lsn: (written > 0).then(|| Lsn::new(written)),
                timings,
            },
        )
    };
    WRITTEN
        .scope(Cell::new(0), TIMINGS.scope(Cell::new(None), record))
        .await
}

/// Why a request's LSN could not be used.
#[derive(Debug)]
pub(crate) struct BadLsn(pub(crate) String);

/// The LSN a request asks to see: the header wins over the cookie. A
/// malformed header is the client's error; a malformed cookie is ignored
/// (a browser must not be stuck with it).
pub(crate) fn requested_lsn(headers: &HeaderMap) -> Result<Option<Lsn>, BadLsn> {
    if let Some(value) = headers.get(LSN_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| BadLsn(format!("header {LSN_HEADER} is not text")))?;
        return text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| BadLsn(format!("header {LSN_HEADER}: {e}")));
    }
    let from_cookie = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LSN_COOKIE)
        .and_then(|(_, value)| value.trim_matches('"').parse().ok());
    Ok(from_cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_wins_and_bad_cookies_are_ignored() {
        let mut h = HeaderMap::new();
        assert!(requested_lsn(&h).unwrap().is_none());
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=b; fly_lsn=0/16; c=d"),
        );
        assert_eq!(requested_lsn(&h).unwrap(), Some(Lsn::new(0x16)));
        h.insert(LSN_HEADER, HeaderValue::from_static("1/0"));
        assert_eq!(requested_lsn(&h).unwrap(), Some(Lsn::new(1 << 32)));
        h.insert(LSN_HEADER, HeaderValue::from_static("nope"));
        assert!(requested_lsn(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("fly_lsn=garbage"),
        );
        assert!(requested_lsn(&h).unwrap().is_none());
    }
}
