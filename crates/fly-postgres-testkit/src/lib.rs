//! Real PostgreSQL servers for tests, benchmarks and demos of `fly-postgres`.
//!
//! - [`PgCluster`]: a primary and a streaming hot-standby replica started from
//!   the machine's PostgreSQL binaries (`PG_BIN`, else `pg_config --bindir`,
//!   else `/usr/lib/postgresql/*/bin`), in a temp dir, on free ports, as the
//!   `postgres` OS user when run as root. Dropping it stops both and deletes
//!   their files.
//! - [`PgTopology`]: a primary, replicas in named regions with an RTT
//!   matrix on their replication links, a standby in the primary region, a
//!   leader address, and failover ([`PgTopology::promote`]).
//! - [`LatencyProxy`]: a TCP forwarder with a one-way delay per direction, to
//!   give a test on one machine the round trips of two regions.
//! - [`AppProcess`]: an app instance as its own process, to kill -9, SIGTERM
//!   and restart on the same addresses.
//!
//! Never used by the libraries' normal code: only tests, benches and the demo.
//!
//! ```
//! use std::time::Duration;
//! use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A primary and a replica whose WAL arrives 30 ms late, as across an ocean.
//! let cluster = PgCluster::builder()
//!     .replication_delay(Duration::from_millis(30))
//!     .start()
//!     .await?;
//! // The primary as a far region's app would reach it: 60 ms round trips.
//! let remote_primary = LatencyProxy::start(
//!     ([127, 0, 0, 1], cluster.primary().port()).into(),
//!     Delay::rtt(Duration::from_millis(60)),
//! )
//! .await?;
//! assert_ne!(remote_primary.local_addr().port(), cluster.primary().port());
//! // Lag on demand: the replica replays nothing until resumed.
//! cluster.pause_replay().await?;
//! cluster.resume_replay().await?;
//! cluster.wait_for_catch_up(Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod app_process;
mod binaries;
mod cluster;
mod error;
pub mod flynet;
mod lateness;
mod os_user;
mod ports;
mod precise_timer;
mod processes;
mod proxy;
mod server;
mod template;
mod topology;

pub use app_process::AppProcess;
pub use binaries::PgBinaries;
pub use cluster::{PgCluster, PgClusterBuilder};
pub use error::{Result, TestkitError};
pub use flynet::{FlyMachine, FlyNet};
pub use lateness::Lateness;
pub use ports::free_loopback_addrs;
pub use processes::live_processes_tagged;
pub use proxy::{Delay, LatencyProxy};
pub use server::PgServer;
pub use topology::{Member, PgTopology, PgTopologyBuilder};
