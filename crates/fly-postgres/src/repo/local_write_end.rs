//! How a write in the primary region ended, as its caller is told and as
//! a retry by its id finds it.

use serde::Serialize;

use super::reply::Reply;
use super::unrecorded::Final;
use super::xact_probe::XactRef;
use crate::error::Error;

/// How a write in the primary region ended.
pub(super) enum Ended<O> {
    Replied(Reply<O>),
    Failed(Error),
    /// COMMIT's answer was lost and the database could not be asked
    /// before the deadline (a write without a record).
    Unsettled {
        output: O,
        xact: XactRef,
        pid: i32,
        error: Error,
        attempts: u32,
    },
}

impl<O: Serialize> Ended<O> {
    /// The outcome as kept for a retry by id.
    pub(super) fn kept(&self) -> Final {
        let json = |output: &O| serde_json::to_string(output);
        match self {
            Ended::Replied(reply) => match json(&reply.output) {
                Ok(output) => Final::Committed {
                    output,
                    position: reply.position,
                },
                Err(e) => {
                    Final::Unknown(format!("committed, but its output does not serialize: {e}"))
                }
            },
            Ended::Failed(e) if e.is_maybe_committed() || e.is_committed() => {
                Final::Unknown(e.to_string())
            }
            Ended::Failed(_) => Final::NotCommitted,
            Ended::Unsettled {
                output, xact, pid, ..
            } => match json(output) {
                Ok(output) => Final::Unsettled {
                    xact: *xact,
                    pid: *pid,
                    output,
                },
                Err(e) => Final::Unknown(format!("its output does not serialize: {e}")),
            },
        }
    }
}

impl<O> Ended<O> {
    /// What the caller is told; "maybe committed" carries the id that
    /// settles it.
    pub(super) fn into_result(self, mutation: &str, id: &str) -> Result<Reply<O>, Error> {
        match self {
            Ended::Replied(reply) => Ok(reply),
            Ended::Failed(e) => Err(e),
            Ended::Unsettled {
                xact,
                error,
                attempts,
                ..
            } => Err(Error::maybe_committed(
                mutation,
                &xact.settle_id(id),
                attempts,
                format!(
                    "COMMIT's answer was lost ({error}) and the database could not be asked \
                     before the deadline whether transaction {} committed",
                    xact.xid
                ),
            )),
        }
    }
}
