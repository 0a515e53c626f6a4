//! The machine a run was made on, as the page states it.

use serde::{Deserialize, Serialize};

/// What the page says about the machine: enough to tell two runs' machines
/// apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) memory_gib: u64,
    pub(crate) kernel: String,
    pub(crate) postgres: String,
}

impl Machine {
    /// Read from /proc and the PostgreSQL binaries the testkit would use;
    /// what cannot be read is "unknown".
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
        let postgres = fly_postgres_testkit::PgBinaries::locate()
            .ok()
            .and_then(|b| {
                std::process::Command::new(b.program("postgres"))
                    .arg("--version")
                    .output()
                    .ok()
            })
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib + (1 << 19)) >> 20,
            kernel,
            postgres,
        }
    }

    /// One line for the page.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} cores ({}), {} GiB, Linux {}, {}",
            self.cores, self.cpu, self.memory_gib, self.kernel, self.postgres
        )
    }
}
