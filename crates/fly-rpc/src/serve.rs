//! The accept loop: hyper-util's server with its timers doing the
//! connection hygiene (header-read timeout, HTTP/2 keep-alive pings, a
//! stream limit), plus what the serving stack does not have: an idle
//! timeout and a cap on open connections that sheds the longest-idle one to
//! make room, so held-open connections cannot lock callers out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::limits::Limits;

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
    pub(crate) trusted: Arc<std::sync::atomic::AtomicBool>,
}

/// What the loop knows of one open connection.
#[derive(Debug)]
struct Conn {
    in_flight: AtomicUsize,
    /// Milliseconds since the loop started, at the last request's end (or
    /// the accept).
    last_active: AtomicU64,
    /// A request on it authenticated: a peer's pooled connection.
    trusted: Arc<std::sync::atomic::AtomicBool>,
    /// A complete request head arrived on it (it is not a silent socket).
    spoke: std::sync::atomic::AtomicBool,
    /// Closes the connection at once (its task is aborted).
    abort: std::sync::OnceLock<tokio::task::AbortHandle>,
}

#[derive(Debug)]
struct Table {
    /// Which listener (`rpc`, `app`): the metrics' `listener` label.
    listener: &'static str,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for one more connection: true if under the cap, or after
    /// closing the longest-idle connection at once (no request is in flight
    /// on it; a caller's pool reconnects), one that never authenticated if
    /// there is any, so strangers cannot push peers out; false if every one
    /// is busy.
    fn make_room(&self, cap: usize) -> bool {
        let mut open = self.lock();
        if open.len() < cap {
            return true;
        }
        let idle = open
            .iter()
            .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| {
                (
                    c.trusted.load(Ordering::Relaxed),
                    c.last_active.load(Ordering::Relaxed),
                )
            })
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(conn) => {
                if let Some(abort) = conn.abort.get() {
                    abort.abort();
                }
                crate::metric::counter!("fly_rpc_server_connections_shed_total", "listener" => self.listener)
                    .increment(1);
                true
            }
            None => false,
        }
    }
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.keep_alive_interval))
        .keep_alive_timeout(limits.keep_alive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(64 * 1024)
        .max_send_buf_size(256 * 1024);
    let builder = Arc::new(builder);
    let table = Arc::new(Table {
        listener,
        next: AtomicU64::new(0),
        open: Mutex::default(),
    });
    let epoch = Instant::now();
    let mut conns = JoinSet::new();
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        while conns.try_join_next().is_some() {}
        let (tcp, _remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors (or a similar passing failure):
                // back off instead of spinning, and keep serving. One log
                // line per 10 s at most: a flood must not fill the disk.
                crate::metric::counter!("fly_rpc_server_accept_failures_total", "listener" => listener)
                    .increment(1);
                if last_accept_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    last_accept_warning = Some(Instant::now());
                    tracing::warn!(error = %e, listener, "accept failed (logged once per 10 s)");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if !table.make_room(limits.max_connections) {
            crate::metric::counter!("fly_rpc_server_connections_refused_total", "listener" => listener)
                .increment(1);
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        let id = table.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(elapsed_ms(epoch)),
            trusted: Arc::default(),
            spoke: std::sync::atomic::AtomicBool::new(false),
            abort: std::sync::OnceLock::new(),
        });
        table.lock().insert(id, Arc::clone(&conn));
        let conn_handle = Arc::clone(&conn);
        let task = ConnTask {
            builder: Arc::clone(&builder),
            app: app.clone(),
            conn,
            table: Arc::clone(&table),
            id,
            epoch,
            limits,
            stop: stop.clone(),
            accepted: Instant::now(),
        };
        let abort = conns.spawn(task.run(tcp, local, tls.clone()));
        let _ = conn_handle.abort.set(abort);
    }
    drop(socket);
    // Each connection saw `stop` and is finishing its requests.
    while conns.join_next().await.is_some() {}
    Ok(())
}

fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct ConnTask {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    conn: Arc<Conn>,
    table: Arc<Table>,
    id: u64,
    epoch: Instant,
    limits: Limits,
    stop: watch::Receiver<bool>,
    accepted: Instant,
}

impl ConnTask {
    async fn run(self, tcp: TcpStream, local: SocketAddr, tls: Option<Acceptor>) {
        match tls {
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
            #[cfg(feature = "tls")]
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(stream)) => self.serve(TokioIo::new(stream), local).await,
                    Ok(Err(e)) => {
                        crate::metric::counter!("fly_rpc_server_tls_failures_total", "listener" => self.table.listener).increment(1);
                        tracing::debug!(error = %e, "TLS handshake failed");
                        self.forget();
                    }
                    Err(_) => {
                        crate::metric::counter!("fly_rpc_server_tls_failures_total", "listener" => self.table.listener).increment(1);
                        self.forget();
                    }
                }
            }
            None => self.serve(TokioIo::new(tcp), local).await,
        }
    }

    fn forget(&self) {
        self.table.lock().remove(&self.id);
    }

    async fn serve<I>(mut self, io: TokioIo<I>, local: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let info = ConnInfo {
            local,
            trusted: Arc::clone(&self.conn.trusted),
        };
        let (app, conn, epoch) = (self.app.clone(), Arc::clone(&self.conn), self.epoch);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(info.clone());
            let app = app.clone();
            let activity = Activity::begin(Arc::clone(&conn), epoch);
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                drop(activity);
                response
            }
        });
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let idle = self.limits.idle_timeout;
        let mut check = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
        // hyper's header-read timeout starts with the first byte, and its
        // protocol detection waits without one: this closes a socket that
        // sends nothing, part of a head, or only an HTTP/2 preface.
        let first_request =
            tokio::time::sleep_until((self.accepted + self.limits.first_request_timeout).into());
        tokio::pin!(first_request);
        // A select! branch's condition is read when the select! starts, not
        // when the branch fires: the first request may come meanwhile.
        let mut awaiting_first_request = true;
        // Stopping (a deploy) waits for the requests in flight, bounded by
        // the node's shutdown grace; closing an idle or stalled connection
        // waits at most `close_grace`, so a peer that never finishes its
        // handshake or request cannot hold the socket.
        loop {
            let grace = tokio::select! {
                _ = connection.as_mut() => break,
                () = &mut first_request, if awaiting_first_request => {
                    awaiting_first_request = false;
                    if self.conn.spoke.load(Ordering::Relaxed) {
                        continue;
                    }
                    crate::metric::counter!("fly_rpc_server_silent_connections_closed_total", "listener" => self.table.listener)
                        .increment(1);
                    break;
                }
                _ = self.stop.wait_for(|s| *s) => None,
                _ = check.tick() => {
                    let quiet = elapsed_ms(epoch)
                        .saturating_sub(self.conn.last_active.load(Ordering::Relaxed));
                    if self.conn.in_flight.load(Ordering::Relaxed) > 0
                        || u128::from(quiet) < idle.as_millis()
                    {
                        continue;
                    }
                    Some(self.limits.close_grace)
                }
            };
            connection.as_mut().graceful_shutdown();
            match grace {
                Some(grace) => {
                    let _ = tokio::time::timeout(grace, connection.as_mut()).await;
                }
                None => {
                    let _ = connection.as_mut().await;
                }
            }
            break;
        }
        self.forget();
    }
}

/// A request in progress on a connection: it is not idle meanwhile.
struct Activity {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Activity {
    fn begin(conn: Arc<Conn>, epoch: Instant) -> Self {
        conn.spoke.store(true, Ordering::Relaxed);
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Activity { conn, epoch }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.conn
            .last_active
            .store(elapsed_ms(self.epoch), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
