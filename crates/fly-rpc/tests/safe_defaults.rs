//! The defaults a developer meets first: one region needs no node, and the
//! insecure mode never leaves loopback.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Counters, Echo};
use fly_rpc::{Error, Node, Regions, StaticPeers};

#[tokio::test]
async fn one_region_with_nothing_configured_needs_no_secret_and_opens_no_port() {
    let counters = Counters::named("laptop");
    let node = Node::builder()
        .procedure::<Echo>(Arc::clone(&counters))
        .start()
        .await
        .expect("a single-region node starts without a secret");
    assert_eq!(node.local_addr(), None, "no RPC listener");
    assert!(node.regions().is_primary());
    // Calls to its own region run here.
    let reply = node.call_primary(Echo("hi".into())).await.unwrap();
    assert!(reply.local);
    assert_eq!(counters.runs(), 1);
    // Another region has no instance to run on: a typed error, not a hang.
    let err = node.call_region("lax", Echo("x".into())).await.unwrap_err();
    assert!(!err.may_have_run(), "{err:?}");
    tokio::time::timeout(Duration::from_secs(1), node.shutdown())
        .await
        .expect("nothing to wait for")
        .unwrap();
}

#[tokio::test]
async fn a_second_region_or_peers_still_need_a_secret() {
    let replica_region = Node::builder()
        .regions(Regions::new("lax", "syd"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(replica_region, Error::Config(ref m) if m.contains("FLY_RPC_SECRET")),
        "{replica_region:?}"
    );
    let with_peers = Node::builder()
        .discovery(StaticPeers::new().with("local", "127.0.0.1:1".parse().unwrap()))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(with_peers, Error::Config(ref m) if m.contains("FLY_RPC_SECRET")),
        "{with_peers:?}"
    );
    let with_port = Node::builder().port(0).start().await.unwrap_err();
    assert!(matches!(with_port, Error::Config(_)), "{with_port:?}");
}

#[tokio::test]
async fn insecure_mode_listens_on_loopback_by_default() {
    let node = Node::builder()
        .regions(Regions::new("syd", "syd"))
        .insecure()
        .port(0)
        .start()
        .await
        .unwrap();
    let addr = node.local_addr().expect("an insecure node listens");
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST, "{addr}");
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("reachable on loopback");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn insecure_mode_refuses_every_address_that_is_not_loopback() {
    for addr in ["0.0.0.0:0", "[::]:0", "[::ffff:0.0.0.0]:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let err = Node::builder()
            .regions(Regions::new("lax", "syd"))
            .insecure()
            .listen(addr)
            .start()
            .await
            .unwrap_err();
        let Error::Config(message) = &err else {
            panic!("{addr}: {err:?}");
        };
        // The message names both settings and the way out.
        for needle in [
            "FLY_RPC_INSECURE",
            "FLY_RPC_LISTEN",
            "loopback",
            "FLY_RPC_SECRET",
        ] {
            assert!(message.contains(needle), "{addr}: {message}");
        }
    }
    // Loopback, v4 and v6, is fine when asked for explicitly.
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        match Node::builder()
            .insecure()
            .listen(addr.parse().unwrap())
            .start()
            .await
        {
            Ok(node) => node.shutdown().await.unwrap(),
            // A machine without IPv6 cannot bind [::1]; that is not a refusal.
            Err(Error::Io(e)) if addr.starts_with('[') => {
                eprintln!("skipping {addr}: {e}");
            }
            Err(e) => panic!("{addr}: {e:?}"),
        }
    }
}

#[tokio::test]
async fn a_second_shutdown_waits_for_the_first() {
    let counters = Counters::named("syd");
    let node = common::start(common::node("syd", "syd", &counters), StaticPeers::new()).await;
    let (a, b) = tokio::join!(node.shutdown(), node.clone().shutdown_owned());
    a.unwrap();
    b.unwrap();
    let addr = node.local_addr().expect("rpc listener");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "both returned, so the port is closed"
    );
}

trait ShutdownOwned {
    async fn shutdown_owned(self) -> Result<(), Error>;
}

impl ShutdownOwned for Node {
    async fn shutdown_owned(self) -> Result<(), Error> {
        self.shutdown().await
    }
}
