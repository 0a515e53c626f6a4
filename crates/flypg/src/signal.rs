//! Ctrl-C or SIGTERM: either ends a long-running command cleanly (its apps
//! and PostgreSQL servers are stopped as their guards drop).

/// Resolves on the first Ctrl-C or SIGTERM.
pub(crate) async fn stop_requested() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
