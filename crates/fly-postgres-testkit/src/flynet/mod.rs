//! A Fly-like private network on this machine, for tests that must leave
//! loopback: one network namespace per machine on one bridge, IPv6 only
//! between machines (6PN-style `fdaa:` addresses), and an internal DNS
//! server at `fdaa::3` answering as Fly's does (`<app>.internal`,
//! `<region>.<app>.internal`, `top<N>.nearest.of.<app>.internal`,
//! `<id>.vm.<app>.internal`, TXT `regions.` and `vms.`).
//!
//! Everything it makes is removed when it is dropped (also while a panic
//! unwinds), on SIGINT, and, for a process killed outright, by the next
//! world that starts. It needs root (CAP_NET_ADMIN) and `ip` (iproute2):
//! [`FlyNet::start_or_skip`] prints one line and returns `None` without
//! them, unless `FLYPG_REQUIRE_NETNS=1` (set in CI) makes that a failure.
//!
//! ```no_run
//! # async fn demo() -> fly_postgres_testkit::Result<()> {
//! use fly_postgres_testkit::FlyNet;
//!
//! let Some(net) = FlyNet::start_or_skip("my_test") else { return Ok(()) };
//! let syd = net.machine("my-app", "syd")?;
//! // A listener on the machine's 6PN address, inside the machine.
//! let addr = std::net::SocketAddr::from((syd.private_ip(), 8080));
//! let listener = syd.spawn(async move { tokio::net::TcpListener::bind(addr).await })?.await;
//! # let _ = listener;
//! # Ok(()) }
//! ```

mod app;
mod app_machine;
mod cleanup;
mod db_machine;
mod dns;
mod edge_proxy;
mod fly_toml;
mod machine;
mod namespace;

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

pub use app::{DeployReport, FlyApp, MachineDeploy, Routes};
pub use app_machine::{AppMachine, Image, Stopped};
pub use db_machine::{DbMachine, LEADER_PORT, NODE_PORT};
pub use edge_proxy::EdgeProxy;
pub use fly_toml::{DeploySection, FlyToml, HttpCheck, HttpService, Strategy};
pub use machine::FlyMachine;

use crate::error::{Result, TestkitError};
use dns::{Listing, SharedZone, Zone};
use namespace::Namespace;

/// The internal DNS server's address, as on Fly.
pub const DNS_ADDR: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 3);

/// The variable that turns a skip for want of privilege into a failure.
pub const REQUIRE_NETNS_VAR: &str = "FLYPG_REQUIRE_NETNS";

/// The TTL of the DNS answers, in seconds, unless set.
const DEFAULT_TTL: u32 = 5;

/// The private network: the bridge, the DNS server, and the machines made
/// with [`FlyNet::machine`].
#[derive(Debug)]
pub struct FlyNet {
    prefix: String,
    zone: SharedZone,
    machines: AtomicU16,
    dns_runtime: Option<Runtime>,
    /// Held for its drop: the DNS machine's namespace.
    _dns: Namespace,
    switch: Namespace,
}

static WORLDS: AtomicU32 = AtomicU32::new(0);

