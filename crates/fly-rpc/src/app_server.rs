//! The app's own public HTTP port, served with the RPC port's connection
//! hygiene: whoever can reach it cannot hold sockets or memory for free.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::body_deadline::DEFAULT_BODY_DEADLINE;
use crate::limits::{Limits, default_max_connections};

/// Longer than clients' pools keep idle connections (90 s in Go's and
/// reqwest's): the client closes first, so no request is sent on a
/// connection the server is closing.
const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of [`serve_app_with`]; the defaults are what [`serve_app`]
/// serves with.
#[derive(Debug, Clone)]
pub struct AppServeOptions {
    body_deadline: Duration,
    idle_timeout: Duration,
}

impl Default for AppServeOptions {
    fn default() -> Self {
        AppServeOptions {
            body_deadline: DEFAULT_BODY_DEADLINE,
            idle_timeout: APP_IDLE_TIMEOUT,
        }
    }
}

impl AppServeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a request's body may take to arrive, in all, however it
    /// trickles in (default [`crate::DEFAULT_BODY_DEADLINE`], 10 s). A
    /// handler still reading it then is answered `408 Request Timeout`
    /// instead of whatever it made of the failed read, and an HTTP/1
    /// connection is closed. Raise it for an app that takes large uploads
    /// from slow clients.
    pub fn body_deadline(mut self, deadline: Duration) -> Self {
        self.body_deadline = deadline;
        self
    }

    /// How long a connection with no request in flight is kept (default
    /// 120 s). Keep it longer than the clients' pools keep idle connections
    /// (90 s in Go and reqwest), or a client may send on a connection just
    /// as the server closes it.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// Serves an app's own router on `listener` (its public port) until
/// `shutdown` resolves, then lets the requests in flight finish for at most
/// [`crate::DEFAULT_GRACE`] and closes what is left.
///
/// What `axum::serve` leaves to the app is done here, as on the RPC port:
/// a client gets 5 s to send a request's headers (from their first byte),
/// a connection with no request for 120 s is closed (after clients' pools,
/// which idle out at 90 s, closed it first), HTTP/2 connections are pinged and capped at
/// 128 streams, and past a cap on open connections (a quarter of the
/// process's file descriptors, so with the RPC port's half a quarter stays
/// for database pools and peers) the longest-idle one is closed to make
/// room. A request's body gets [`crate::DEFAULT_BODY_DEADLINE`] (10 s) to
/// arrive in all, however it trickles in: a handler still reading it then
/// is answered `408 Request Timeout` and an HTTP/1 connection is closed, so
/// clients that send bodies slowly cannot hold the connections up to the
/// cap and lock the others out. [`serve_app_with`] changes it.
///
// Not run as a doctest: serves until a shutdown signal.
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("[::]:8080").await?;
/// fly_rpc::serve_app(listener, app, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_app_with(listener, app, shutdown, AppServeOptions::default()).await
}

/// [`serve_app`] with settings of the caller's.
///
// Not run as a doctest: serves until a shutdown signal.
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// use std::time::Duration;
/// use fly_rpc::AppServeOptions;
///
/// let listener = tokio::net::TcpListener::bind("[::]:8080").await?;
/// // Uploads from slow links: a minute for a body.
/// let options = AppServeOptions::default().body_deadline(Duration::from_secs(60));
/// let shutdown = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// fly_rpc::serve_app_with(listener, app, shutdown, options).await
/// # }
/// ```
pub async fn serve_app_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    options: AppServeOptions,
) -> std::io::Result<()> {
    // Every route's body, the fallback's too: the router is complete here.
    let app = app.layer(axum::middleware::from_fn_with_state(
        options.body_deadline,
        crate::body_deadline::enforce,
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let limits = Limits {
        max_connections: (default_max_connections() / 2).max(32),
        idle_timeout: options.idle_timeout,
        // Strangers' requests run the app's handlers: fewer at once per
        // connection than between authenticated peers.
        max_concurrent_streams: crate::limits::APP_MAX_CONCURRENT_STREAMS,
        ..Limits::default()
    };
    let serving = crate::serve::serve("app", listener, app, limits, None, stopped);
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => return served,
        () = shutdown => {}
    }
    let _ = stop.send(true);
    // Dropping the loop after the grace aborts the connections still open
    // (a client that never finishes its request or never reads its answer).
    match tokio::time::timeout(crate::DEFAULT_GRACE, serving).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!(
                grace = ?crate::DEFAULT_GRACE,
                "app port: connections still open after the shutdown grace were closed"
            );
            Ok(())
        }
    }
}
