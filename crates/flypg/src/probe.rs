//! A no-op procedure every `flypg` node serves: for `flypg status`, the RPC
//! benchmark and the failover tests.

use std::sync::Arc;

use fly_rpc::{CallContext, Procedure};
use serde::{Deserialize, Serialize};

/// Answers with the serving node's name; runs nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Noop;

/// Who answered a [`Noop`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NoopReply {
    pub(crate) node: String,
}

impl Procedure for Noop {
    const NAME: &'static str = "flypg.noop";
    const RETRY_SAFE: bool = true;
    type Output = NoopReply;
    type Error = String;
    type State = String;

    async fn run(self, node: Arc<String>, _: CallContext) -> Result<NoopReply, String> {
        Ok(NoopReply {
            node: node.as_str().to_owned(),
        })
    }
}
