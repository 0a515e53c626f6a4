//! The accept loop: hyper-util's server with its timers doing the
//! connection hygiene (header-read timeout, HTTP/2 keep-alive pings, a
//! stream limit), plus what the serving stack does not have: an idle
//! timeout and a cap on open connections that sheds the longest-idle one to
//! make room, so held-open connections cannot lock callers out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::limits::Limits;

mod connection;
mod head_watch;
mod table;

use connection::ConnTask;
use table::Table;

/// What accepts TLS on a listener (nothing can, without the `tls` feature).
#[cfg(feature = "tls")]
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
pub(crate) type Acceptor = crate::tls_disabled::TlsAcceptor;

/// Which socket a request arrived on (the target check of the auth needs
/// the local address), and a flag the server sets once a request on the
/// connection authenticated: strangers' connections are shed first.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) local: SocketAddr,
    pub(crate) trusted: Arc<AtomicBool>,
}

/// Serves `app` on `socket` until `stop` turns true, then lets the
/// connections finish what they are doing (graceful shutdown of each).
/// `listener` names it in the metrics.
pub(crate) async fn serve(
    listener: &'static str,
    socket: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Acceptor>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let accept = Accept {
        builder: Arc::new(http_builder(&limits)),
        table: Arc::new(Table::new(listener, Instant::now())),
        app,
        limits,
        tls,
        stop: stop.clone(),
    };
    let mut conns = JoinSet::new();
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((tcp, _remote)) => accept.spawn(tcp, &mut conns),
            Err(e) => accept_failed(listener, &e, &mut last_accept_warning).await,
        }
    }
    drop(socket);
    // Each connection saw `stop` and is finishing its requests.
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// hyper-util's server with the limits' timers and sizes, for both HTTP
/// versions (it detects which one a connection speaks).
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper's header-read timer also runs while a keep-alive
        // connection waits for its next request: at the idle timeout here,
        // so clients' pools (90 s) close idle connections before the server
        // does and none sends on a connection being closed. A head that
        // trickles is cut off at the header-read timeout by the
        // connection's task instead (see `head_watch`).
        .header_read_timeout(limits.idle_timeout.max(limits.header_read_timeout))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.keep_alive_interval))
        .keep_alive_timeout(limits.keep_alive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(64 * 1024)
        .max_send_buf_size(256 * 1024);
    builder
}

/// Out of file descriptors (or a similar passing failure): back off
/// instead of spinning, and keep serving. One log line per 10 s at most: a
/// flood must not fill the disk.
async fn accept_failed(
    listener: &'static str,
    e: &std::io::Error,
    last_warning: &mut Option<Instant>,
) {
    crate::metric::counter!("fly_rpc_server_accept_failures_total", "listener" => listener)
        .increment(1);
    if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
        *last_warning = Some(Instant::now());
        tracing::warn!(error = %e, listener, "accept failed (logged once per 10 s)");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// What every connection's task is given.
struct Accept {
    builder: Arc<auto::Builder<TokioExecutor>>,
    table: Arc<Table>,
    app: Router,
    limits: Limits,
    tls: Option<Acceptor>,
    stop: watch::Receiver<bool>,
}

impl Accept {
    /// Serves `tcp` in a task of its own, if there is room for it.
    fn spawn(&self, tcp: TcpStream, conns: &mut JoinSet<()>) {
        if !self.table.make_room(self.limits.max_connections) {
            crate::metric::counter!("fly_rpc_server_connections_refused_total", "listener" => self.table.listener)
                .increment(1);
            drop(tcp);
            return;
        }
        let _ = tcp.set_nodelay(true);
        let Ok(local) = tcp.local_addr() else {
            return;
        };
        let (id, conn) = self.table.open();
        let conn_handle = Arc::clone(&conn);
        let task = ConnTask {
            builder: Arc::clone(&self.builder),
            app: self.app.clone(),
            conn,
            table: Arc::clone(&self.table),
            id,
            limits: self.limits,
            stop: self.stop.clone(),
            accepted: Instant::now(),
        };
        let abort = conns.spawn(task.run(tcp, local, self.tls.clone()));
        let _ = conn_handle.abort.set(abort);
    }
}
