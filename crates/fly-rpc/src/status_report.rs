//! What an instance can see of its app: its regions and what every peer
//! discovery finds says about itself. `flypg status` and the template app's
//! `todo status` print it; an app can offer the same as a subcommand.

use std::fmt;
use std::net::SocketAddr;

use crate::error::Error;
use crate::node::{Node, PeerReport};

/// This instance's regions and every discovered peer's answer (region,
/// address, build version, procedures) or why it could not be asked.
///
// Not run as a doctest: asks the peers that the environment names.
/// ```no_run
/// # async fn demo() -> Result<(), fly_rpc::Error> {
/// // The same environment as the app (FLY_RPC_SECRET, FLY_APP_NAME, ...).
/// let report = fly_rpc::StatusReport::from_env().await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct StatusReport {
    /// This instance's region.
    pub region: String,
    /// The primary region it believes in.
    pub primary_region: String,
    /// Whether this instance is in the primary region.
    pub is_primary: bool,
    /// Every instance discovery lists, with its answer.
    pub peers: Vec<PeerReport>,
}

impl StatusReport {
    /// Starts a node from the environment ([`Node::from_env`]) on a free
    /// loopback port (the app itself holds the real one), asks every peer,
    /// and stops the node again.
    pub async fn from_env() -> Result<Self, Error> {
        let node = Node::from_env()?
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .start()
            .await?;
        let report = Self::of(&node).await;
        node.shutdown().await?;
        report
    }

    /// What `node` sees: its regions and each discovered peer's answer.
    pub async fn of(node: &Node) -> Result<Self, Error> {
        let me = node.info();
        Ok(Self {
            region: me.region,
            primary_region: me.primary_region,
            is_primary: node.regions().is_primary(),
            peers: node.peers().await?,
        })
    }

    /// What a `status` command prints: [`StatusReport::to_json`] on one
    /// line, or the text of [`Display`](fmt::Display).
    pub fn render(&self, json: bool) -> String {
        if json {
            format!("{}\n", self.to_json())
        } else {
            self.to_string()
        }
    }

    /// The report as one JSON object (`region`, `primary_region`,
    /// `is_primary`, `peers`: each `region`, `addr` and `info` or `error`).
    pub fn to_json(&self) -> serde_json::Value {
        let peers: Vec<serde_json::Value> = self
            .peers
            .iter()
            .map(|p| match &p.info {
                Ok(info) => serde_json::json!({
                    "region": p.region, "addr": p.addr.to_string(), "info": info,
                }),
                Err(e) => serde_json::json!({
                    "region": p.region, "addr": p.addr.to_string(), "error": e.to_string(),
                }),
            })
            .collect();
        serde_json::json!({
            "region": self.region,
            "primary_region": self.primary_region,
            "is_primary": self.is_primary,
            "peers": peers,
        })
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "this instance: region {} (primary region {}{})",
            self.region,
            self.primary_region,
            if self.is_primary { ", this is it" } else { "" }
        )?;
        if self.peers.is_empty() {
            writeln!(
                f,
                "peers: none discovered (set FLY_RPC_PEERS, or run on Fly with FLY_APP_NAME)"
            )?;
        }
        for p in &self.peers {
            match &p.info {
                Ok(info) => writeln!(
                    f,
                    "  {:<6} {:<28} version {:<12} procedures: {}",
                    p.region,
                    p.addr,
                    info.version,
                    info.procedures.join(", ")
                )?,
                Err(e) => writeln!(f, "  {:<6} {:<28} UNREACHABLE: {e}", p.region, p.addr)?,
            }
        }
        Ok(())
    }
}
