//! An app deployed on the Fly world as `fly deploy` deploys one: machines
//! started from an image with fly.toml's env and the app's secrets,
//! checked before they get traffic, replaced one at a time (`rolling`) or
//! all beside the old ones (`bluegreen`), restarted by `fly secrets set`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::FlyNet;
use super::app_machine::{AppMachine, Image, Stopped};
use super::fly_toml::{FlyToml, Strategy};
use crate::error::{Result, TestkitError};

/// The machines that pass their checks, per region: where Fly's proxy
/// sends the app's HTTP traffic (see [`EdgeProxy`](super::EdgeProxy)).
#[derive(Debug, Clone, Default)]
pub struct Routes(Arc<Mutex<BTreeMap<String, Vec<SocketAddr>>>>);

impl Routes {
    /// The healthy machines of `region`.
    pub fn region(&self, region: &str) -> Vec<SocketAddr> {
        self.lock().get(region).cloned().unwrap_or_default()
    }

    /// Every healthy machine.
    pub fn all(&self) -> Vec<SocketAddr> {
        self.lock().values().flatten().copied().collect()
    }

    fn add(&self, region: &str, addr: SocketAddr) {
        let mut routes = self.lock();
        let list = routes.entry(region.to_owned()).or_default();
        if !list.contains(&addr) {
            list.push(addr);
        }
    }

