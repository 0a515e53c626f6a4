//! Fly's proxy in front of an app, as far as a deploy sees it: each
//! connection goes to a machine of the client's region that passes its
//! checks (round robin), the next one when a machine refuses, any region's
//! when the client's has none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::app::Routes;
use super::machine::FlyMachine;
use crate::error::{Result, TestkitError};

/// How long the proxy waits for one machine to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A TCP proxy on a machine of its own (the edge), in front of an app's
/// machines; stops when dropped.
#[derive(Debug)]
pub struct EdgeProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EdgeProxy {
    /// Listens on `port` of `edge`'s address and sends each connection to
    /// a routed machine of `region`.
    pub async fn start(edge: &FlyMachine, port: u16, routes: Routes, region: &str) -> Result<Self> {
        let listener = edge.bind_tcp(port)?;
        listener
            .set_nonblocking(true)
            .map_err(|e| TestkitError::io("setting the edge listener non-blocking", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading the edge address", e))?;
        let region = region.to_owned();
        let task = edge.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, routes, region).await,
                Err(e) => tracing::error!(error = %e, "edge proxy cannot listen"),
            }
        })?;
        Ok(EdgeProxy { addr, task })
    }

    /// Where clients connect (`http://[addr]/`), from inside the edge
    /// machine.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EdgeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, routes: Routes, region: String) {
    let turn = Arc::new(AtomicUsize::new(0));
    let region = Arc::new(region);
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: a pause, not a spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (routes, region, turn) = (routes.clone(), Arc::clone(&region), Arc::clone(&turn));
        tokio::spawn(async move {
            if let Some(mut machine) = connect(&routes, &region, &turn).await {
                let mut client = client;
                let _ = client.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut machine).await;
            }
        });
    }
}

/// A connection to a routed machine, trying each once.
async fn connect(routes: &Routes, region: &str, turn: &AtomicUsize) -> Option<TcpStream> {
    let mut candidates = routes.region(region);
    if candidates.is_empty() {
        candidates = routes.all();
    }
    if candidates.is_empty() {
        return None;
    }
    let start = turn.fetch_add(1, Ordering::Relaxed) % candidates.len();
    candidates.rotate_left(start);
    for addr in candidates {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            let _ = stream.set_nodelay(true);
            return Some(stream);
        }
    }
    None
}
