//! One PostgreSQL server process: start, stop, kill -9, connect.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::binaries::PgBinaries;
use crate::error::{Result, TestkitError};
use crate::os_user::RunAs;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server running from a data directory of the testkit.
///
/// The server listens on `127.0.0.1` on a fixed port (kept across restarts) and
/// trusts local connections as user `postgres`. Dropping it shuts the server
/// down at once and reaps the process.
#[derive(Debug)]
pub struct PgServer {
    name: String,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    bins: PgBinaries,
    run_as: RunAs,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    pub(crate) fn new(
        name: &str,
        data_dir: PathBuf,
        socket_dir: PathBuf,
        log_path: PathBuf,
        port: u16,
        bins: PgBinaries,
        run_as: RunAs,
    ) -> Self {
        PgServer {
            name: name.to_owned(),
            data_dir,
            socket_dir,
            log_path,
            port,
            bins,
            run_as,
            child: Mutex::new(None),
        }
    }

    /// The server's role in its cluster (`primary` or `replica`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for the `postgres` database as user `postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A connection URL for another database on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// sqlx connect options for this server.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database("postgres")
    }

    /// Opens one connection.
    pub async fn connect(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect_with(&self.connect_options()).await?)
    }

    /// Pauses WAL replay on this standby (`pg_wal_replay_pause()`).
    pub async fn pause_replay(&self) -> Result<()> {
        let mut conn = self.connect().await?;
        sqlx::query("select pg_wal_replay_pause()")
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Resumes WAL replay on this standby.
    pub async fn resume_replay(&self) -> Result<()> {
        let mut conn = self.connect().await?;
        sqlx::query("select pg_wal_replay_resume()")
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file (its stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Whether the postmaster process is alive.
    pub fn is_running(&self) -> bool {
        let mut guard = self.lock_child();
        match guard.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *guard = None;
                false
            }
            None => false,
        }
    }

    /// Starts the server and waits until it accepts connections. A server that
    /// was just killed may still hold shared memory through its dying
    /// children, so a start that fails on that is retried for a few seconds.
    pub async fn start(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.start_once(deadline).await {
                Err(TestkitError::ServerExited { tail, .. })
                    if tail.contains("shared memory block") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn start_once(&self, deadline: Instant) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| TestkitError::io(format!("opening {}", self.log_path.display()), e))?;
        self.run_as.give(&self.log_path)?;
        let log_err = log
            .try_clone()
            .map_err(|e| TestkitError::io("cloning log handle", e))?;
        let mut cmd = Command::new(self.bins.program("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.socket_dir)
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .current_dir(&self.socket_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group: a Ctrl-C in the terminal reaches the
            // program that owns the server, which then shuts it down in order.
            .process_group(0);
        self.run_as.apply(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting postgres `{}`", self.name), e))?;
        *self.lock_child() = Some(child);
        self.wait_ready(deadline).await
    }

    async fn wait_ready(&self, deadline: Instant) -> Result<()> {
        let options = self.connect_options();
        loop {
            if let Some(status) = self.exited() {
                return Err(TestkitError::ServerExited {
                    name: self.name.clone(),
                    status,
                    log: self.log_path.clone(),
                    tail: self.log_tail(),
                });
            }
            if let Ok(Ok(conn)) =
                tokio::time::timeout(Duration::from_secs(1), PgConnection::connect_with(&options))
                    .await
            {
                let _ = conn.close().await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestkitError::Timeout {
                    what: format!("postgres `{}` to accept connections", self.name),
                    after: START_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut guard = self.lock_child();
        match guard.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                *guard = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Stops the server with a fast shutdown (SIGINT) and waits for it.
    pub async fn stop(&self) -> Result<()> {
        self.signal_and_reap(Signal::SIGINT, STOP_TIMEOUT).await
    }

    /// Kills the postmaster with SIGKILL, as a crash would. Its children notice
    /// the postmaster's death and exit on their own; [`PgServer::start`] then
    /// runs crash recovery.
    pub async fn kill(&self) -> Result<()> {
        self.signal_and_reap(Signal::SIGKILL, STOP_TIMEOUT).await
    }

    /// Stops (fast) and starts again.
    pub async fn restart(&self) -> Result<()> {
        self.stop().await?;
        self.start().await
    }

    async fn signal_and_reap(&self, signal: Signal, timeout: Duration) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Err(TestkitError::NotRunning(self.name.clone()));
        };
        let _ = kill(Pid::from_raw(pid as i32), signal);
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                return Err(TestkitError::Timeout {
                    what: format!("postgres `{}` to exit after {signal}", self.name),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// The last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut guard = self.lock_child();
        let Some(mut child) = guard.take() else {
            return;
        };
        // Immediate shutdown: the postmaster stops its children and reaps
        // them itself, so nothing is left behind (not even zombies).
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    // The postmaster leads its own process group: take its
                    // backends down with it.
                    let _ =
                        nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}
