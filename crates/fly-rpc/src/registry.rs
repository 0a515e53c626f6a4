//! The procedures a node serves, by wire name.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::procedure::{CallContext, Procedure};

/// What running an erased handler produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The output, serialized.
    Ok(Vec<u8>),
    /// The arguments did not decode as the procedure's type.
    BadArgs(String),
    /// The procedure's own error: its `Display` text and serialized value.
    Failed {
        message: String,
        payload: serde_json::Value,
    },
    /// The output or error did not serialize.
    Unencodable(String),
}

pub(crate) type ErasedHandler =
    Arc<dyn Fn(Bytes, CallContext) -> BoxFuture<'static, Outcome> + Send + Sync>;

#[derive(Clone)]
struct Entry {
    handler: ErasedHandler,
    state: Arc<dyn Any + Send + Sync>,
}

/// Procedures by name, each with its state. Built once, then shared.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    entries: BTreeMap<&'static str, Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Registry {
    /// Adds `P`; a second registration of the same name replaces the first.
    pub(crate) fn register<P: Procedure>(&mut self, state: Arc<P::State>) {
        let handler_state = Arc::clone(&state);
        let handler: ErasedHandler = Arc::new(move |args: Bytes, ctx: CallContext| {
            let state = Arc::clone(&handler_state);
            async move {
                let procedure: P = match serde_json::from_slice(&args) {
                    Ok(p) => p,
                    Err(e) => {
                        return Outcome::BadArgs(format!(
                            "arguments of `{}` do not decode: {e}",
                            P::NAME
                        ));
                    }
                };
                match procedure.run(state, ctx).await {
                    Ok(output) => match serde_json::to_vec(&output) {
                        Ok(bytes) => Outcome::Ok(bytes),
                        Err(e) => Outcome::Unencodable(e.to_string()),
                    },
                    Err(error) => match serde_json::to_value(&error) {
                        Ok(payload) => Outcome::Failed {
                            message: error.to_string(),
                            payload,
                        },
                        Err(e) => Outcome::Unencodable(e.to_string()),
                    },
                }
            }
            .boxed()
        });
        self.entries.insert(
            P::NAME,
            Entry {
                handler,
                state: state as Arc<dyn Any + Send + Sync>,
            },
        );
    }

    /// The erased handler for a wire call.
    pub(crate) fn handler(&self, name: &str) -> Option<ErasedHandler> {
        self.entries.get(name).map(|e| Arc::clone(&e.handler))
    }

    /// The typed state of `P`, for a local call that skips serialization.
    pub(crate) fn state<P: Procedure>(&self) -> Option<Arc<P::State>> {
        let entry = self.entries.get(P::NAME)?;
        Arc::clone(&entry.state).downcast::<P::State>().ok()
    }

    /// The names served, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.entries.keys().map(|k| (*k).to_owned()).collect()
    }
}
