//! One todo app instance, as its own process configured by env.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running `flypg todo-app` process; stopped (SIGTERM, then SIGKILL) when
/// dropped.
pub(crate) struct AppProcess {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) rpc: SocketAddr,
}

pub(crate) type SpawnResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl AppProcess {
    /// Starts the app with `env` and waits for its "listening" line.
    pub(crate) fn spawn(env: &[(&str, String)]) -> SpawnResult<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("todo-app")
            .env_remove("FLY_APP_NAME")
            .env_remove("FLY_RPC_PEERS")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn()?;
        let stdout = child.stdout.take();
        // Owned by the guard from here on: any early return stops the child.
        let mut guard = AppProcess {
            child,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            rpc: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let stdout = stdout.ok_or("the app has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let mut http = None;
        let mut rpc = None;
        for field in line.split_whitespace() {
            if let Some(v) = field.strip_prefix("http=") {
                http = v.parse().ok();
            }
            if let Some(v) = field.strip_prefix("rpc=") {
                rpc = v.parse().ok();
            }
        }
        match (http, rpc) {
            (Some(http), Some(rpc)) => {
                guard.http = http;
                guard.rpc = rpc;
                Ok(guard)
            }
            _ => Err(format!("the todo app did not start (it said {:?})", line.trim()).into()),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
