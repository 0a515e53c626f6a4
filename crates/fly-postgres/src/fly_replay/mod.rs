//! The `fly-replay` fallback: on Fly.io, a response carrying
//! `fly-replay: region=<primary>` makes Fly's proxy run the request again in
//! the primary region. Useful for writes that bypass the repo.
//!
// Not run as a doctest: needs a running database and a client.
//! ```no_run
//! use axum::{Router, routing::post};
//! use fly_postgres::FlyReplayLayer;
//!
//! # fn app(regions: fly_rpc::Regions) -> Router {
//! Router::new()
//!     .route("/legacy-write", post(|| async { "written" }))
//!     .layer(FlyReplayLayer::new(regions))
//! # }
//! ```

mod service;

use http::{HeaderValue, Response, StatusCode};

pub use service::FlyReplayService;

/// The header Fly's proxy acts on.
pub const FLY_REPLAY_HEADER: &str = "fly-replay";

/// Put this in a response's extensions (for example when a handler's write
/// failed with [`crate::DbError::is_read_only_transaction`]) and, in a
/// replica region, [`FlyReplayLayer`] turns the response into a replay to
/// the primary region.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayInPrimary;

/// Answers requests that need the primary with `fly-replay` in replica
/// regions:
///
/// - requests with an unsafe method (POST, PUT, PATCH, DELETE, ...), unless
///   turned off with [`FlyReplayLayer::unsafe_methods`];
/// - any response marked with [`ReplayInPrimary`].
///
/// In the primary region it passes everything through.
#[derive(Debug, Clone)]
pub struct FlyReplayLayer {
    regions: fly_rpc::Regions,
    unsafe_methods: bool,
}

impl FlyReplayLayer {
    /// A layer for an instance with these regions.
    pub fn new(regions: fly_rpc::Regions) -> Self {
        FlyReplayLayer {
            regions,
            unsafe_methods: true,
        }
    }

    /// Whether unsafe methods are replayed up front (default: yes). Turn it
    /// off when writes go through the repo and only marked responses should
    /// be replayed.
    pub fn unsafe_methods(mut self, replay: bool) -> Self {
        self.unsafe_methods = replay;
        self
    }
}

impl<S> tower_layer::Layer<S> for FlyReplayLayer {
    type Service = FlyReplayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FlyReplayService::new(inner, self.regions.clone(), self.unsafe_methods)
    }
}

/// A response that asks Fly's proxy to replay the request in `region`.
pub fn replay_response<B: From<String>>(region: &str) -> Response<B> {
    let mut response = crate::middleware_support::text_response(
        StatusCode::CONFLICT,
        format!("this request needs the primary region; replaying in {region}"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("region={region}")) {
        response.headers_mut().insert(FLY_REPLAY_HEADER, value);
    }
    response
}
