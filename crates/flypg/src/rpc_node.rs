//! `flypg rpc-node`: a bare fly-rpc node configured by env, serving
//! [`Noop`]. Used by the multi-process failover test; prints its address on
//! the first line of stdout.

use std::sync::Arc;

use crate::probe::Noop;

pub(crate) async fn run(name: String) -> Result<(), Box<dyn std::error::Error>> {
    let node = fly_rpc::Node::from_env()?
        .procedure::<Noop>(Arc::new(name))
        .start()
        .await?;
    let Some(addr) = node.local_addr() else {
        return Err("no RPC listener: configure peers or a listen address".into());
    };
    println!("listening on {addr}");
    crate::signal::stop_requested().await;
    node.shutdown().await?;
    Ok(())
}
