//! The tower layer of [`super::ConsistencyService`].

use std::time::Duration;

use super::mode::{Consistency, WaitFallback};
use crate::error::Error;
use crate::repo::Repo;

/// Wraps a service (an axum `Router`, say) so that:
///
/// - a request carrying a consistency token (`fly-lsn` header or `fly_lsn`
///   cookie) runs only once the local replica shows what the token names,
///   per the [`Consistency`] mode (the layer's, or the request's
///   `fly-consistency` header, up to [`ConsistencyLayer::max_header_mode`]);
///   a token that does not verify is ignored; a
///   [`Consistency::Bounded`] request also runs only once the replica is
///   within its bound of the primary;
/// - a response carries the raised token (header and cookie, default
///   lifetime 5 minutes) when the request wrote, or, in session mode, saw
///   a later state than its token named;
/// - a token from a write that an asynchronous failover lost answers
///   `410 Gone`; a wait longer than [`ConsistencyLayer::max_wait`] (default:
///   the repo's replication timeout) falls back as configured, or answers
///   `503` with `Retry-After`.
///
/// While the local replica is known not to answer, every request takes
/// the [`max_wait`](ConsistencyLayer::max_wait) fallback at once, with no
/// wait of its own (without one, requests run as usual, and a bounded one
/// is answered 503); the repo looks at the replica in the background and
/// serves locally again within a second or so of its return.
///
/// In the primary region waits return at once.
#[derive(Debug, Clone)]
pub struct ConsistencyLayer {
    pub(super) repo: Repo,
    pub(super) cookie_max_age: Duration,
    pub(super) mode: Consistency,
    pub(super) max_wait: Option<(Duration, WaitFallback)>,
    pub(super) accept_plain_lsn: bool,
    pub(super) max_header_mode: Consistency,
    pub(super) min_header_bound: Duration,
}

impl ConsistencyLayer {
    /// A layer waiting on `repo`'s local database, in
    /// [`Consistency::ReadYourWrites`] mode.
    pub fn new(repo: Repo) -> Self {
        ConsistencyLayer {
            repo,
            cookie_max_age: Duration::from_secs(300),
            mode: Consistency::default(),
            max_wait: None,
            accept_plain_lsn: false,
            max_header_mode: Consistency::Session,
            min_header_bound: Duration::from_secs(1),
        }
    }

    /// A layer configured by the environment, for operators:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `FLY_POSTGRES_CONSISTENCY` | the default mode: `eventual`, `read-your-writes` (default), `bounded=<duration>` (e.g. `bounded=2s`), `session`, `strong` |
    /// | `FLY_POSTGRES_MAX_HEADER_CONSISTENCY` | [`ConsistencyLayer::max_header_mode`] (default `session`) |
    /// | `FLY_POSTGRES_MAX_WAIT_MS` | [`ConsistencyLayer::max_wait`] in milliseconds (default: none) |
    /// | `FLY_POSTGRES_WAIT_FALLBACK` | what follows it: `replay`, `primary-pool`, `unavailable` (default: `replay` on Fly.io, else `primary-pool` when the repo has a primary pool, else `unavailable`) |
    ///
    /// A value that does not parse is [`Error::Config`] naming the variable.
    pub fn from_env(repo: Repo) -> Result<Self, Error> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let mut layer = ConsistencyLayer::new(repo);
        if let Some(mode) = var("FLY_POSTGRES_CONSISTENCY") {
            layer.mode = mode
                .parse()
                .map_err(|e| Error::Config(format!("FLY_POSTGRES_CONSISTENCY: {e}")))?;
        }
        if let Some(mode) = var("FLY_POSTGRES_MAX_HEADER_CONSISTENCY") {
            layer.max_header_mode = mode
                .parse()
                .map_err(|e| Error::Config(format!("FLY_POSTGRES_MAX_HEADER_CONSISTENCY: {e}")))?;
        }
        if let Some(ms) = var("FLY_POSTGRES_MAX_WAIT_MS") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                Error::Config("FLY_POSTGRES_MAX_WAIT_MS must be a number of milliseconds".into())
            })?;
            let fallback = match var("FLY_POSTGRES_WAIT_FALLBACK") {
                Some(text) => text
                    .parse()
                    .map_err(|e| Error::Config(format!("FLY_POSTGRES_WAIT_FALLBACK: {e}")))?,
                None if var("FLY_APP_NAME").is_some() => WaitFallback::Replay,
                None if layer.repo.has_primary_pool() => WaitFallback::PrimaryPool,
                None => WaitFallback::Unavailable,
            };
            layer.max_wait = Some((Duration::from_millis(ms), fallback));
        }
        Ok(layer)
    }

    /// The mode of requests that do not name one in `fly-consistency`
    /// (default [`Consistency::ReadYourWrites`]).
    pub fn mode(mut self, mode: Consistency) -> Self {
        self.mode = mode;
        self
    }

    /// Waits at most `max_wait` for the local replica, then does what
    /// `fallback` says instead of waiting for the lag. Without it a request
    /// waits up to the repo's replication timeout, then answers 503.
    pub fn max_wait(mut self, max_wait: Duration, fallback: WaitFallback) -> Self {
        self.max_wait = Some((max_wait, fallback));
        self
    }

    /// Whether a plain LSN (`0/16B3748`, as a client that tracks positions
    /// itself would send) in the token header or cookie is waited on
    /// (default: no, it is ignored). A plain LSN is not signed, so anyone
    /// can send one: it is waited on only when it is at most 64 MiB of WAL
    /// ahead of what the replica last replayed, and ignored while the
    /// tracker knows no replay position yet. Turn it on only for clients
    /// that cannot carry the signed token.
    pub fn accept_plain_lsn(mut self, accept: bool) -> Self {
        self.accept_plain_lsn = accept;
        self
    }

    /// The strongest mode a request's `fly-consistency` header may ask for
    /// (default [`Consistency::Session`]); the layer's own [`mode`] is
    /// always allowed. Any client on the internet can send the header, and
    /// a [`Consistency::Strong`] read costs a round trip to the primary
    /// region: allow it (`max_header_mode(Consistency::Strong)`) only when
    /// the app's clients are trusted or the cost is acceptable. A header
    /// asking for more gets the ceiling, named in the response's
    /// `fly-consistency` header, and counts in
    /// `fly_postgres_consistency_header_capped_total`.
    ///
    /// [`mode`]: ConsistencyLayer::mode
    pub fn max_header_mode(mut self, ceiling: Consistency) -> Self {
        self.max_header_mode = ceiling;
        self
    }

    /// The tightest bound a request's `fly-consistency: bounded=<duration>`
    /// header may ask for (default 1 s); a tighter one is served with this
    /// bound, named in the response's `fly-consistency` header. A bound
    /// shorter than the time since the primary was last heard from costs
    /// the read a question to the primary region (one at a time, shared by
    /// every read waiting): this keeps clients from turning every read
    /// into one. The layer's own [`mode`](ConsistencyLayer::mode) may be
    /// tighter.
    pub fn min_header_bound(mut self, min: Duration) -> Self {
        self.min_header_bound = min;
        self
    }

    /// How long browsers keep the token cookie (default 5 minutes): after
    /// that, replication has long caught up.
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.cookie_max_age = max_age;
        self
    }
}
