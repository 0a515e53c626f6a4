//! Region identity and typed procedure calls between the instances of an app
//! that runs in several regions: the Rust successor of Fly.io's `fly_rpc`.
//!
//! - [`Regions`]: which region this instance is in, which holds the primary;
//! - [`Procedure`]: a typed call with a stable name, served by a [`Node`];
//! - [`Node`]: serves procedures over HTTP/2 (h2c, or TLS with
//!   [`TlsConfig`]) with axum on hyper-util, and calls other regions'
//!   instances (`call_region`, `call_primary`), with failover, HMAC
//!   authentication that names the target node, limits that keep
//!   unauthenticated callers from holding memory or connections, and typed
//!   errors ([`Error`], [`Error::may_have_run`]);
//! - [`Discovery`]: [`FlyDns`] (`<region>.<app>.internal`) or [`StaticPeers`].
//!
//! ```
//! use std::sync::Arc;
//! use serde::{Deserialize, Serialize};
//! use fly_rpc::{CallContext, Node, Procedure, Regions};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add(i64, i64);
//!
//! impl Procedure for Add {
//!     const NAME: &'static str = "add";
//!     type Output = i64;
//!     type Error = String;
//!     type State = ();
//!     async fn run(self, _: Arc<()>, _: CallContext) -> Result<i64, String> {
//!         self.0.checked_add(self.1).ok_or_else(|| "overflow".to_owned())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fly_rpc::Error> {
//! let node = Node::builder()
//!     .regions(Regions::new("syd", "syd"))
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .secret("a shared secret of 16+ bytes")
//!     .procedure::<Add>(Arc::new(()))
//!     .start()
//!     .await?;
//! // In the primary region a primary call runs here, without a network hop.
//! assert_eq!(node.call_primary(Add(2, 3)).await?, 5);
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod answer;
mod app_server;
mod auth;
mod batch_wire;
mod body_budget;
mod body_deadline;
mod builder;
mod call;
mod client;
mod coalesce;
mod connections;
mod discovery;
mod error;
mod head_start;
mod info;
mod limits;
mod metric;
mod node;
mod peer_choice;
mod procedure;
mod regions;
mod registry;
mod rejections;
mod remote_error;
mod serve;
mod server;
mod state;
mod status_report;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
mod tls_disabled;
mod trace_context;
mod wire;

pub use app_server::{AppServeOptions, serve_app, serve_app_with};
pub use body_deadline::DEFAULT_BODY_DEADLINE;
pub use builder::{DEFAULT_AUTH_WINDOW, DEFAULT_PORT, NodeBuilder};
pub use call::CallOptions;
pub use coalesce::CallCounts;
#[cfg(feature = "fly-dns")]
pub use discovery::FlyDns;
pub use discovery::{Discovery, StaticPeers};
pub use error::Error;
pub use info::NodeInfo;
pub use node::{DEFAULT_GRACE, Node, PeerReport};
pub use procedure::{CallContext, Procedure};
pub use regions::{DEFAULT_REGION, Regions};
pub use remote_error::RemoteError;
pub use state::PrimaryCheck;
pub use status_report::StatusReport;
#[cfg(feature = "tls")]
pub use tls::TlsConfig;
pub use trace_context::{TraceParent, current_trace_context, with_trace_context};
