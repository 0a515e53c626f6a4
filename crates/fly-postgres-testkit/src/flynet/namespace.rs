//! One Linux network namespace, made and removed with `ip netns`, and
//! entered by threads that create sockets inside it.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

use super::cleanup;
use crate::error::{Result, TestkitError};

/// A network namespace this process made; removed on drop.
#[derive(Debug)]
pub(crate) struct Namespace {
    name: String,
}

impl Namespace {
    /// Makes `name`, with its loopback up.
    pub(crate) fn create(name: String) -> Result<Self> {
        ip(&["netns", "add", &name])?;
        // Registered at once, so a failure below still removes it.
        cleanup::register(&name);
        let ns = Namespace { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args...`.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Writes a file `ip netns exec` shows a process in this namespace as
    /// `/etc/<file>` (its own resolv.conf and hosts, as a Fly machine has).
    pub(crate) fn etc_file(&self, file: &str, content: &str) -> Result<()> {
        let dir = cleanup::etc_dir(&self.name);
        std::fs::create_dir_all(&dir).map_err(|e| io(format!("creating {dir:?}"), e))?;
        let path = dir.join(file);
        std::fs::write(&path, content).map_err(|e| io(format!("writing {path:?}"), e))
    }

    /// Runs `work` on a thread inside this namespace: the sockets it
    /// creates (and the threads it starts) live there. `what` names the
    /// work in the error if the thread panics.
    pub(crate) fn inside<T: Send>(
        &self,
        what: &str,
        work: impl FnOnce() -> Result<T> + Send,
    ) -> Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter()?;
                    work()
                })
                .join()
                .unwrap_or_else(|_| Err(io(what.to_owned(), std::io::ErrorKind::Other.into())))
        })
    }

    /// Moves the calling thread into this namespace.
    fn enter(&self) -> Result<()> {
        let path = netns_path(&self.name);
        let file = File::open(&path).map_err(|e| io(format!("opening {path:?}"), e))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| TestkitError::Io {
            context: format!("entering network namespace {}", self.name),
            source: std::io::Error::from(e),
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        cleanup::remove(&self.name);
        cleanup::unregister(&self.name);
    }
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Runs `ip args...`, failing with what it printed.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io("running `ip` (iproute2)".into(), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(TestkitError::Command {
        program: format!("ip {}", args.join(" ")),
        status: output.status,
        output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

fn io(context: String, source: std::io::Error) -> TestkitError {
    TestkitError::Io { context, source }
}
