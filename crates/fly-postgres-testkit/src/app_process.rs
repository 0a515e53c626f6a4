//! An app instance as its own OS process, for drills that kill or restart
//! it: the example todo app (`flypg todo-app`) or any program that prints
//! `... http=ADDR rpc=ADDR ...` as its first line on stdout once it serves.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Result, TestkitError};

/// A running app process; stopped (SIGTERM, then SIGKILL after 5 s) when
/// dropped.
#[derive(Debug)]
pub struct AppProcess {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    // Kept open so a later line on stdout cannot fail with a broken pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    http: SocketAddr,
    rpc: SocketAddr,
    said: String,
}

impl AppProcess {
    /// Starts `program args` with `env` added to this process's environment
    /// (less `FLY_APP_NAME` and `FLY_RPC_PEERS`, which only `env` may set)
    /// and waits (blocking) for its "listening" line.
    pub fn spawn(
        program: impl Into<PathBuf>,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<Self> {
        let mut app = AppProcess {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            child: None,
            _stdout: None,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            rpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            said: String::new(),
        };
        app.launch(&[])?;
        Ok(app)
    }

    fn launch(&mut self, overrides: &[(&str, String)]) -> Result<()> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            // Discovery comes from the drill's own env, never the caller's.
            .env_remove("FLY_APP_NAME")
            .env_remove("FLY_RPC_PEERS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        for (name, value) in overrides {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting {}", self.program.display()), e))?;
        let stdout = child.stdout.take();
        // Owned by self from here on: any early return stops the child.
        self.child = Some(child);
        let mut stdout = BufReader::new(stdout.ok_or_else(|| TestkitError::AppStart {
            said: "no stdout".into(),
        })?);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .map_err(|e| TestkitError::io("reading the app's first line", e))?;
        let field = |prefix: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(prefix))
                .and_then(|v| v.parse::<SocketAddr>().ok())
        };
        match (field("http="), field("rpc=")) {
            (Some(http), Some(rpc)) => {
                self.http = http;
                self.rpc = rpc;
                self.said = line.trim().to_owned();
                self._stdout = Some(stdout);
                Ok(())
            }
            _ => {
                self.kill9();
                Err(TestkitError::AppStart {
                    said: line.trim().to_owned(),
                })
            }
        }
    }

    /// Where its HTTP API listens.
    pub fn http(&self) -> SocketAddr {
        self.http
    }

    /// Where its RPC endpoint listens.
    pub fn rpc(&self) -> SocketAddr {
        self.rpc
    }

    /// Another `name=ADDR` field of its "listening" line (such as
    /// `metrics`), if it printed one.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        let prefix = format!("{name}=");
        self.said
            .split_whitespace()
            .find_map(|f| f.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as a crash would; returns once the process is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self._stdout = None;
    }

    /// SIGTERM, as a deploy sends; waits up to `grace` for the process to
    /// exit by itself (then SIGKILL). Returns its exit status, `None` if it
    /// had to be killed or was not running.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        self._stdout = None;
        let pid = i32::try_from(child.id()).ok()?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Sets (or replaces) a variable of its environment for the next
    /// [`AppProcess::restart`]: a deploy that changes the configuration.
    pub fn set_env(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.env.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.env.push((name.to_owned(), value)),
        }
    }

    /// Removes a variable of its environment for the next restart.
    pub fn remove_env(&mut self, name: &str) {
        self.env.retain(|(n, _)| n != name);
    }

    /// Starts it again with the same environment on the same HTTP and RPC
    /// addresses (peers keep finding it there), after a kill or terminate.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.kill9();
        }
        let pinned = [
            ("HTTP_LISTEN", self.http.to_string()),
            ("FLY_RPC_LISTEN", self.rpc.to_string()),
        ];
        self.launch(&pinned)
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}
