//! What an app process holds: resident memory and open descriptors, read
//! from /proc.

use serde::Serialize;

/// One look at one app process.
#[derive(Debug, Clone, Serialize)]
pub(super) struct AppUsage {
    pub(super) region: String,
    /// Whether the process was there to look at: a process that exited
    /// reads as 0 MiB and no descriptors, which must not pass for flat.
    pub(super) running: bool,
    /// Resident memory, MiB (one decimal); 0 when the process is gone.
    pub(super) rss_mib: f64,
    pub(super) fds: usize,
}

impl AppUsage {
    pub(super) fn of(region: &str, pid: Option<u32>) -> Self {
        let process = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(|pid| procfs::process::Process::new(pid).ok());
        let status = process.as_ref().and_then(|p| p.status().ok());
        // A zombie has a status but no memory.
        let rss_kib = status.as_ref().and_then(|s| s.vmrss);
        AppUsage {
            region: region.to_owned(),
            running: rss_kib.is_some(),
            rss_mib: (rss_kib.unwrap_or(0) as f64 / 1024.0 * 10.0).round() / 10.0,
            fds: process
                .as_ref()
                .and_then(|p| p.fd_count().ok())
                .unwrap_or(0),
        }
    }
}