    fn remove(&self, addr: SocketAddr) {
        for list in self.lock().values_mut() {
            list.retain(|a| *a != addr);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<SocketAddr>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one machine went through in a deploy.
#[derive(Debug, Clone)]
pub struct MachineDeploy {
    /// The machine's id before, and after (the same for `rolling`).
    pub old_id: String,
    /// Its id after.
    pub new_id: String,
    /// Its address before.
    pub old_addr: SocketAddr,
    /// Its address after (the same for `rolling`).
    pub new_addr: SocketAddr,
    /// How the old process ended.
    pub stopped: Stopped,
    /// From the new process's start to its first passing check.
    pub healthy_after: Duration,
    /// When the new machine got traffic, from the deploy's start.
    pub routed_at: Duration,
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct DeployReport {
    /// The strategy it followed.
    pub strategy: Strategy,
    /// One entry per machine, in the order they were replaced.
    pub machines: Vec<MachineDeploy>,
    /// The whole deploy.
    pub took: Duration,
}

impl DeployReport {
    /// Machines whose old process exited by itself, successfully.
    pub fn clean_exits(&self) -> usize {
        self.machines
            .iter()
            .filter(|m| m.stopped == Stopped::Exited { success: true })
            .count()
    }

    /// Machines that came back at another address (`bluegreen`).
    pub fn new_addresses(&self) -> usize {
        self.machines
            .iter()
            .filter(|m| m.new_addr != m.old_addr)
            .count()
    }
}

/// An app on a [`FlyNet`]. Its processes are killed when it is dropped
/// (drop it before the network), and its logs removed unless
/// `FLYNET_KEEP_LOGS=1` (then their directory is named on stderr).
#[derive(Debug)]
pub struct FlyApp {
    config: FlyToml,
    image: Image,
    secrets: BTreeMap<String, String>,
    machines: Vec<AppMachine>,
    routes: Routes,
    logs: tempfile::TempDir,
}

impl FlyApp {
    /// An app with no machines yet, from fly.toml's text, deploying `image`.
    pub fn new(fly_toml: &str, image: Image) -> Result<Self> {
        let mut logs = tempfile::Builder::new()
            .prefix("flynet-app-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the app's log directory", e))?;
        if std::env::var("FLYNET_KEEP_LOGS").is_ok_and(|v| v == "1") {
            logs.disable_cleanup(true);
            eprintln!(
                "flynet: the app's logs are kept in {}",
                logs.path().display()
            );
        }
        Ok(FlyApp {
            config: FlyToml::parse(fly_toml)?,
            image,
            secrets: BTreeMap::new(),
            machines: Vec::new(),
            routes: Routes::default(),
            logs,
        })
    }

    /// Sets secrets before the first machine starts (`fly secrets set
    /// --stage`); see [`FlyApp::set_secrets`] for a running app.
    pub fn stage_secret(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.secrets.insert(name.into(), value.into());
    }

    /// fly.toml as read.
    pub fn config(&self) -> &FlyToml {
        &self.config
    }

    /// The machines, in the order they were made.
    pub fn machines(&self) -> &[AppMachine] {
        &self.machines
    }

    /// Where the proxy may send traffic.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }

    /// Starts a machine in `region` on the current image (`fly scale count`
    /// or `fly machine clone`), with `own_env` on top of the app's env, and
    /// waits for its check. It gets traffic once the check passes.
    pub async fn launch(
        &mut self,
        net: &FlyNet,
        region: &str,
        own_env: Vec<(String, String)>,
    ) -> Result<&AppMachine> {
        let image = self.image.clone();
        self.launch_image(net, region, own_env, image).await
    }

    /// [`FlyApp::launch`] on another image than the app's (a machine left
    /// on an older build, say).
    pub async fn launch_image(
        &mut self,
        net: &FlyNet,
        region: &str,
        own_env: Vec<(String, String)>,
        image: Image,
    ) -> Result<&AppMachine> {
        let machine = net.machine(&self.config.app, region)?;
        let mut app = AppMachine::new(machine, image, own_env, self.logs.path());
        app.start(&self.config, &self.secret_list())?;
        let healthy = app.wait_healthy(&self.config).await;
        self.machines.push(app);
        healthy?;
        let last = self.machines.len() - 1;
        self.route(last);
        Ok(&self.machines[last])
    }

    /// `fly deploy` of `image` with fly.toml's strategy.
    pub async fn deploy(&mut self, net: &FlyNet, image: Image) -> Result<DeployReport> {
        let strategy = self.config.deploy.strategy;
        self.deploy_with(net, image, strategy).await
    }

    /// `fly deploy --strategy <strategy>` of `image`.
    pub async fn deploy_with(
        &mut self,
        net: &FlyNet,
        image: Image,
        strategy: Strategy,
    ) -> Result<DeployReport> {
        self.image = image;
        match strategy {
            Strategy::Rolling => self.rolling().await,
            Strategy::Bluegreen => self.bluegreen(net).await,
        }
    }

    /// `fly secrets set`: the secret, then every machine restarted with it
    /// as a deploy of the current image does.
    pub async fn set_secrets(
        &mut self,
        net: &FlyNet,
        secrets: &[(&str, &str)],
    ) -> Result<DeployReport> {
        for (name, value) in secrets {
            self.secrets.insert((*name).to_owned(), (*value).to_owned());
        }
        let image = self.image.clone();
        self.deploy(net, image).await
    }

    /// `fly secrets unset`: the secrets removed, then every machine
    /// restarted without them.
    pub async fn unset_secrets(&mut self, net: &FlyNet, names: &[&str]) -> Result<DeployReport> {
        for name in names {
            self.secrets.remove(*name);
        }
        let image = self.image.clone();
        self.deploy(net, image).await
    }

    /// `fly ssh console -C "<program> <args>"` on machine `index`: the
    /// image's program with `args` and the machine's env, beside its app.
    pub async fn ssh_console(&self, index: usize, args: &[&str]) -> Result<std::process::Output> {
        let machine = self
            .machines
            .get(index)
            .ok_or_else(|| TestkitError::Topology(format!("no machine {index}")))?;
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        machine
            .console(&self.config, &self.secret_list(), &args)
            .await
    }

    /// Stops machine `index` as Fly does and destroys it: its records go,
    /// its address never answers again.
    pub async fn destroy(&mut self, index: usize) -> Result<Stopped> {
        if index >= self.machines.len() {
            return Err(TestkitError::Topology(format!("no machine {index}")));
        }
        let mut machine = self.machines.remove(index);
        self.routes.remove(machine.http_addr(&self.config));
        machine.stop(&self.config).await
    }

    /// Kills machine `index`'s app (SIGKILL) while DNS still lists the
    /// machine: its address refuses connections. [`FlyApp::restart`]
    /// starts it again.
    pub async fn crash(&mut self, index: usize) -> Result<()> {
        let machine = self.machine_mut(index)?;
        machine.kill().await;
        let addr = self.machines[index].http_addr(&self.config);
        self.routes.remove(addr);
        Ok(())
    }

    /// Starts machine `index` again on its image (after a crash) and waits
    /// for its check.
    pub async fn restart(&mut self, index: usize) -> Result<Duration> {
        let secrets = self.secret_list();
        let config = self.config.clone();
        let machine = self.machine_mut(index)?;
        machine.start(&config, &secrets)?;
        let healthy = machine.wait_healthy(&config).await?;
        self.route(index);
        Ok(healthy)
    }

    /// Ends machine `index` as a destroy looks from outside while DNS still
    /// lists it: its app killed, its address silent (packets dropped). It
    /// stays in [`FlyApp::machines`] until [`FlyApp::destroy`].
    pub async fn vanish(&mut self, index: usize) -> Result<()> {
        self.crash(index).await?;
        self.machines[index].machine.vanish()
    }

    fn machine_mut(&mut self, index: usize) -> Result<&mut AppMachine> {
        self.machines
            .get_mut(index)
            .ok_or_else(|| TestkitError::Topology(format!("no machine {index}")))
    }

    async fn rolling(&mut self) -> Result<DeployReport> {
        let started = Instant::now();
        let secrets = self.secret_list();
        let mut report = Vec::new();
        for i in 0..self.machines.len() {
            let addr = self.machines[i].http_addr(&self.config);
            self.routes.remove(addr);
            let stopped = self.machines[i].stop(&self.config).await?;
            self.machines[i].image = self.image.clone();
            self.machines[i].start(&self.config, &secrets)?;
            let healthy_after = self.machines[i].wait_healthy(&self.config).await?;
            self.route(i);
            let id = self.machines[i].machine.id().to_owned();
            report.push(MachineDeploy {
                old_id: id.clone(),
                new_id: id,
                old_addr: addr,
                new_addr: addr,
                stopped,
                healthy_after,
                routed_at: started.elapsed(),
            });
        }
        Ok(DeployReport {
            strategy: Strategy::Rolling,
            machines: report,
            took: started.elapsed(),
        })
    }

    async fn bluegreen(&mut self, net: &FlyNet) -> Result<DeployReport> {
        let started = Instant::now();
        let secrets = self.secret_list();
        let blue = std::mem::take(&mut self.machines);
        let mut green = Vec::with_capacity(blue.len());
        for old in &blue {
            let machine = net.machine(&self.config.app, old.machine.region())?;
            let mut new = AppMachine::new(
                machine,
                self.image.clone(),
                old.own_env.clone(),
                self.logs.path(),
            );
            new.start(&self.config, &secrets)?;
            green.push(new);
        }
        let mut healthy = Vec::with_capacity(green.len());
        for new in &mut green {
            match new.wait_healthy(&self.config).await {
                Ok(after) => healthy.push(after),
                Err(e) => {
                    // A failed deploy keeps the old machines serving.
                    self.machines = blue;
                    return Err(e);
                }
            }
        }
        self.machines = green;
        for i in 0..self.machines.len() {
            self.route(i);
        }
        let routed_at = started.elapsed();
        let mut report = Vec::with_capacity(blue.len());
        for (mut old, (new, healthy_after)) in
            blue.into_iter().zip(self.machines.iter().zip(healthy))
        {
            let old_addr = old.http_addr(&self.config);
            self.routes.remove(old_addr);
            let stopped = old.stop(&self.config).await?;
            report.push(MachineDeploy {
                old_id: old.machine.id().to_owned(),
                new_id: new.machine.id().to_owned(),
                old_addr,
                new_addr: new.http_addr(&self.config),
                stopped,
                healthy_after,
                routed_at,
            });
            // Dropped: destroyed.
        }
        Ok(DeployReport {
            strategy: Strategy::Bluegreen,
            machines: report,
            took: started.elapsed(),
        })
    }

    fn route(&self, index: usize) {
        let machine = &self.machines[index];
        self.routes
            .add(machine.machine.region(), machine.http_addr(&self.config));
    }

    /// Where the machines' logs are (`<machine id>.log`); removed with the
    /// app unless `FLYNET_KEEP_LOGS=1`.
    pub fn logs(&self) -> &std::path::Path {
        self.logs.path()
    }

    fn secret_list(&self) -> Vec<(String, String)> {
        self.secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
