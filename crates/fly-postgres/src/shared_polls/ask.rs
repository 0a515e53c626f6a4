//! The procedure a region's instances ask their poll leader with.

use std::sync::Arc;
use std::time::Duration;

use fly_rpc::{CallContext, Procedure};
use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;
use crate::tracker::SiblingLink;

/// The longest the leader holds an ask before answering with what it has,
/// so a follower notices a leader that stopped within a fraction of a
/// second.
pub(super) const LONG_POLL: Duration = Duration::from_millis(250);

/// "Tell me the replay position of the server we both watch."
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReplayAsk {
    /// The asking tracker: an instance that reaches itself learns so.
    pub(super) tracker: u64,
    /// The server the asker's tracker is connected to.
    pub(super) server: String,
    pub(super) want: Want,
}

/// What the asker's waiters need.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Want {
    /// Whether this instance can lead: answered at once.
    Probe,
    /// A position from a poll that starts after the ask arrived.
    Fresh,
    /// Answer once replay reaches this position (or after [`LONG_POLL`]).
    Reach(Lsn),
}

/// The leader's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub(crate) enum ReplayAnswer {
    /// The ask reached the asker itself.
    Myself,
    /// This instance watches another server (or cannot tell yet).
    OtherServer,
    /// This instance does not poll itself (it follows a leader of its
    /// own): following it could make a loop.
    NotPolling,
    /// What the leader's tracker knows after the wait.
    Position {
        in_recovery: bool,
        replayed: Option<Lsn>,
    },
    /// No poll answered a fresh ask in time.
    NoAnswer,
}

impl Procedure for ReplayAsk {
    const NAME: &'static str = "fly_postgres.replay_position";
    const RETRY_SAFE: bool = true;
    type Output = ReplayAnswer;
    type Error = String;
    type State = SiblingLink;

    async fn run(self, link: Arc<SiblingLink>, _ctx: CallContext) -> Result<ReplayAnswer, String> {
        if self.tracker == link.id() {
            return Ok(ReplayAnswer::Myself);
        }
        if link.stopped() || link.is_delegated() {
            return Ok(ReplayAnswer::NotPolling);
        }
        if link.server().is_none() {
            // Never connected (nobody here waited yet): one poll connects
            // it and learns which server it reaches.
            link.fresh(LONG_POLL).await;
        }
        if link.server().as_deref() != Some(self.server.as_str()) {
            return Ok(ReplayAnswer::OtherServer);
        }
        match self.want {
            Want::Probe => {}
            Want::Fresh => {
                if !link.fresh(LONG_POLL).await {
                    return Ok(ReplayAnswer::NoAnswer);
                }
            }
            Want::Reach(target) => link.wait_until(target, LONG_POLL).await,
        }
        // The tracker may have reconnected elsewhere meanwhile.
        if link.server().as_deref() != Some(self.server.as_str()) {
            return Ok(ReplayAnswer::OtherServer);
        }
        let (in_recovery, replayed) = link.known();
        Ok(ReplayAnswer::Position {
            in_recovery,
            replayed,
        })
    }
}
