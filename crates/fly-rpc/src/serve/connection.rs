//! One accepted connection's task: the TLS handshake if any, then hyper
//! serving it until it ends, turns idle or silent, or the node stops.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::head_watch::HeadWatch;
use super::table::{Activity, Conn, NO_HEAD, Table, elapsed_ms};
use super::{Acceptor, ConnInfo};
use crate::limits::Limits;

/// One connection's task, with what serving it needs.
pub(super) struct ConnTask {
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(super) app: Router,
    pub(super) conn: Arc<Conn>,
    pub(super) table: Arc<Table>,
    pub(super) id: u64,
    pub(super) limits: Limits,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) accepted: Instant,
}

/// Why a connection stops being served.
enum Closing {
    /// It ended, or is closed at once: nothing left to wait for.
    Now,
    /// The node is stopping: the requests in flight may finish.
    Stop,
    /// Idle for the idle timeout: it gets the close grace to finish.
    Idle,
}

impl ConnTask {
    /// Serves the connection, after the TLS handshake if `tls`.
    pub(super) async fn run(self, tcp: TcpStream, local: SocketAddr, tls: Option<Acceptor>) {
        match tls {
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
            #[cfg(feature = "tls")]
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        let watched =
                            HeadWatch::new(stream, Arc::clone(&self.conn), self.table.epoch);
                        self.serve(TokioIo::new(watched), local).await
                    }
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
            None => {
                let watched = HeadWatch::new(tcp, Arc::clone(&self.conn), self.table.epoch);
                self.serve(TokioIo::new(watched), local).await
            }
        }
    }

    /// Takes this connection out of the table: it is closed.
    fn forget(&self) {
        self.table.forget(self.id);
    }

    /// Serves requests on `io` until it is closed.
    async fn serve<I>(mut self, io: TokioIo<I>, local: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let info = ConnInfo {
            local,
            trusted: Arc::clone(&self.conn.trusted),
        };
        let (app, conn, epoch) = (self.app.clone(), Arc::clone(&self.conn), self.table.epoch);
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
        let builder = Arc::clone(&self.builder);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        // Stopping (a deploy) waits for the requests in flight, bounded by
        // the node's shutdown grace; closing an idle or stalled connection
        // waits at most `close_grace`, so a peer that never finishes its
        // handshake or request cannot hold the socket.
        match self.until_closing(connection.as_mut()).await {
            Closing::Now => {}
            Closing::Stop => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
            }
            Closing::Idle => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.limits.close_grace, connection.as_mut()).await;
            }
        }
        self.forget();
    }

    /// Serves `connection` until it ends or is to be closed, and says why.
    async fn until_closing(&mut self, mut connection: Pin<&mut impl Future>) -> Closing {
        let idle = self.limits.idle_timeout;
        let head_limit = self.limits.header_read_timeout;
        let mut check = tokio::time::interval(
            (idle / 4)
                .min(head_limit / 2)
                .max(Duration::from_millis(50)),
        );
        // hyper's header-read timeout starts with the first byte, and its
        // protocol detection waits without one: this closes a socket that
        // sends nothing, part of a head, or only an HTTP/2 preface.
        let first_request =
            tokio::time::sleep_until((self.accepted + self.limits.first_request_timeout).into());
        tokio::pin!(first_request);
        // A select! branch's condition is read when the select! starts, not
        // when the branch fires: the first request may come meanwhile.
        let mut awaiting_first_request = true;
        loop {
            tokio::select! {
                _ = connection.as_mut() => return Closing::Now,
                () = &mut first_request, if awaiting_first_request => {
                    awaiting_first_request = false;
                    if !self.conn.spoke.load(Ordering::Relaxed) {
                        crate::metric::counter!("fly_rpc_server_silent_connections_closed_total", "listener" => self.table.listener)
                            .increment(1);
                        return Closing::Now;
                    }
                }
                _ = self.stop.wait_for(|s| *s) => return Closing::Stop,
                _ = check.tick() => {
                    let now = elapsed_ms(self.table.epoch);
                    let quiet = now.saturating_sub(self.conn.last_active.load(Ordering::Relaxed));
                    let idle_now = self.conn.in_flight.load(Ordering::Relaxed) == 0;
                    let head = self.conn.head_started.load(Ordering::Relaxed);
                    if idle_now
                        && head != NO_HEAD
                        && u128::from(now.saturating_sub(head)) >= head_limit.as_millis()
                    {
                        crate::metric::counter!("fly_rpc_server_slow_heads_closed_total", "listener" => self.table.listener)
                            .increment(1);
                        return Closing::Now;
                    }
                    if idle_now && head == NO_HEAD && u128::from(quiet) >= idle.as_millis() {
                        return Closing::Idle;
                    }
                }
            }
        }
    }
}
