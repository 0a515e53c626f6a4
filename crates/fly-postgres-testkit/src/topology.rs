//! A primary and any number of streaming replicas, each in a named region,
//! with a simulated ocean between every pair of regions, an optional
//! standby in the primary region, and failover: promote a replica, move the
//! leader address, re-point the others.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::cluster::{Prepared, prepare, server_conf, start_server};
use crate::error::{Result, TestkitError};
use crate::proxy::{Delay, LatencyProxy};
use crate::server::PgServer;

/// Options for [`PgTopology`]; start with [`PgTopology::builder`].
#[derive(Debug, Clone)]
pub struct PgTopologyBuilder {
    primary_region: String,
    replicas: Vec<String>,
    standby: bool,
    synchronous: bool,
    rtts: BTreeMap<(String, String), Duration>,
    apply: Duration,
    settings: Vec<(String, String)>,
}

/// One server of a topology.
#[derive(Debug)]
pub struct Member {
    name: String,
    region: String,
    server: PgServer,
    /// The proxy its WAL stream comes through (none for the first primary).
    link: Option<LatencyProxy>,
}

impl Member {
    /// Its name: the region for a replica (`lax`), `<region>-primary` and
    /// `<region>-standby` in the primary region.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region it runs in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The server.
    pub fn server(&self) -> &PgServer {
        &self.server
    }
}

/// Several real PostgreSQL servers in named regions: one primary, streaming
/// replicas (one per replica region), optionally a standby in the primary
/// region. Every replication link goes through a [`LatencyProxy`] delayed by
/// half the RTT between the two regions; a leader proxy stands in front of
/// whichever server is primary, as port 5432 does on Fly. Dropping it stops
/// every server and deletes their files.
///
// Not run as a doctest: starts several PostgreSQL servers; tests/topology.rs runs the same.
/// ```no_run
/// use std::time::Duration;
/// use fly_postgres_testkit::PgTopology;
///
/// # async fn demo() -> Result<(), fly_postgres_testkit::TestkitError> {
/// let ms = Duration::from_millis;
/// let topology = PgTopology::builder("syd")
///     .replica("lax")
///     .replica("fra")
///     .standby()
///     .rtt("syd", "lax", ms(60))
///     .rtt("syd", "fra", ms(120))
///     .rtt("lax", "fra", ms(140))
///     .start()
///     .await?;
/// topology.primary().kill().await?;
/// topology.promote("syd-standby").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgTopology {
    // Drop order: standbys before the primary they stream from.
    members: Vec<Member>,
    leader: LatencyProxy,
    primary: Mutex<usize>,
    rtts: BTreeMap<(String, String), Duration>,
    apply: Duration,
    tag: String,
    dir: tempfile::TempDir,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl PgTopologyBuilder {
    /// Adds a streaming replica in `region` (one per region).
    pub fn replica(mut self, region: &str) -> Self {
        if region != self.primary_region && !self.replicas.iter().any(|r| r == region) {
            self.replicas.push(region.to_owned());
        }
        self
    }

    /// Adds a standby in the primary region, the one a failover promotes.
    pub fn standby(mut self) -> Self {
        self.standby = true;
        self
    }

    /// Makes the primary-region standby synchronous
    /// (`synchronous_standby_names` on the primary): a commit returns only
    /// once the standby has it, so a failover to it loses no acknowledged
    /// write. Implies [`PgTopologyBuilder::standby`].
    pub fn synchronous_standby(mut self) -> Self {
        self.standby = true;
        self.synchronous = true;
        self
    }

    /// The round-trip time between two regions (default: none, loopback).
    /// Replication links get half of it, one way.
    pub fn rtt(mut self, a: &str, b: &str, rtt: Duration) -> Self {
        self.rtts.insert(pair(a, b), rtt);
        self
    }

    /// Extra one-way delay on every replication link (default none): the
    /// WAL's queueing and apply time on a real replica, on top of half the
    /// RTT.
    pub fn apply_delay(mut self, delay: Duration) -> Self {
        self.apply = delay;
        self
    }

    /// Adds a `postgresql.conf` setting to every server.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the primary, then every standby, and waits until all have
    /// replayed what the primary wrote.
    pub async fn start(self) -> Result<PgTopology> {
        let Prepared {
            bins,
            run_as,
            template,
            dir,
            tag,
        } = prepare("flypg-topology-")?;
        let primary_name = format!("{}-primary", self.primary_region);
        let conf = |name: &str| server_conf(&tag, name, &self.settings);
        let mut primary_conf = conf(&primary_name);
        if self.synchronous {
            let _ = writeln!(
                primary_conf,
                "synchronous_standby_names = '\"{}-standby\"'",
                self.primary_region
            );
        }
        let primary = start_server(
            &primary_name,
            false,
            dir.path(),
            &template,
            &bins,
            run_as,
            &primary_conf,
        )
        .await?;
        let primary_addr = addr(&primary);
        let leader = LatencyProxy::start(primary_addr, Delay::NONE).await?;
        let mut members = vec![Member {
            name: primary_name,
            region: self.primary_region.clone(),
            server: primary,
            link: None,
        }];
        let mut standbys: Vec<(String, String)> = Vec::new();
        if self.standby {
            standbys.push((
                format!("{}-standby", self.primary_region),
                self.primary_region.clone(),
            ));
        }
        standbys.extend(self.replicas.iter().map(|r| (r.clone(), r.clone())));
        for (name, region) in standbys {
            let one_way = link_delay(&self.rtts, &self.primary_region, &region) + self.apply;
            let link = LatencyProxy::start(primary_addr, Delay::to_client_only(one_way)).await?;
            let mut standby_conf = conf(&name);
            let _ = writeln!(
                standby_conf,
                "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'\n\
                 wal_retrieve_retry_interval = '50ms'\n\
                 wal_receiver_status_interval = '1s'\n\
                 recovery_target_timeline = 'latest'",
                link.local_addr().port()
            );
            let server = start_server(
                &name,
                true,
                dir.path(),
                &template,
                &bins,
                run_as,
                &standby_conf,
            )
            .await?;
            members.push(Member {
                name,
                region,
                server,
                link: Some(link),
            });
        }
        // Standbys first in drop order.
        members.reverse();
        let primary_index = members.len() - 1;
        let topology = PgTopology {
            members,
            leader,
            primary: Mutex::new(primary_index),
            rtts: self.rtts,
            apply: self.apply,
            tag,
            dir,
        };
        topology.wait_for_catch_up(Duration::from_secs(30)).await?;
        Ok(topology)
    }
}

