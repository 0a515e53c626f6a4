//! `flypg status`: this node's identity and what it can see of its peers,
//! configured by the same environment as the app.

use std::net::SocketAddr;

pub(crate) async fn run(json: bool) -> Result<(), Box<dyn std::error::Error>> {
    // Listen on a free loopback port: the app itself holds the real one.
    let node = fly_rpc::Node::from_env()?
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await?;
    let me = node.info();
    let peers = node.peers().await?;
    if json {
        let peers: Vec<serde_json::Value> = peers
            .iter()
            .map(|p| match &p.info {
                Ok(info) => serde_json::json!({"region": p.region, "addr": p.addr.to_string(), "info": info}),
                Err(e) => serde_json::json!({"region": p.region, "addr": p.addr.to_string(), "error": e.to_string()}),
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "region": me.region,
                "primary_region": me.primary_region,
                "is_primary": node.regions().is_primary(),
                "peers": peers,
            })
        );
    } else {
        println!(
            "this instance: region {} (primary region {}{})",
            me.region,
            me.primary_region,
            if node.regions().is_primary() {
                ", this is it"
            } else {
                ""
            }
        );
        if peers.is_empty() {
            println!("peers: none discovered (set FLY_RPC_PEERS, or run on Fly with FLY_APP_NAME)");
        }
        for p in &peers {
            match &p.info {
                Ok(info) => println!(
                    "  {:<6} {:<28} version {:<12} procedures: {}",
                    p.region,
                    p.addr,
                    info.version,
                    info.procedures.join(", ")
                ),
                Err(e) => println!("  {:<6} {:<28} UNREACHABLE: {e}", p.region, p.addr),
            }
        }
    }
    node.shutdown().await?;
    Ok(())
}
