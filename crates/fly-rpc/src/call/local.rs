//! A call to the node's own region: the registered handler run here, in a
//! task of its own, directly or through the wire format.

use crate::error::Error;
use crate::procedure::{CallContext, Procedure};
use crate::registry::Outcome;
use crate::remote_error::RemoteError;
use crate::state::NodeInner;

use super::{CallOptions, encode};

/// Runs `procedure` with this node's registered state.
pub(super) async fn call_local<P: Procedure>(
    inner: &NodeInner,
    procedure: P,
    options: CallOptions,
) -> Result<P::Output, Error> {
    let Some(state) = inner.registry.state::<P>() else {
        return Err(unknown_here::<P>(inner));
    };
    let ctx = CallContext {
        caller_region: inner.regions.my_region().to_owned(),
        idempotency_key: options.idempotency_key,
        local: true,
        trace_context: crate::trace_context::current_trace_context(),
    };
    if options.through_wire {
        return call_local_through_wire(inner, procedure, ctx).await;
    }
    // Spawned for the same isolation as a remote call: a panic becomes
    // an error and a timed-out caller does not cancel the handler.
    let trace = ctx.trace_context.clone();
    match tokio::spawn(crate::trace_context::within(
        trace,
        procedure.run(state, ctx),
    ))
    .await
    {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(Error::Remote(RemoteError::new(
            P::NAME.to_owned(),
            error.to_string(),
            serde_json::to_value(&error).unwrap_or(serde_json::Value::Null),
        ))),
        Err(_) => Err(Error::HandlerPanicked {
            procedure: P::NAME.to_owned(),
            peer: HERE.to_owned(),
        }),
    }
}

/// How a local call names the node that served it.
const HERE: &str = "this node";

/// This node does not serve `P`.
fn unknown_here<P: Procedure>(inner: &NodeInner) -> Error {
    let info = inner.info();
    Error::UnknownProcedure {
        name: P::NAME.to_owned(),
        peer: HERE.to_owned(),
        peer_version: info.version,
        peer_procedures: info.procedures,
    }
}

/// [`call_local`] through the wire format: the same handler and the same
/// mapping of its outcome as a call from a peer, without the network.
async fn call_local_through_wire<P: Procedure>(
    inner: &NodeInner,
    procedure: P,
    ctx: CallContext,
) -> Result<P::Output, Error> {
    let args = encode(&procedure)?;
    drop(procedure);
    let Some(handler) = inner.registry.handler(P::NAME) else {
        return Err(unknown_here::<P>(inner));
    };
    let trace = ctx.trace_context.clone();
    let outcome = tokio::spawn(crate::trace_context::within(trace, handler(args, ctx))).await;
    match outcome {
        Ok(Outcome::Ok(bytes)) => {
            serde_json::from_slice(&bytes).map_err(|e| Error::UndecodableOutput {
                procedure: P::NAME.to_owned(),
                peer: HERE.to_owned(),
                message: e.to_string(),
            })
        }
        Ok(Outcome::BadArgs(message)) => Err(Error::BadRequest {
            peer: HERE.to_owned(),
            status: 400,
            message,
        }),
        Ok(Outcome::Failed { message, payload }) => Err(Error::Remote(RemoteError::new(
            P::NAME.to_owned(),
            message,
            payload,
        ))),
        Ok(Outcome::Unencodable(message)) => Err(Error::Transport {
            peer: HERE.to_owned(),
            message: format!(
                "`{}` produced a value that does not serialize: {message}",
                P::NAME
            ),
        }),
        Err(_) => Err(Error::HandlerPanicked {
            procedure: P::NAME.to_owned(),
            peer: HERE.to_owned(),
        }),
    }
}
