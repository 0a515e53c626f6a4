//! The RPC nodes of the repo benchmarks: primary region syd, listening on a
//! free loopback port, one shared secret.

use std::net::SocketAddr;

use fly_rpc::{Node, NodeBuilder, Regions, StaticPeers};

/// Loopback only, so a fixed secret is no secret to guard.
const SECRET: &str = "flypg bench secret, loopback only";

/// A node in `region` (primary region syd) that reaches `peers`.
pub(crate) fn node(region: &str, peers: StaticPeers) -> NodeBuilder {
    Node::builder()
        .regions(Regions::new(region, "syd"))
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .secret(SECRET)
        .discovery(peers)
}
