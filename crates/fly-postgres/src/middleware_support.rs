//! Plumbing shared by the crate's two tower middlewares
//! ([`crate::ConsistencyLayer`], [`crate::FlyReplayLayer`]).

use http::{HeaderValue, Response, StatusCode, header};

/// Takes the inner service that `poll_ready` readied, leaving a fresh clone
/// in its place for the next call (tower's rule for cloned services).
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A plain-text answer written by the middleware itself.
pub(crate) fn text_response<B: From<String>>(status: StatusCode, text: String) -> Response<B> {
    let mut response = Response::new(B::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
