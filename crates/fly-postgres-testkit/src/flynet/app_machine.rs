//! One machine of a [`FlyApp`](super::FlyApp): the app's process inside it,
//! started with the env Fly gives a machine, checked as fly.toml says, and
//! stopped as Fly stops one (`kill_signal`, SIGKILL after `kill_timeout`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::fly_toml::{FlyToml, HttpCheck};
use super::machine::FlyMachine;
use crate::error::{Result, TestkitError};

/// What a deploy runs: a program, its arguments, and the env baked into
/// the image (a build's own settings).
#[derive(Debug, Clone)]
pub struct Image {
    /// The tag, seen by the app as `FLY_IMAGE_REF`
    /// (`registry.fly.io/<app>:<tag>`).
    pub tag: String,
    /// The program the machine runs.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Env the image sets.
    pub env: Vec<(String, String)>,
}

impl Image {
    /// An image running `program` with no arguments or env of its own.
    pub fn new(tag: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Image {
            tag: tag.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// With `args`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// With `name=value` in the image's env.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// How a machine's process ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself within `kill_timeout`.
    Exited {
        /// Whether its exit status was success.
        success: bool,
    },
    /// It was still running at `kill_timeout` and got SIGKILL.
    Killed,
    /// It was not running.
    NotRunning,
}

/// A machine of an app and the process it runs.
#[derive(Debug)]
pub struct AppMachine {
    pub(super) machine: FlyMachine,
    pub(super) image: Image,
    /// Env of this machine only (after the app's secrets).
    pub(super) own_env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl AppMachine {
    pub(super) fn new(
        machine: FlyMachine,
        image: Image,
        own_env: Vec<(String, String)>,
        logs: &std::path::Path,
    ) -> Self {
        let log = logs.join(format!("{}.log", machine.id()));
        AppMachine {
            machine,
            image,
            own_env,
            child: None,
            log,
        }
    }

    /// The machine.
    pub fn machine(&self) -> &FlyMachine {
        &self.machine
    }

    /// The image it runs.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Where its app serves HTTP.
    pub fn http_addr(&self, config: &FlyToml) -> SocketAddr {
        SocketAddr::from((self.machine.private_ip(), config.http_port()))
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The file its app's stdout and stderr go to.
    pub fn log(&self) -> &std::path::Path {
        &self.log
    }

    /// The env the machine's processes get: what a Fly machine has,
    /// fly.toml's `[env]`, the image's env, `secrets`, and its own.
    fn env(&self, config: &FlyToml, secrets: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .machine
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.push((
            "FLY_IMAGE_REF".into(),
            format!("registry.fly.io/{}:{}", config.app, self.image.tag),
        ));
        env.push(("PRIMARY_REGION".into(), config.primary_region.clone()));
        env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(self.image.env.iter().cloned());
        env.extend(secrets.iter().cloned());
        env.extend(self.own_env.iter().cloned());
        env
    }

    /// A command inside the machine with its env, the image's program and
    /// `args`.
    fn command(&self, config: &FlyToml, secrets: &[(String, String)], args: &[String]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.machine.namespace()])
            .arg(&self.image.program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env(config, secrets))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs the image's program with `args` beside the app, with the
    /// machine's env: `fly ssh console -C "<program> <args>"`.
    pub(super) async fn console(
        &self,
        config: &FlyToml,
        secrets: &[(String, String)],
        args: &[String],
    ) -> Result<std::process::Output> {
        self.command(config, secrets, args)
            .output()
            .await
            .map_err(|e| {
                TestkitError::io(
                    format!("running {} in the machine", self.image.program.display()),
                    e,
                )
            })
    }

    /// Starts the app inside the machine (see [`AppMachine::env`]), listed
    /// in DNS from now on.
    pub(super) fn start(&mut self, config: &FlyToml, secrets: &[(String, String)]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| TestkitError::io(format!("opening {}", self.log.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating the log file", e))?;
        let child = self
            .command(config, secrets, &self.image.args)
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                TestkitError::io(format!("starting {}", self.image.program.display()), e)
            })?;
        self.child = Some(child);
        self.machine.set_listed(true);
        Ok(())
    }

    /// Waits until the app passes `check` (polled every 100 ms, not every
    /// `interval`, so deploys take seconds), or fails: it exited, or it
    /// did not pass within the grace period and two intervals.
    pub(super) async fn wait_healthy(&mut self, config: &FlyToml) -> Result<Duration> {
        let started = Instant::now();
        let Some(check) = config.check().cloned() else {
            return Ok(Duration::ZERO);
        };
        let limit = check.grace_period + check.interval * 2;
        let target = self.http_addr(config);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.failed(format!("its app exited ({status})")));
            }
            if check_passes(&self.machine, target, &check).await {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(self.failed(format!(
                    "{} {} did not answer 200 within {limit:?}",
                    check.method, check.path
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the app as Fly does: unlisted, `kill_signal`, then SIGKILL
    /// when it has not exited within `kill_timeout`.
    pub(super) async fn stop(&mut self, config: &FlyToml) -> Result<Stopped> {
        self.machine.set_listed(false);
        let Some(mut child) = self.child.take() else {
            return Ok(Stopped::NotRunning);
        };
        let signal = Signal::from_str(&config.kill_signal).map_err(|_| {
            TestkitError::FlyToml(format!("kill_signal {:?} is no signal", config.kill_signal))
        })?;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        match tokio::time::timeout(config.kill_timeout, child.wait()).await {
            Ok(Ok(status)) => Ok(Stopped::Exited {
                success: status.success(),
            }),
            Ok(Err(e)) => Err(TestkitError::io("waiting for the app to exit", e)),
            Err(_) => {
                let _ = child.kill().await;
                Ok(Stopped::Killed)
            }
        }
    }

    /// Kills the app at once (SIGKILL), as a crash: DNS keeps listing
    /// the machine.
    pub(super) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    fn failed(&self, why: String) -> TestkitError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        TestkitError::FailedDeploy {
            machine: self.machine.id().to_owned(),
            why,
            tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        }
    }
}

/// One check, made from inside the machine: 200 within its timeout.
async fn check_passes(machine: &FlyMachine, target: SocketAddr, check: &HttpCheck) -> bool {
    let request = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nuser-agent: Consul Health Check\r\nconnection: close\r\n\r\n",
        check.method,
        check.path,
        machine.private_ip()
    );
    let timeout = check.timeout;
    let exchange = async move {
        let mut stream = tokio::net::TcpStream::connect(target).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    let Ok(answer) = machine.spawn(async move { tokio::time::timeout(timeout, exchange).await })
    else {
        return false;
    };
    matches!(answer.await, Ok(Ok(Some(true))))
}
