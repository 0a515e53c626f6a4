//! The service behind [`super::FlyReplayLayer`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{ReplayInPrimary, replay_response};
use crate::middleware_support::take_ready;

/// See [`super::FlyReplayLayer`].
#[derive(Debug, Clone)]
pub struct FlyReplayService<S> {
    inner: S,
    regions: fly_rpc::Regions,
    unsafe_methods: bool,
}

impl<S> FlyReplayService<S> {
    pub(super) fn new(inner: S, regions: fly_rpc::Regions, unsafe_methods: bool) -> Self {
        FlyReplayService {
            inner,
            regions,
            unsafe_methods,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FlyReplayService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let primary = self.regions.primary_region().to_owned();
        if self.regions.is_primary() {
            return Box::pin(inner.call(request));
        }
        if self.unsafe_methods && !request.method().is_safe() {
            return Box::pin(async move { Ok(replay_response(&primary)) });
        }
        Box::pin(async move {
            let response = inner.call(request).await?;
            if response.extensions().get::<ReplayInPrimary>().is_some() {
                return Ok(replay_response(&primary));
            }
            Ok(response)
        })
    }
}
