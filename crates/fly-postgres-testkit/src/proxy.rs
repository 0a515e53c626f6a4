//! A TCP forwarder that adds a one-way delay in each direction.
//!
//! The kernel here has no `netem`, so "another region" is simulated in user
//! space: every chunk read from one side is written to the other side `delay`
//! later, keeping order and without limiting throughput (chunks in flight are
//! queued, not serialized behind each other's delay).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Result, TestkitError};
use crate::lateness::{Lateness, LatenessHistogram};

/// The one-way delays of a [`LatencyProxy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    /// Added to bytes going from the client to the upstream server.
    pub to_upstream: Duration,
    /// Added to bytes going from the upstream server back to the client.
    pub to_client: Duration,
}

impl Delay {
    /// No delay at all.
    pub const NONE: Delay = Delay {
        to_upstream: Duration::ZERO,
        to_client: Duration::ZERO,
    };

    /// Half of `rtt` each way, so a request/response costs one `rtt`.
    pub fn rtt(rtt: Duration) -> Self {
        Delay {
            to_upstream: rtt / 2,
            to_client: rtt - rtt / 2,
        }
    }

    /// Delay only what the upstream server sends back, as on a replication
    /// link, where the replica is the client and WAL flows to it.
    pub fn to_client_only(delay: Duration) -> Self {
        Delay {
            to_upstream: Duration::ZERO,
            to_client: delay,
        }
    }
}

/// A chunk due this soon is written at once.
const COALESCE: Duration = Duration::from_micros(200);

#[derive(Debug)]
struct Shared {
    upstream: Mutex<Option<SocketAddr>>,
    delay: Mutex<Delay>,
    connections: Mutex<JoinSet<()>>,
    blocked: std::sync::atomic::AtomicBool,
    /// While true, nothing crosses the link either way (see
    /// [`LatencyProxy::black_hole`]).
    silent: watch::Sender<bool>,
    lateness: LatenessHistogram,
}

/// A latency-injecting TCP proxy on 127.0.0.1 (or on a listener given to
/// [`LatencyProxy::start_on`]). Dropping it closes the listener
/// and every connection through it.
#[derive(Debug)]
pub struct LatencyProxy {
    local: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<()>,
}