fn addr(server: &PgServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

fn link_delay(rtts: &BTreeMap<(String, String), Duration>, from: &str, to: &str) -> Duration {
    rtts.get(&pair(from, to)).copied().unwrap_or_default() / 2
}

impl PgTopology {
    /// Options for a topology whose primary is in `primary_region`.
    pub fn builder(primary_region: &str) -> PgTopologyBuilder {
        PgTopologyBuilder {
            primary_region: primary_region.to_owned(),
            replicas: Vec::new(),
            standby: false,
            synchronous: false,
            rtts: BTreeMap::new(),
            apply: Duration::ZERO,
            settings: Vec::new(),
        }
    }

    fn primary_index(&self) -> usize {
        *self
            .primary
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Every server, standbys first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The server named `name`.
    pub fn member(&self, name: &str) -> Result<&Member> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| TestkitError::Topology(format!("no server named {name}")))
    }

    /// The server that is primary now.
    pub fn primary(&self) -> &PgServer {
        &self.members[self.primary_index()].server
    }

    /// The region of the server that is primary now.
    pub fn primary_region(&self) -> &str {
        &self.members[self.primary_index()].region
    }

    /// The replica of a replica region (not the primary region's standby).
    pub fn replica(&self, region: &str) -> Result<&PgServer> {
        Ok(&self.member(region)?.server)
    }

    /// The leader address: always reaches the current primary, as port
    /// 5432 of a Fly Postgres app does.
    pub fn leader_addr(&self) -> SocketAddr {
        self.leader.local_addr()
    }

    /// The proxy behind [`PgTopology::leader_addr`]: the primary-region
    /// apps' link to their database, to delay, cut or silence.
    pub fn leader_link(&self) -> &LatencyProxy {
        &self.leader
    }

    /// A connection URL for the leader address (the `postgres` database).
    pub fn leader_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.leader_addr().port()
        )
    }

    /// Connect options for the leader address.
    pub fn leader_options(&self) -> PgConnectOptions {
        self.primary()
            .connect_options()
            .port(self.leader_addr().port())
    }

    /// The RTT configured between two regions (zero when none was).
    pub fn rtt(&self, a: &str, b: &str) -> Duration {
        self.rtts.get(&pair(a, b)).copied().unwrap_or_default()
    }

    /// The replication link proxy of a standby.
    pub fn link(&self, name: &str) -> Result<&LatencyProxy> {
        self.member(name)?
            .link
            .as_ref()
            .ok_or_else(|| TestkitError::Topology(format!("{name} has no replication link")))
    }

    /// A name unique to this topology, in every server's process title.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The temp dir holding the data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fails over to `name`: promotes it (waiting until it accepts writes),
    /// moves the leader address to it, and re-points every other running
    /// standby's replication link at it, with the delay of the new pair of
    /// regions; they follow the new timeline. Kill or stop the old primary
    /// first, as a real failover would find it.
    pub async fn promote(&self, name: &str) -> Result<()> {
        let index = self
            .members
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| TestkitError::Topology(format!("no server named {name}")))?;
        let new = &self.members[index];
        let mut conn = new.server.connect().await?;
        let promoted: bool = sqlx::query_scalar("select pg_promote(true, 30)")
            .fetch_one(&mut conn)
            .await?;
        if !promoted {
            return Err(TestkitError::Topology(format!(
                "{name} did not finish promotion within 30 s"
            )));
        }
        // Only the first primary's configuration names a synchronous
        // standby: the promoted server waits for none.
        let new_addr = addr(&new.server);
        self.leader.connect_to(new_addr);
        // Connections to the old leader are dead or soon will be.
        self.leader.sever();
        for (i, member) in self.members.iter().enumerate() {
            if i == index {
                continue;
            }
            if let Some(link) = &member.link {
                link.set_delay(Delay::to_client_only(
                    link_delay(&self.rtts, &new.region, &member.region) + self.apply,
                ));
                link.connect_to(new_addr);
                link.sever();
            }
        }
        *self.primary.lock().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    /// Waits until every running standby has replayed the primary's current
    /// WAL position.
    pub async fn wait_for_catch_up(&self, timeout: Duration) -> Result<()> {
        let primary = self.primary();
        for member in &self.members {
            if std::ptr::eq(&member.server, primary) || !member.server.is_running() {
                continue;
            }
            crate::cluster::wait_until_replayed(primary, &member.server, timeout).await?;
        }
        Ok(())
    }
}
