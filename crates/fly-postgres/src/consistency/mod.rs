//! Consistency across requests, instances and regions: what a request wrote
//! (and, in [`Consistency::Session`] mode, what it saw) goes back to the
//! client as a signed token (header and cookie); a later request that
//! carries it, to any instance, waits until that instance's replica shows
//! it before the handler runs. LiteFS's TXID cookie and D1's bookmarks, for
//! Postgres, timeline-aware and unforgeable.
//!
// Not run as a doctest: needs a running database and a client.
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use fly_postgres::{Consistency, ConsistencyLayer, Repo, WaitFallback};
//!
//! # fn app(repo: Repo) -> Router {
//! Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         ConsistencyLayer::new(repo)
//!             .mode(Consistency::Session)
//!             .max_wait(Duration::from_millis(200), WaitFallback::Unavailable),
//!     )
//! # }
//! ```

mod layer;
mod mode;
mod request_token;
mod service;
mod token;

use std::cell::Cell;

use crate::repo::WriteTimings;
use crate::wal_position::WalPosition;

pub use layer::ConsistencyLayer;
pub use mode::{Consistency, UnknownConsistency, WaitFallback};
pub use service::ConsistencyService;
pub(crate) use token::KEY_CONTEXT as TOKEN_KEY_CONTEXT;

/// The request and response header that carries the consistency token.
pub const LSN_HEADER: &str = "fly-lsn";
/// The cookie that carries the consistency token for browsers.
pub const LSN_COOKIE: &str = "fly_lsn";
/// The request header that picks a [`Consistency`] for one request.
pub const CONSISTENCY_HEADER: &str = "fly-consistency";

/// What the current request left for its response.
#[derive(Debug, Default, Clone, Copy)]
struct RequestRecord {
    written: Option<WalPosition>,
    seen: Option<WalPosition>,
    timings: Option<WriteTimings>,
    from_primary: bool,
}

tokio::task_local! {
    static RECORD: Cell<RequestRecord>;
}

fn update(change: impl FnOnce(&mut RequestRecord)) {
    let _ = RECORD.try_with(|cell| {
        let mut record = cell.get();
        change(&mut record);
        cell.set(record);
    });
}

/// Notes that the current request committed a write at `position`. The
/// repo calls it after every write; outside a [`ConsistencyLayer`] it does
/// nothing.
pub(crate) fn record_write(position: WalPosition) {
    update(|r| r.written = Some(WalPosition::latest(r.written, position)));
}

/// Notes that the current request's reads saw the database at `position`
/// (session and strong modes).
pub(crate) fn record_seen(position: WalPosition) {
    update(|r| r.seen = Some(WalPosition::latest(r.seen, position)));
}

/// Whether the current request reads from the primary.
pub(crate) fn reading_from_primary() -> bool {
    RECORD
        .try_with(|cell| cell.get().from_primary)
        .unwrap_or(false)
}

/// Keeps the writes made so far in this request from reaching the client:
/// the [`ConsistencyLayer`] sends no token for them, so the client's next
/// request does not wait for them. For a page that shows what a read
/// without the wait looks like; everything else wants the token. Outside a
/// [`ConsistencyLayer`] it does nothing.
pub fn forget_written_lsn() {
    update(|r| r.written = None);
}

/// Adds a write's phases to the current request's; outside a
/// [`ConsistencyLayer`] it does nothing.
pub(crate) fn record_timings(timings: &WriteTimings) {
    update(|r| {
        let mut total = r.timings.unwrap_or_default();
        total.add(timings);
        r.timings = Some(total);
    });
}

/// Runs `future` with a fresh record (`seen` already noted), and returns
/// what it left.
async fn recording<F: Future>(
    seen: Option<WalPosition>,
    from_primary: bool,
    future: F,
) -> (F::Output, RequestRecord) {
    let start = RequestRecord {
        seen,
        from_primary,
        ..RequestRecord::default()
    };
    RECORD
        .scope(Cell::new(start), async {
            let output = future.await;
            (output, RECORD.with(Cell::get))
        })
        .await
}
