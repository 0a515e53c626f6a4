//! The task that asks the region's poll leader instead of polling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fly_rpc::{CallOptions, Node};
use tokio::task::JoinHandle;

use super::ask::{LONG_POLL, ReplayAnswer, ReplayAsk, Want};
use crate::tracker::{Need, SiblingLink};

/// How long a probe of a would-be leader may take (one that never waited
/// connects first). Waits are answered here meanwhile.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// An ask's deadline: the leader's longest hold plus a margin.
const ASK_TIMEOUT: Duration = LONG_POLL.saturating_add(Duration::from_millis(250));
/// How often the leader is chosen again (a lower address may have come
/// back, or this instance may have become the lowest).
const RECHOOSE_EVERY: Duration = Duration::from_secs(10);
/// The pause before looking for a leader again after none could lead.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts following the region's poll leader for `link`'s tracker. Stops
/// when the tracker is gone or the handle is aborted; either way the
/// tracker polls for itself again.
pub(crate) fn spawn(link: SiblingLink, node: Node) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _take_back = TakeBack(link.clone());
        run(&link, &node).await;
    })
}

/// Hands polling back to the tracker's own poller however the task ends.
struct TakeBack(SiblingLink);

impl Drop for TakeBack {
    fn drop(&mut self) {
        self.0.set_delegated(false);
    }
}

async fn run(link: &SiblingLink, node: &Node) {
    let region = node.regions().my_region().to_owned();
    loop {
        // Nothing to share until someone here waits.
        let Some(need) = link.next_need().await else {
            return;
        };
        let Some(server) = link.server() else {
            // The poller is connecting now; it tells which server it reaches.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match choose_leader(link, node, &region, &server).await {
            Choice::Follow(leader) => {
                tracing::debug!(%leader, "following the region's replay poll leader");
                follow(link, node, leader, &server, need).await;
                link.set_delegated(false);
            }
            Choice::Lead => tokio::time::sleep(RECHOOSE_EVERY).await,
            Choice::Nobody => tokio::time::sleep(RETRY_AFTER).await,
        }
        if link.stopped() {
            return;
        }
    }
}

/// Who polls for this instance.
enum Choice {
    /// The instance at this address.
    Follow(SocketAddr),
    /// This instance itself: it is the lowest address that can lead.
    Lead,
    /// Nobody else could (none listed, none answered, none watches the same
    /// server): this instance polls, and looks again soon.
    Nobody,
}

/// The region's lowest instance address that watches `server` and polls
/// for itself.
async fn choose_leader(link: &SiblingLink, node: &Node, region: &str, server: &str) -> Choice {
    let Ok(mut instances) = node.instances(region).await else {
        return Choice::Nobody;
    };
    instances.sort();
    instances.dedup();
    let mut lower_follows = false;
    for addr in instances {
        let probe = ask(link, server, Want::Probe);
        let answer = node
            .call_instance(addr, probe, CallOptions::new().timeout(PROBE_TIMEOUT))
            .await;
        match answer {
            // A lower address that still follows someone (its leader just
            // went, it has not noticed yet) will lead in a moment: look
            // again soon rather than lead beside it.
            Ok(ReplayAnswer::Myself) if lower_follows => return Choice::Nobody,
            Ok(ReplayAnswer::Myself) => return Choice::Lead,
            Ok(ReplayAnswer::Position { .. }) => return Choice::Follow(addr),
            Ok(ReplayAnswer::NotPolling) => lower_follows = true,
            Ok(_) | Err(_) => {}
        }
    }
    Choice::Nobody
}

/// Counts a return to polling here.
fn fell_back(link: &SiblingLink, reason: &'static str) {
    metrics::counter!(
        "fly_postgres_shared_poll_fallbacks_total",
        "tracker" => link.label(), "reason" => reason
    )
    .increment(1);
}

fn ask(link: &SiblingLink, server: &str, want: Want) -> ReplayAsk {
    ReplayAsk {
        tracker: link.id(),
        server: server.to_owned(),
        want,
    }
}

/// Answers this tracker's waits from `leader` until it fails, stops
/// leading, or it is time to choose again.
async fn follow(link: &SiblingLink, node: &Node, leader: SocketAddr, server: &str, first: Need) {
    link.set_delegated(true);
    let until = Instant::now() + RECHOOSE_EVERY;
    let mut need = first;
    loop {
        let want = match need {
            Need::Fresh { .. } => Want::Fresh,
            Need::Reach(target) => Want::Reach(target),
        };
        let asked = node.call_instance(
            leader,
            ask(link, server, want),
            CallOptions::new().timeout(ASK_TIMEOUT),
        );
        tokio::select! {
            answer = asked => match answer {
                Ok(ReplayAnswer::Position { in_recovery, replayed }) => {
                    link.publish(need, in_recovery, replayed);
                }
                Ok(other) => {
                    tracing::debug!(%leader, answer = ?other, "replay poll leader stopped leading; polling here");
                    fell_back(link, "stopped_leading");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%leader, %error, "replay poll leader unreachable; polling here");
                    fell_back(link, "unreachable");
                    return;
                }
            },
            // A wait below the asked position, or a fresh-position caller:
            // ask again for what is needed now.
            () = link.need_changed() => {}
        }
        match link.next_need().await {
            Some(next) if Instant::now() < until => need = next,
            _ => return,
        }
    }
}