impl LatencyProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, delay: Delay) -> Result<Self> {
        let proxy = LatencyProxy::bind(delay).await?;
        proxy.connect_to(upstream);
        Ok(proxy)
    }

    /// Listens on a free port of 127.0.0.1 without an upstream yet
    /// (connections are closed until [`LatencyProxy::connect_to`]): for a
    /// server that must know the address it is reached at before it starts.
    pub async fn bind(delay: Delay) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestkitError::io("binding latency proxy", e))?;
        Self::on_listener(listener, delay)
    }

    /// Forwards to `upstream` what arrives on `listener`, a socket the
    /// caller made: one inside a [`FlyMachine`](crate::FlyMachine)'s network
    /// ([`FlyMachine::bind_tcp`](crate::FlyMachine::bind_tcp)) takes
    /// connections there and forwards them from this process's own
    /// network, where the testkit's servers listen.
    pub async fn start_on(
        listener: std::net::TcpListener,
        upstream: SocketAddr,
        delay: Delay,
    ) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .map_err(|e| TestkitError::io("preparing the proxy's listener", e))?;
        let listener = TcpListener::from_std(listener)
            .map_err(|e| TestkitError::io("adopting the proxy's listener", e))?;
        let proxy = Self::on_listener(listener, delay)?;
        proxy.connect_to(upstream);
        Ok(proxy)
    }

    fn on_listener(listener: TcpListener, delay: Delay) -> Result<Self> {
        let local = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading latency proxy address", e))?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(None),
            delay: Mutex::new(delay),
            connections: Mutex::new(JoinSet::new()),
            blocked: std::sync::atomic::AtomicBool::new(false),
            silent: watch::channel(false).0,
            lateness: LatenessHistogram::default(),
        });
        let (stop_tx, mut stop_rx) = watch::channel(());
        let accept_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        if accept_shared.blocked.load(std::sync::atomic::Ordering::SeqCst) {
                            // A cut link: the connection dies at once.
                            drop(client);
                            continue;
                        }
                        let conn_shared = Arc::clone(&accept_shared);
                        let mut set = lock(&accept_shared.connections);
                        // Reap finished connection tasks so the set stays small.
                        while set.try_join_next().is_some() {}
                        set.spawn(forward(client, conn_shared));
                    }
                }
            }
            // Dropping the set aborts every live connection.
            lock(&accept_shared.connections).abort_all();
        });
        Ok(LatencyProxy {
            local,
            shared,
            _stop: stop_tx,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address the proxy forwards to, once set.
    pub fn upstream(&self) -> Option<SocketAddr> {
        *lock(&self.shared.upstream)
    }

    /// How late delayed bytes were delivered so far: the precision of the
    /// simulated link.
    pub fn lateness(&self) -> Lateness {
        self.shared.lateness.snapshot()
    }

    /// Forwards new connections to `upstream` from now on.
    pub fn connect_to(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = Some(upstream);
    }

    /// The delays now in force.
    pub fn delay(&self) -> Delay {
        *lock(&self.shared.delay)
    }

    /// Changes the delays for bytes read from now on.
    pub fn set_delay(&self, delay: Delay) {
        *lock(&self.shared.delay) = delay;
    }

    /// Closes every open connection at once (both sides see it end), as a
    /// crashed process or a reset connection would; new connections are
    /// still accepted. A partition is silent instead: see
    /// [`LatencyProxy::black_hole`].
    pub fn sever(&self) {
        lock(&self.shared.connections).abort_all();
    }

    /// Refuses the link until [`LatencyProxy::restore`]: open connections
    /// are closed and new ones are closed as soon as they are accepted, as
    /// when the far side is down and its host answers with resets.
    pub fn cut(&self) {
        self.shared
            .blocked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.sever();
    }

    /// Silence until [`LatencyProxy::restore`], as a network partition
    /// gives: open connections stay open and new ones are accepted, but
    /// nothing is delivered either way, so each side waits for an answer
    /// until a timeout of its own ends the wait. Bytes sent meanwhile are
    /// delivered on restore, as TCP retransmits them when a partition heals
    /// (unless the side that sent them has closed the connection first).
    pub fn black_hole(&self) {
        self.shared.silent.send_replace(true);
    }

    /// Ends a [`LatencyProxy::cut`] or a [`LatencyProxy::black_hole`].
    pub fn restore(&self) {
        self.shared
            .blocked
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared.silent.send_replace(false);
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        lock(&self.shared.connections).abort_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

async fn forward(client: TcpStream, shared: Arc<Shared>) {
    let Some(upstream) = *lock(&shared.upstream) else {
        return;
    };
    // A connection opened into a black hole reaches nobody until it heals.
    until_heard(&mut shared.silent.subscribe()).await;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = Arc::clone(&shared);
    let down = Arc::clone(&shared);
    tokio::join!(
        pipe(
            client_read,
            server_write,
            move || lock(&up.delay).to_upstream,
            shared.silent.subscribe(),
            &shared.lateness
        ),
        pipe(
            server_read,
            client_write,
            move || lock(&down.delay).to_client,
            shared.silent.subscribe(),
            &shared.lateness
        ),
    );
}

/// Returns once the link is not black-holed.
async fn until_heard(silent: &mut watch::Receiver<bool>) {
    // An error means the proxy is gone: nothing to wait for.
    let _ = silent.wait_for(|silent| !*silent).await;
}

/// Copies one direction, each chunk released `delay()` after it was read,
/// and held while the link is black-holed.
async fn pipe<R, W, F>(
    mut from: R,
    mut to: W,
    delay: F,
    mut silent: watch::Receiver<bool>,
    lateness: &LatenessHistogram,
) where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
    F: Fn() -> Duration,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + delay();
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            // Chunks read a moment apart (an HTTP/2 HEADERS then DATA) would
            // otherwise each pay the timer's wake-up latency in turn.
            if due > Instant::now() + COALESCE {
                crate::precise_timer::sleep_until(due.into_std()).await;
                lateness.record(Instant::now().saturating_duration_since(due));
            }
            until_heard(&mut silent).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
