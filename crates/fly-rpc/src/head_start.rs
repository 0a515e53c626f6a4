//! Happy eyeballs over a region's instances (after RFC 8305): when the
//! first instance to try has no open connection, it gets a head start to
//! connect; past it, or as soon as it fails, the next one is tried too, and
//! the call goes to whichever connects first. An address DNS still lists
//! but nothing answers at (a machine gone, its address black-holed) then
//! costs one head start, not a whole connect timeout.
//!
//! Only connections race, never requests: the call is sent once, on the
//! winner's connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::connections::Connections;

/// Default head start of one instance over the next.
pub(crate) const DEFAULT_HEAD_START: Duration = Duration::from_millis(150);

/// A region's instances ordered for a call: the one that connected first
/// leads, and those that could not be connected to are set apart.
#[derive(Debug)]
pub(crate) struct Reachable {
    pub(crate) order: Vec<SocketAddr>,
    /// Instances whose connect failed or timed out, with why.
    pub(crate) unreachable: Vec<(SocketAddr, String)>,
    /// Instances that lost to one started after them: slow or gone.
    pub(crate) outrun: Vec<SocketAddr>,
}

/// How connections race.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Race {
    pub(crate) head_start: Duration,
    pub(crate) connect_timeout: Duration,
}

impl Race {
    /// `order` with the first instance that connects in front. Without a
    /// race to run (one instance, or the first already connected) it is
    /// returned as it is.
    pub(crate) async fn reachable_first(
        self,
        connections: &Connections,
        order: Vec<SocketAddr>,
        deadline: Instant,
    ) -> Reachable {
        let no_race = Reachable {
            order,
            unreachable: Vec::new(),
            outrun: Vec::new(),
        };
        match no_race.order.first() {
            Some(first) if no_race.order.len() > 1 && !connections.is_open(*first) => {
                self.run(connections, no_race.order, deadline).await
            }
            _ => no_race,
        }
    }

    async fn run(
        self,
        connections: &Connections,
        order: Vec<SocketAddr>,
        deadline: Instant,
    ) -> Reachable {
        let mut attempts = JoinSet::new();
        let mut started = 0;
        let mut next_start = tokio::time::Instant::now();
        let mut unreachable = Vec::new();
        let winner = loop {
            if started < order.len() && tokio::time::Instant::now() >= next_start {
                let peer = order[started];
                if connections.is_open(peer) {
                    break Some(started);
                }
                attempts.spawn(self.connect(started, peer));
                started += 1;
                next_start = tokio::time::Instant::now() + self.head_start;
            }
            let more_to_start = started < order.len();
            tokio::select! {
                joined = attempts.join_next(), if !attempts.is_empty() => {
                    match joined {
                        Some(Ok((index, Ok(stream)))) => {
                            connections.park(order[index], stream);
                            break Some(index);
                        }
                        Some(Ok((index, Err(why)))) => {
                            unreachable.push((order[index], why));
                            // A failure starts the next one at once.
                            next_start = tokio::time::Instant::now();
                        }
                        // Aborted or panicked: nothing to learn from it.
                        _ => {}
                    }
                }
                () = tokio::time::sleep_until(next_start), if more_to_start => {}
                () = tokio::time::sleep_until(deadline.into()) => break None,
            }
            if attempts.is_empty() && started == order.len() {
                break None;
            }
        };
        attempts.abort_all();
        arrange(order, winner, started, unreachable)
    }

    async fn connect(self, index: usize, peer: SocketAddr) -> (usize, Result<TcpStream, String>) {
        let result =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(peer)).await {
                Ok(Ok(stream)) => {
                    // As hyper's connector does for its own connections.
                    let _ = stream.set_nodelay(true);
                    Ok(stream)
                }
                Ok(Err(e)) => Err(format!("connect failed: {e}")),
                Err(_) => Err(format!("no connection within {:?}", self.connect_timeout)),
            };
        (index, result)
    }
}

/// The order after a race: the winner, then the others as they were,
/// without the unreachable ones. Those started before the winner and
/// still pending were outrun.
fn arrange(
    order: Vec<SocketAddr>,
    winner: Option<usize>,
    started: usize,
    unreachable: Vec<(SocketAddr, String)>,
) -> Reachable {
    let is_unreachable = |peer: &SocketAddr| unreachable.iter().any(|(p, _)| p == peer);
    let mut arranged = Vec::with_capacity(order.len());
    let mut outrun = Vec::new();
    if let Some(w) = winner {
        arranged.push(order[w]);
        outrun.extend(
            order[..w.min(started)]
                .iter()
                .filter(|p| !is_unreachable(p))
                .copied(),
        );
    }
    for (i, peer) in order.iter().enumerate() {
        if Some(i) != winner && !is_unreachable(peer) {
            arranged.push(*peer);
        }
    }
    Reachable {
        order: arranged,
        unreachable,
        outrun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_winner_leads_and_the_unreachable_are_set_apart() {
        let order = vec![addr(1), addr(2), addr(3)];
        let r = arrange(order.clone(), Some(2), 3, vec![(addr(2), "refused".into())]);
        assert_eq!(r.order, vec![addr(3), addr(1)]);
        assert_eq!(r.outrun, vec![addr(1)]);
        let r = arrange(order.clone(), None, 3, vec![(addr(1), "refused".into())]);
        assert_eq!(r.order, vec![addr(2), addr(3)]);
        assert!(r.outrun.is_empty());
        let r = arrange(order, Some(0), 1, Vec::new());
        assert_eq!(r.order, vec![addr(1), addr(2), addr(3)]);
    }

    #[tokio::test]
    async fn a_listener_wins_over_a_refusing_address_and_the_first_open_one_leads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        // Bound then dropped: connects to it are refused.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let race = Race {
            head_start: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        };
        let connections = Connections::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        let r = race
            .reachable_first(&connections, vec![refused, live], deadline)
            .await;
        // A refusal starts the next at once, not after the head start.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(r.order, vec![live]);
        assert_eq!(r.unreachable.len(), 1);
        assert_eq!(r.unreachable[0].0, refused);
        // None reachable: all set apart, by the deadline at the latest.
        let r = race
            .reachable_first(&connections, vec![refused, refused], deadline)
            .await;
        assert!(r.order.is_empty());
        assert_eq!(r.unreachable.len(), 2);
    }
}
