//! One saved run: the command, when, on what machine, and its JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::machine::Machine;
use super::suite::{self, SuiteEntry};

/// A run as saved in `docs/bench/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub(crate) name: String,
    pub(crate) command: String,
    /// UTC, RFC 3339, when the run started.
    pub(crate) started: String,
    pub(crate) seconds: u64,
    pub(crate) machine: Machine,
    /// What the command printed with `--json`.
    pub(crate) report: serde_json::Value,
}

/// Runs `entry` as a child process of this very binary (a fresh runtime
/// and allocator, as a user's run would have) and keeps its JSON.
pub(crate) async fn run(
    entry: &SuiteEntry,
    charts: &Path,
    machine: &Machine,
) -> Result<RunRecord, Box<dyn std::error::Error>> {
    let started = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(entry.full_args(charts))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut out = Vec::new();
    tokio::select! {
        read = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out) => { read?; }
        _ = crate::signal::stop_requested() => {
            // The run stops its apps and PostgreSQL on SIGINT; killed, it
            // would leave them running.
            if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait()).await;
            return Err("interrupted: the run was stopped".into());
        }
    }
    let status = child.wait().await?;
    // A drill whose promise broke exits non-zero but still prints its
    // report: keep it, so the page shows what broke.
    let report: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
        format!(
            "`{}` exited with {status} and printed no JSON report ({e})",
            entry.command(charts)
        )
    })?;
    Ok(RunRecord {
        name: entry.name.to_owned(),
        command: entry.command(charts),
        started: started.format("%Y-%m-%d %H:%M UTC").to_string(),
        seconds: clock.elapsed().as_secs(),
        machine: machine.clone(),
        report,
    })
}

/// The saved runs of the suite, in its order; runs not saved are left out.
pub(crate) fn load_all(dir: &Path) -> Result<Vec<RunRecord>, Box<dyn std::error::Error>> {
    let mut records = Vec::new();
    for entry in suite::SUITE {
        let path = dir.join(format!("{}.json", entry.name));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display()).into()),
        };
        let record: RunRecord = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a saved run: {e}", path.display()))?;
        records.push(record);
    }
    Ok(records)
}
