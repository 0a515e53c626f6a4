//! A Postgres machine as `fly postgres` runs one: its node's own server on
//! its 6PN address at port 5433, and port 5432 reaching the cluster's
//! current leader. The servers are the testkit's own (on this host's
//! loopback); the machine forwards both ports to them.

use std::net::SocketAddr;

use super::FlyNet;
use super::machine::FlyMachine;
use crate::error::Result;
use crate::proxy::{Delay, LatencyProxy};
use crate::topology::PgTopology;

/// The port of a Postgres node's own server on Fly.
pub const NODE_PORT: u16 = 5433;
/// The port that reaches the leader on Fly.
pub const LEADER_PORT: u16 = 5432;

/// A Postgres machine on a [`FlyNet`]; from [`FlyNet::db_machine`].
#[derive(Debug)]
pub struct DbMachine {
    // Field order is drop order: the forwarders stop before the network.
    node: LatencyProxy,
    leader: LatencyProxy,
    machine: FlyMachine,
}

impl DbMachine {
    /// The machine (its id, region, 6PN address).
    pub fn machine(&self) -> &FlyMachine {
        &self.machine
    }

    /// Points port 5432 at another leader (after a failover).
    pub fn set_leader(&self, leader: SocketAddr) {
        self.leader.connect_to(leader);
    }

    /// The node's own link, to cut or silence in a test.
    pub fn node_link(&self) -> &LatencyProxy {
        &self.node
    }
}

impl FlyNet {
    /// Starts a machine of the database app `app` in `region`, listed in
    /// DNS, whose port 5433 reaches `node` (this node's server) and port
    /// 5432 reaches `leader`.
    pub async fn db_machine(
        &self,
        app: &str,
        region: &str,
        node: SocketAddr,
        leader: SocketAddr,
    ) -> Result<DbMachine> {
        let machine = self.machine(app, region)?;
        let node = LatencyProxy::start_on(machine.bind_tcp(NODE_PORT)?, node, Delay::NONE).await?;
        let leader =
            LatencyProxy::start_on(machine.bind_tcp(LEADER_PORT)?, leader, Delay::NONE).await?;
        Ok(DbMachine {
            node,
            leader,
            machine,
        })
    }

    /// The Postgres app `app` as `fly postgres create` makes it, on the
    /// servers of `topology`: a machine per server in its region (the
    /// primary region's standby too), each forwarding 5433 to its own
    /// server and 5432 to the topology's leader address.
    pub async fn postgres_app(&self, app: &str, topology: &PgTopology) -> Result<Vec<DbMachine>> {
        let leader = topology.leader_addr();
        let mut machines = Vec::new();
        for member in topology.members() {
            let node = SocketAddr::from(([127, 0, 0, 1], member.server().port()));
            machines.push(self.db_machine(app, member.region(), node, leader).await?);
        }
        Ok(machines)
    }
}
