//! The app's own public HTTP port, served with the RPC port's connection
//! hygiene: whoever can reach it cannot hold sockets or memory for free.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::limits::Limits;

/// Serves an app's own router on `listener` (its public port) until
/// `shutdown` resolves, then lets the requests in flight finish.
///
/// What `axum::serve` leaves to the app is done here, as on the RPC port:
/// a client gets 5 s to send a request's headers, a connection with no
/// request for 120 s is closed, HTTP/2 connections are pinged and capped at
/// 128 streams, and past a cap on open connections (half the process's
/// file descriptors) the longest-idle one is closed to make room. Bound the
/// time a request's body may take with the router's own layers (for
/// example `tower_http::timeout::RequestBodyTimeoutLayer`).
///
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let limits = Limits {
        // A browser's keep-alive connection is not worth a socket for long.
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let served = crate::serve::serve("app", listener, app, limits, None, stopped).await;
    signal.abort();
    served
}
