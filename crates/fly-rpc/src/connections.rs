//! The TCP connections under the RPC client, counted per peer: whether a
//! call to a peer needs a connect first (the head-start race is run only
//! then), and the connection the race won, handed to the client.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

/// How long a connection the race won waits for the request it was made
/// for; older ones are closed (the client found another way meanwhile).
const PARKED_FOR: Duration = Duration::from_secs(2);

/// The open connections per peer, and the ones made ahead of a request.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    peers: Mutex<HashMap<SocketAddr, Peer>>,
}

#[derive(Debug, Default)]
struct Peer {
    open: usize,
    parked: Option<(Instant, TcpStream)>,
}

impl Connections {
    /// Whether the client holds a connection to `peer` (a call to it needs
    /// no connect).
    pub(crate) fn is_open(&self, peer: SocketAddr) -> bool {
        self.lock().get(&peer).is_some_and(|p| p.open > 0)
    }

    /// Hands `stream`, just connected to `peer`, to the client's next
    /// connect to `peer`.
    pub(crate) fn park(&self, peer: SocketAddr, stream: TcpStream) {
        self.lock().entry(peer).or_default().parked = Some((Instant::now(), stream));
    }

    fn take_parked(&self, peer: SocketAddr) -> Option<TcpStream> {
        let mut peers = self.lock();
        let (at, stream) = peers.get_mut(&peer)?.parked.take()?;
        (at.elapsed() < PARKED_FOR).then_some(stream)
    }

    fn opened(self: &Arc<Self>, peer: SocketAddr, io: TokioIo<TcpStream>) -> Counted {
        self.lock().entry(peer).or_default().open += 1;
        Counted {
            io,
            peer,
            connections: Arc::clone(self),
        }
    }

    fn closed(&self, peer: SocketAddr) {
        let mut peers = self.lock();
        if let Some(entry) = peers.get_mut(&peer) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && entry.parked.is_none() {
                peers.remove(&peer);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A client connection, counted while it is open.
#[derive(Debug)]
pub(crate) struct Counted {
    io: TokioIo<TcpStream>,
    peer: SocketAddr,
    connections: Arc<Connections>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.connections.closed(self.peer);
    }
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl hyper::rt::Read for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// hyper's TCP connector, counting what it opens and using a parked
/// connection when there is one.
#[derive(Debug, Clone)]
pub(crate) struct CountingConnector {
    tcp: HttpConnector,
    connections: Arc<Connections>,
}

impl CountingConnector {
    pub(crate) fn new(tcp: HttpConnector, connections: Arc<Connections>) -> Self {
        CountingConnector { tcp, connections }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for CountingConnector {
    type Response = Counted;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Counted, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connections = Arc::clone(&self.connections);
        // The client's URIs name peers by address: `[fdaa::2]:7000`.
        let peer = uri.authority().and_then(|a| a.as_str().parse().ok());
        if let Some(peer) = peer
            && let Some(stream) = connections.take_parked(peer)
        {
            let counted = connections.opened(peer, TokioIo::new(stream));
            return Box::pin(std::future::ready(Ok(counted)));
        }
        let connecting = self.tcp.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            let peer = match peer {
                Some(peer) => peer,
                None => io.inner().peer_addr()?,
            };
            Ok(connections.opened(peer, io))
        })
    }
}
