//! `flypg bench ...`: benchmarks that print numbers (never timed tests).

mod app_usage;
mod charts;
mod cpu_meter;
mod library_cost;
mod load_world;
mod loopback_node;
mod machine_floor;
mod mutations;
mod ping_pong;
mod read_flood;
mod region_instances;
mod replay_wakes;
mod repo;
mod report;
mod rpc;
mod sessions;
mod soak;
mod soak_chart;
mod soak_report;
mod sweep_soak;
mod throughput;
mod tracker;

use clap::Subcommand;

/// Which benchmark to run.
#[derive(Debug, Subcommand)]
pub(crate) enum Bench {
    /// Replication-wait notification delay and replica load of the Tracker.
    Tracker(tracker::TrackerArgs),
    /// Round trips and throughput of fly-rpc calls between two nodes.
    Rpc(rpc::RpcArgs),
    /// Forwarded writes across a simulated ocean vs the naive approach.
    Repo(repo::RepoArgs),
    /// A flood of reads on a replica region's public port, with and
    /// without `fly-consistency: strong`, against its forwarded writes.
    Flood(read_flood::FloodArgs),
    /// Writers and readers in every region for an hour (`--minutes`):
    /// memory, descriptors and exactly-once records sampled as it runs.
    Soak(soak::SoakArgs),
    /// Ten thousand cookie-jar sessions hopping between regions: backwards
    /// reads, latency, and whether server memory grows with sessions.
    Sessions(sessions::SessionsArgs),
    /// Write docs/performance.md from the saved runs' JSON (`--run`: run
    /// every benchmark and drill first).
    Report(report::ReportArgs),
}

pub(crate) async fn run(which: Bench) -> Result<(), Box<dyn std::error::Error>> {
    match which {
        Bench::Tracker(args) => tracker::run(args).await,
        Bench::Rpc(args) => rpc::run(args).await,
        Bench::Repo(args) => repo::run(args).await,
        Bench::Report(args) => report::run(args).await,
        Bench::Flood(args) => read_flood::run(args).await,
        Bench::Soak(args) => soak::run(args).await,
        Bench::Sessions(args) => sessions::run(args).await,
    }
}
