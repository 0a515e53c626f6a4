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
pub(crate) mod mode;
mod request_token;
mod service;
pub(crate) mod token;

pub use crate::request_record::forget_written_lsn;
pub use layer::ConsistencyLayer;
pub use mode::{Consistency, MAX_STALENESS_BOUND, UnknownConsistency, WaitFallback};
pub use service::ConsistencyService;

/// The request and response header that carries the consistency token.
pub const LSN_HEADER: &str = "fly-lsn";
/// The cookie that carries the consistency token for browsers.
pub const LSN_COOKIE: &str = "fly_lsn";
/// The response header that says a request's reads went to the primary
/// (value `primary`): the layer's [`WaitFallback::PrimaryPool`] moved it
/// there because the local replica could not serve it. Absent otherwise.
pub const READ_FROM_HEADER: &str = "fly-read-from";
/// The request header that picks a [`Consistency`] for one request.
pub const CONSISTENCY_HEADER: &str = "fly-consistency";