impl FlyNet {
    /// Builds the network and starts its DNS server.
    pub fn start() -> Result<Self> {
        cleanup::remove_leftovers();
        let world = WORLDS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}{}-{world}", cleanup::PREFIX, std::process::id());
        let switch = Namespace::create(format!("{prefix}-net"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let dns = Namespace::create(format!("{prefix}-dns"))?;
        plug(&switch, &dns, "dns", DNS_ADDR)?;
        let zone: SharedZone = Arc::new(Mutex::new(Zone {
            listings: Vec::new(),
            ttl: DEFAULT_TTL,
            silent: false,
        }));
        let dns_runtime = machine::runtime_in(&dns, "dns")?;
        // Bound inside the DNS namespace, on its runtime; this waits only
        // for the bind (callers may be on a runtime of their own).
        let (bound, binding) = std::sync::mpsc::channel();
        let serving = dns::serve(Arc::clone(&zone), SocketAddr::from((DNS_ADDR, 53)));
        dns_runtime.spawn(async move { bound.send(serving.await) });
        let not_bound = |source| TestkitError::Io {
            context: format!("serving DNS on [{DNS_ADDR}]:53"),
            source,
        };
        binding
            .recv()
            .map_err(|_| not_bound(std::io::ErrorKind::Other.into()))?
            .map_err(not_bound)?;
        Ok(FlyNet {
            prefix,
            zone,
            machines: AtomicU16::new(0),
            dns_runtime: Some(dns_runtime),
            _dns: dns,
            switch,
        })
    }

    /// [`FlyNet::start`], or `None` with one line on stderr saying why the
    /// test `test` is skipped. With `FLYPG_REQUIRE_NETNS=1` it panics
    /// instead, so CI cannot pass without running it.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(net) => Some(net),
            Err(e) if std::env::var(REQUIRE_NETNS_VAR).is_ok_and(|v| v == "1") => {
                panic!("{test}: {REQUIRE_NETNS_VAR}=1 but no network namespaces here: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED {test}: network namespaces need root (CAP_NET_ADMIN) and iproute2: {e}"
                );
                None
            }
        }
    }

    /// Starts a machine of `app` in `region`, listed in DNS.
    pub fn machine(&self, app: &str, region: &str) -> Result<FlyMachine> {
        let n = self.machines.fetch_add(1, Ordering::Relaxed) + 1;
        let namespace = Namespace::create(format!("{}-m{n}", self.prefix))?;
        let private_ip = Ipv6Addr::new(0xfdaa, 0, 1, 0xa7b, n, 0, 0, 2);
        plug(&self.switch, &namespace, &format!("m{n}"), private_ip)?;
        namespace.etc_file("resolv.conf", &format!("nameserver {DNS_ADDR}\n"))?;
        namespace.etc_file(
            "hosts",
            &format!("127.0.0.1 localhost\n::1 localhost\n{private_ip} fly-local-6pn\n"),
        )?;
        let id = format!(
            "{:08x}{:06x}",
            std::process::id(),
            (u32::from(n) << 8) | 0x5a
        );
        self.zone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .listings
            .push(Listing {
                app: app.to_owned(),
                region: region.to_owned(),
                id: id.clone(),
                addr: private_ip,
                started: true,
            });
        FlyMachine::new(
            namespace,
            id,
            app,
            region,
            private_ip,
            Arc::clone(&self.zone),
        )
    }

    /// The TTL of DNS answers from now on (default 5 s).
    pub fn set_dns_ttl(&self, seconds: u32) {
        self.zone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ttl = seconds;
    }

    /// Makes the DNS server answer nothing (`true`), as one that is down
    /// or unreachable, or answer again (`false`).
    pub fn set_dns_silent(&self, silent: bool) {
        self.zone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .silent = silent;
    }

    /// Where the DNS server answers (`[fdaa::3]:53`, reachable from the
    /// machines only).
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from((DNS_ADDR, 53))
    }

    /// The names of the namespaces this world made, for checks that
    /// nothing is left.
    pub fn namespace_prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for FlyNet {
    fn drop(&mut self) {
        if let Some(runtime) = self.dns_runtime.take() {
            runtime.shutdown_background();
        }
        // The namespaces go with their fields: the DNS machine, then the
        // switch with the bridge.
    }
}

/// Connects `machine` to the bridge in `switch` with a veth pair (`eth0`
/// inside the machine) and gives it `addr` on the private network.
fn plug(switch: &Namespace, machine: &Namespace, port: &str, addr: Ipv6Addr) -> Result<()> {
    switch.ip(&[
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        machine.name(),
    ])?;
    switch.ip(&["link", "set", port, "master", "br0", "up"])?;
    // No duplicate address detection: the address works at once.
    machine.ip(&["addr", "add", &format!("{addr}/16"), "dev", "eth0", "nodad"])?;
    machine.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}
