//! CPU time (user + system) of everything a benchmark run involves: this
//! process (callers, app nodes, their runtimes) and every PostgreSQL
//! process of the cluster (backends, walsenders, walreceiver, startup,
//! writers), read from /proc.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use procfs::process::{Process, all_processes};

/// The processes to account for: the PostgreSQL servers' postmasters (and
/// their children, found afresh at each sample), plus this process.
pub(crate) struct CpuMeter {
    postmasters: Vec<i32>,
}

/// CPU time per process at one moment.
pub(crate) struct CpuSample {
    own: Duration,
    postgres: HashMap<i32, Duration>,
}

impl CpuMeter {
    pub(crate) fn new(postmasters: impl IntoIterator<Item = u32>) -> Self {
        CpuMeter {
            postmasters: postmasters
                .into_iter()
                .filter_map(|p| i32::try_from(p).ok())
                .collect(),
        }
    }

    pub(crate) fn sample(&self) -> CpuSample {
        let mut postgres = HashMap::new();
        let children = all_processes().into_iter().flatten().flatten().filter(|p| {
            p.stat()
                .is_ok_and(|stat| self.postmasters.contains(&stat.ppid))
        });
        let postmasters = self
            .postmasters
            .iter()
            .filter_map(|pid| Process::new(*pid).ok());
        for process in postmasters.chain(children) {
            // Nanoseconds on the CPU: finer than stat's 10 ms ticks. Each
            // PostgreSQL process is single-threaded, so this is all of it.
            if let Ok(stat) = process.schedstat() {
                postgres.insert(process.pid, Duration::from_nanos(stat.sum_exec_runtime));
            }
        }
        CpuSample {
            own: own_cpu(),
            postgres,
        }
    }
}

impl CpuSample {
    /// CPU used between `earlier` and this sample: (this process, PostgreSQL).
    /// Processes that started in between count from zero; processes that
    /// exited in between are missed (the runs keep their pools open).
    pub(crate) fn since(&self, earlier: &CpuSample) -> (Duration, Duration) {
        let postgres = self
            .postgres
            .iter()
            .map(|(pid, now)| {
                now.saturating_sub(earlier.postgres.get(pid).copied().unwrap_or_default())
            })
            .sum();
        (self.own.saturating_sub(earlier.own), postgres)
    }
}

/// User + system time of every thread of this process.
fn own_cpu() -> Duration {
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |usage| {
        let micros = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec().max(0) as u64)
                + Duration::from_micros(t.tv_usec().max(0) as u64)
        };
        micros(usage.user_time()) + micros(usage.system_time())
    })
}
