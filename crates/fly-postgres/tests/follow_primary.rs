//! `follow_primary`: PRIMARY_REGION is a hint. After a cross-region
//! promotion (lax's replica becomes the primary), writes from fra land in
//! lax and lax writes locally, with no redeploy.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use fly_postgres::{Repo, sqlx};
use fly_postgres_testkit::{PgServer, PgTopology};
use fly_rpc::{Node, Regions, StaticPeers};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A repo in `region` on `server`, following the primary, with every
/// region's node as a peer (their addresses are reserved up front).
async fn repo_in(
    region: &str,
    server: &PgServer,
    addrs: &[(&str, SocketAddr)],
) -> Result<Repo, fly_postgres::Error> {
    let mut peers = StaticPeers::new();
    for (r, addr) in addrs {
        peers = peers.with(*r, *addr);
    }
    let listen = addrs.iter().find(|(r, _)| *r == region).unwrap().1;
    registered(Repo::builder())
        .pool(pool(server.connect_options()).await)
        .node(
            Node::builder()
                .regions(Regions::new(region, "syd"))
                .listen(listen)
                .secret(SECRET)
                .discovery(peers),
        )
        .follow_primary(true)
        .rpc_timeout(Duration::from_secs(4))
        .start()
        .await
}

/// The three regions' repos. A reserved address is free only until it is
/// bound: any outgoing connection on the machine may take it meanwhile as
/// its ephemeral port, so the three start again on new addresses then.
async fn three_repos(topology: &PgTopology) -> (Repo, Repo, Repo) {
    for _ in 0..5 {
        let addrs = [
            ("syd", free_addr()),
            ("lax", free_addr()),
            ("fra", free_addr()),
        ];
        let started = async {
            let syd = repo_in("syd", topology.primary(), &addrs).await?;
            let lax = repo_in("lax", topology.replica("lax").unwrap(), &addrs).await?;
            let fra = repo_in("fra", topology.replica("fra").unwrap(), &addrs).await?;
            Ok::<_, fly_postgres::Error>((syd, lax, fra))
        };
        match started.await {
            Ok(repos) => return repos,
            Err(fly_postgres::Error::Rpc(fly_rpc::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free addresses for three nodes in five tries");
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn after_a_cross_region_promotion_writes_from_fra_land_in_lax() {
    let topology = PgTopology::builder("syd")
        .replica("lax")
        .replica("fra")
        .rtt("syd", "lax", ms(20))
        .rtt("syd", "fra", ms(30))
        .rtt("lax", "fra", ms(20))
        .start()
        .await
        .unwrap();
    let (syd, lax, fra) = three_repos(&topology).await;
    syd.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    topology.wait_for_catch_up(ms(10_000)).await.unwrap();

    // Before: the hint is right.
    let before = fra
        .write(CreateTodo {
            title: "before".into(),
        })
        .await
        .unwrap();
    assert_eq!(fra.primary_region(), "syd");
    assert!(syd.is_primary().await && !lax.is_primary().await);

    // syd's database dies; lax's replica is promoted, fra follows it.
    topology.wait_for_catch_up(ms(10_000)).await.unwrap();
    topology.primary().kill().await.unwrap();
    topology.promote("lax").await.unwrap();

    let after = fra
        .write(CreateTodo {
            title: "after".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        fra.primary_region(),
        "lax",
        "fra's writes follow the primary"
    );
    // Read your writes in fra, on the new timeline.
    assert_eq!(find_todo(fra.local(), after.id).await, Some(after.clone()));
    // It landed in lax, whose database now takes writes.
    assert_eq!(find_todo(lax.local(), after.id).await, Some(after));
    assert!(lax.is_primary().await, "is_primary follows the database");
    assert!(lax.stats().served_writes >= 1);
    // lax writes locally now, without an RPC.
    let local = lax
        .write(CreateTodo {
            title: "in lax".into(),
        })
        .await
        .unwrap();
    assert_eq!(lax.stats().local_writes, 1);
    assert_eq!(find_todo(lax.local(), local.id).await, Some(local));
    assert_eq!(find_todo(lax.local(), before.id).await, Some(before));
}
