//! Typed procedures: calls that run in another region.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A typed, serializable call that an instance in another region runs.
///
/// The value itself carries the arguments; [`Procedure::NAME`] is its stable
/// wire name, which must not change between versions of the app (a peer that
/// does not know a name answers [`crate::Error::UnknownProcedure`]).
///
/// ```
/// use std::sync::Arc;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greet { name: String }
///
/// #[derive(Debug, Serialize, Deserialize, thiserror::Error)]
/// #[error("nobody to greet")]
/// struct Nobody;
///
/// impl fly_rpc::Procedure for Greet {
///     const NAME: &'static str = "greet";
///     type Output = String;
///     type Error = Nobody;
///     type State = String; // this region's name, say
///
///     async fn run(self, region: Arc<String>, _ctx: fly_rpc::CallContext) -> Result<String, Nobody> {
///         if self.name.is_empty() { return Err(Nobody) }
///         Ok(format!("hello {} from {region}", self.name))
///     }
/// }
/// ```
pub trait Procedure: Serialize + DeserializeOwned + Send + 'static {
    /// The stable wire name.
    const NAME: &'static str;

    /// Whether running it twice is harmless (it reads only, or it deduplicates
    /// by [`CallContext::idempotency_key`]). Only then does a call whose
    /// connection broke after sending move on to another instance; otherwise
    /// the caller gets [`crate::Error::Transport`] and decides. Default: no.
    const RETRY_SAFE: bool = false;

    /// What a successful call returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The procedure's own error, carried back typed to the caller.
    type Error: Serialize + DeserializeOwned + fmt::Display + Send + 'static;

    /// Shared state the handler receives (a pool, a config; `()` for none).
    type State: Send + Sync + 'static;

    /// Runs the procedure on the instance that serves the call.
    fn run(
        self,
        state: Arc<Self::State>,
        ctx: CallContext,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// Facts about one call, given to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallContext {
    /// The caller's region.
    pub caller_region: String,
    /// A key the caller keeps the same across retries of one logical call,
    /// for handlers that deduplicate (exactly-once).
    pub idempotency_key: Option<String>,
    /// Whether the call ran in this process without a network hop.
    pub local: bool,
    /// The W3C trace context the call came with, if any.
    pub trace_context: Option<crate::trace_context::TraceParent>,
}

impl CallContext {
    /// A context for a call made by `caller_region`.
    pub fn new(caller_region: impl Into<String>) -> Self {
        CallContext {
            caller_region: caller_region.into(),
            idempotency_key: None,
            local: false,
            trace_context: None,
        }
    }
}
