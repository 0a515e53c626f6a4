//! The signal a deploy stops an instance with.

/// Resolves on SIGTERM (what Fly.io and every orchestrator send at a
/// deploy) or Ctrl-C. Pass it to [`crate::Repo::serve_with_shutdown`], or
/// await it and then call [`crate::Repo::shutdown`].
///
/// The handlers are installed when the future is first polled. If neither
/// can be installed the future never resolves (logged once): a process
/// that cannot hear its stop signal must not stop at once instead.
///
// Not run as a doctest: waits for SIGTERM or Ctrl-C.
/// ```no_run
/// # async fn demo(repo: fly_postgres::Repo) -> Result<(), fly_postgres::Error> {
/// fly_postgres::shutdown_signal().await;
/// repo.shutdown().await?; // forwarded writes in flight finish first
/// # Ok(()) }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}
