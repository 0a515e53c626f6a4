//! One machine of the emulated private network: its own namespace, its
//! 6PN address, the env Fly gives it, and a runtime whose tasks open their
//! sockets inside the machine.

use std::future::Future;
use std::net::Ipv6Addr;
use std::sync::{Mutex, PoisonError};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::dns::SharedZone;
use super::namespace::Namespace;
use crate::error::{Result, TestkitError};

/// A machine of a [`FlyNet`](super::FlyNet): a network namespace on the
/// private network's bridge with one IPv6 address (no IPv4 between
/// machines), listed in DNS while started. Dropping it destroys it: its
/// records go and its address never answers again.
#[derive(Debug)]
pub struct FlyMachine {
    id: String,
    app: String,
    region: String,
    private_ip: Ipv6Addr,
    zone: SharedZone,
    /// Dropped before the namespace, so no task outlives its network.
    runtime: Mutex<Option<Runtime>>,
    namespace: Namespace,
}

impl FlyMachine {
    pub(super) fn new(
        namespace: Namespace,
        id: String,
        app: &str,
        region: &str,
        private_ip: Ipv6Addr,
        zone: SharedZone,
    ) -> Result<Self> {
        let runtime = runtime_in(&namespace, &id)?;
        Ok(FlyMachine {
            id,
            app: app.to_owned(),
            region: region.to_owned(),
            private_ip,
            zone,
            runtime: Mutex::new(Some(runtime)),
            namespace,
        })
    }

    /// The machine id (14 hex digits, as Fly's).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The app it belongs to.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Its region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Its 6PN address (`FLY_PRIVATE_IP`).
    pub fn private_ip(&self) -> Ipv6Addr {
        self.private_ip
    }

    /// The network namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        self.namespace.name()
    }

    /// The env a Fly machine has (`FLY_APP_NAME`, `FLY_REGION`,
    /// `FLY_MACHINE_ID`, `FLY_ALLOC_ID`, `FLY_PRIVATE_IP`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLY_APP_NAME", self.app.clone()),
            ("FLY_REGION", self.region.clone()),
            ("FLY_MACHINE_ID", self.id.clone()),
            ("FLY_ALLOC_ID", self.id.clone()),
            ("FLY_PRIVATE_IP", self.private_ip.to_string()),
        ]
    }

    /// Runs `future` on the machine: every socket it opens (listeners,
    /// connections, DNS queries) is inside the machine's network.
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.lock().unwrap_or_else(PoisonError::into_inner);
        match runtime.as_ref() {
            Some(runtime) => Ok(runtime.spawn(future)),
            None => Err(TestkitError::Io {
                context: format!("machine {} is stopped", self.id),
                source: std::io::ErrorKind::NotConnected.into(),
            }),
        }
    }

    /// A TCP listener on `port` of the machine's 6PN address, made inside
    /// the machine's network (to hand to
    /// [`LatencyProxy::start_on`](crate::LatencyProxy::start_on), say).
    pub fn bind_tcp(&self, port: u16) -> Result<std::net::TcpListener> {
        let addr = std::net::SocketAddr::from((self.private_ip, port));
        let what = format!("binding [{addr}] in machine {}", self.id);
        self.namespace.inside(&what, || {
            std::net::TcpListener::bind(addr).map_err(|source| TestkitError::Io {
                context: what.clone(),
                source,
            })
        })
    }

    /// Lists the machine in DNS (`true`, a started machine) or keeps only
    /// its `<id>.vm.<app>.internal` name (`false`, a stopped one); its
    /// network stays as it is.
    pub fn set_listed(&self, listed: bool) {
        let mut zone = self.zone.lock().unwrap_or_else(PoisonError::into_inner);
        for listing in zone.listings.iter_mut().filter(|l| l.id == self.id) {
            listing.started = listed;
        }
    }
}

impl FlyMachine {
    /// Ends the machine as a crash or a destroy looks from outside, while
    /// DNS still lists it (Fly's records lag a machine's end): its tasks
    /// end and their connections close, then its address stops answering
    /// (packets dropped, not refused). Its records go with
    /// [`set_listed`](Self::set_listed) or when it is dropped.
    pub fn vanish(&self) -> Result<()> {
        self.stop_tasks();
        // The closing segments leave before the link goes down.
        std::thread::sleep(std::time::Duration::from_millis(50));
        self.namespace.ip(&["link", "set", "eth0", "down"])
    }

    /// Ends the machine's runtime and every task on it.
    fn stop_tasks(&self) {
        if let Some(runtime) = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            runtime.shutdown_background();
        }
    }
}

impl Drop for FlyMachine {
    fn drop(&mut self) {
        self.stop_tasks();
        let mut zone = self.zone.lock().unwrap_or_else(PoisonError::into_inner);
        zone.listings.retain(|l| l.id != self.id);
    }
}

/// A runtime whose worker threads were started inside `namespace` (threads
/// inherit the network namespace of the thread that starts them).
pub(super) fn runtime_in(namespace: &Namespace, name: &str) -> Result<Runtime> {
    let what = format!("starting the runtime of {name}");
    namespace.inside(&what, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("flynet-{name}"))
            .enable_all()
            .build()
            .map_err(|source| TestkitError::Io {
                context: what.clone(),
                source,
            })
    })
}
