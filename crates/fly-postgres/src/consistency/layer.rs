//! The tower layer of [`super::ConsistencyService`].

use std::time::Duration;

use tower_layer::Layer;

use super::service::ConsistencyService;
use crate::repo::Repo;

/// Wraps a service (an axum `Router`, say) so that:
///
/// - a request carrying an LSN (`fly-lsn` header or `fly_lsn` cookie) runs
///   only once the local replica has replayed it; if that takes longer than
///   the repo's replication timeout the answer is `503` with `Retry-After`;
/// - a response to a request that wrote carries the highest LSN written, in
///   the header and in a cookie (default lifetime 5 minutes).
///
/// In the primary region waits return at once.
#[derive(Debug, Clone)]
pub struct ConsistencyLayer {
    repo: Repo,
    cookie_max_age: Duration,
}

impl ConsistencyLayer {
    /// A layer waiting on `repo`'s local database.
    pub fn new(repo: Repo) -> Self {
        ConsistencyLayer {
            repo,
            cookie_max_age: Duration::from_secs(300),
        }
    }

    /// How long browsers keep the LSN cookie (default 5 minutes): after
    /// that, replication has long caught up.
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.cookie_max_age = max_age;
        self
    }
}

impl<S> Layer<S> for ConsistencyLayer {
    type Service = ConsistencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConsistencyService::new(inner, self.repo.clone(), self.cookie_max_age)
    }
}
