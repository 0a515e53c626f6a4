//! Prometheus metrics of the library and the app on their own port
//! (`METRICS_LISTEN` or `METRICS_PORT`), kept off the public HTTP port.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::StartError;

/// Installs the Prometheus recorder for this process and serves
/// `GET /metrics` on `addr`; returns the bound address.
pub(crate) async fn start(addr: SocketAddr) -> Result<SocketAddr, StartError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // Histograms are kept in windows that need regular upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(
            |axum::extract::State(handle): axum::extract::State<PrometheusHandle>| async move {
                handle.render()
            },
        ),
    );
    let app = app.with_state(handle);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}
