//! Serving an app's router beside the repo's RPC port, with one stop.

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::repo::Repo;

impl Repo {
    /// Serves `app` on `listener` (with [`fly_rpc::serve_app`]'s timeouts
    /// and connection cap) until SIGTERM or Ctrl-C
    /// ([`crate::shutdown_signal`]), then stops as a deploy needs: the app's
    /// port and the RPC port stop accepting at once (callers in other
    /// regions move to a sibling instance), the requests and forwarded
    /// writes in flight finish and get their replies, and it returns.
    ///
    // Not run as a doctest: serves until SIGTERM or Ctrl-C.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = tokio::net::TcpListener::bind("[::]:8080").await?;
    /// repo.serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, listener: TcpListener, app: Router) -> Result<(), Error> {
        self.serve_with_shutdown(listener, app, crate::shutdown_signal())
            .await
    }

    /// [`Repo::serve`] stopped by `signal` instead of SIGTERM or Ctrl-C.
    pub async fn serve_with_shutdown(
        &self,
        listener: TcpListener,
        app: Router,
        signal: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let trigger = async {
            tokio::select! {
                () = signal => {}
                // The app's server ended on its own (an error): stop the rest.
                () = stopped(stopping.clone()) => {}
            }
            let _ = stop.send(true);
        };
        let http = async {
            let result = fly_rpc::serve_app(listener, app, stopped(stopping.clone())).await;
            let _ = stop.send(true);
            result.map_err(Error::Listener)
        };
        let rpc = async {
            stopped(stopping.clone()).await;
            self.shutdown().await
        };
        let ((), http, rpc) = tokio::join!(trigger, http, rpc);
        http.and(rpc)
    }
}
