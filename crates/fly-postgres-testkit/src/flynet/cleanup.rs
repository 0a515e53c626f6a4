//! Every namespace this process made is removed: on drop (also while a
//! panic unwinds), on SIGINT before the process exits, and, for a process
//! that was killed outright, by the next world that starts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, Once, PoisonError};

/// The prefix of every namespace name the testkit makes; the process id
/// follows, so leftovers of a dead process can be told apart.
pub(crate) const PREFIX: &str = "flypg-";

static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

pub(crate) fn register(name: &str) {
    install_sigint_handler();
    live().insert(name.to_owned());
}

pub(crate) fn unregister(name: &str) {
    live().remove(name);
}

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// On SIGINT the test process exits without unwinding: remove what it
/// made first, then exit as SIGINT would (130).
fn install_sigint_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("flynet-sigint".into())
            .spawn(|| {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        for name in std::mem::take(&mut *live()) {
                            remove(&name);
                        }
                        std::process::exit(130);
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no SIGINT cleanup for network namespaces");
        }
    });
}

/// Removes namespaces left by testkit processes that no longer run (one
/// killed with SIGKILL cannot clean up after itself).
pub(crate) fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if !running(pid) {
            remove(&name);
        }
    }
}

/// Whether process `pid` runs (a zombie, killed but not yet reaped, does
/// not).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Removes a namespace and its `/etc/netns` files; quiet if already gone.
pub(crate) fn remove(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let _ = std::fs::remove_dir_all(etc_dir(name));
}

/// Where `ip netns exec` finds a namespace's own `/etc` files.
pub(crate) fn etc_dir(name: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(name)
}
