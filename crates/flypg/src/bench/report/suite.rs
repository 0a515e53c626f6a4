//! The runs behind the performance page, in the page's order.

use std::path::Path;

/// One benchmark or drill the page shows.
pub(crate) struct SuiteEntry {
    /// The JSON file's name and `--only`'s.
    pub(crate) name: &'static str,
    /// The page's section title.
    pub(crate) title: &'static str,
    /// What it measures, for the page.
    pub(crate) about: &'static str,
    /// The subcommand and its options, after `flypg`; `--json` is added.
    pub(crate) args: &'static [&'static str],
    /// Whether it writes charts (takes `--svg DIR`).
    pub(crate) charts: bool,
    /// The key figures, first in the section, each with what it says.
    pub(crate) headline: &'static [(&'static str, &'static str)],
    /// Runs for an hour: `--run` runs it only when `--only` names it.
    pub(crate) long: bool,
}

impl SuiteEntry {
    /// The arguments as run, `--json` included.
    pub(crate) fn full_args(&self, charts: &Path) -> Vec<String> {
        let mut args: Vec<String> = self.args.iter().map(|a| (*a).to_owned()).collect();
        if self.charts {
            args.push("--svg".into());
            args.push(charts.display().to_string());
        }
        args.push("--json".into());
        args
    }

    /// The command line a reader can run again (the benchmarks need
    /// flypg's `bench` feature; the demo and the drills do not).
    pub(crate) fn command(&self, charts: &Path) -> String {
        let features = if self.args.first() == Some(&"bench") {
            " --features bench"
        } else {
            ""
        };
        format!(
            "cargo run --release -p flypg{features} -- {}",
            self.full_args(charts).join(" ")
        )
    }
}

pub(crate) fn find(name: &str) -> Option<&'static SuiteEntry> {
    SUITE.iter().find(|e| e.name == name)
}

pub(crate) fn names() -> Vec<&'static str> {
    SUITE.iter().map(|e| e.name).collect()
}

pub(crate) const SUITE: &[SuiteEntry] = &[
    SuiteEntry {
        name: "repo",
        title: "A write across an ocean",
        about: "Two regions 60 ms apart (a latency proxy on the RPC link; the \
                replication link delayed by half of it, as the WAL crosses the \
                same ocean). A forwarded write from lax with its wait for lax's \
                replica, against its physical floor (one way to the primary plus \
                the replication link) and against what this machine charged in \
                the same run for the bare steps (a round trip through an \
                identical proxy, the statement in a bare transaction, one \
                replay poll).",
        args: &["bench", "repo", "--writes", "100"],
        charts: true,
        long: false,
        headline: &[
            (
                "write1_p50_ms",
                "one-statement write from lax, wait included, p50 (ms)",
            ),
            ("write1_p99_ms", "the same, p99 (ms)"),
            (
                "write3_p50_ms",
                "three-statement mutation from lax, p50 (ms)",
            ),
            (
                "direct3_p50_ms",
                "the same three statements sent directly to the far primary, p50 (ms)",
            ),
            (
                "write1_floor_ms",
                "physical floor: one way to the primary + the replication link (ms)",
            ),
            ("write1_overhead_ms", "p50 over the physical floor (ms)"),
            (
                "write1_machine_floor_ms",
                "what this machine charged for the bare steps, same run (ms)",
            ),
            (
                "write1_overhead_vs_machine_ms",
                "p50 over that: the library's own cost (ms)",
            ),
            ("local_read_p50_ms", "local read in lax, p50 (ms)"),
        ],
    },
    SuiteEntry {
        name: "repo-cost",
        title: "The library's own cost",
        about: "Loopback, no delays: writes per second and CPU per write \
                (user + system time of this process and of every PostgreSQL \
                process, read from /proc) for a bare insert, a write in the \
                primary region and a forwarded write, at 64 and 256 callers.",
        args: &["bench", "repo", "--no-proxy"],
        charts: false,
        long: false,
        headline: &[],
    },
    SuiteEntry {
        name: "rpc",
        title: "The RPC alone",
        about: "A no-op procedure from lax to syd: round trips on loopback, \
                calls per second with 64 callers, and round trips through a \
                60 ms proxy against a bare TCP ping-pong through an identical \
                proxy, taken in turn.",
        args: &["bench", "rpc"],
        charts: false,
        long: false,
        headline: &[],
    },
    SuiteEntry {
        name: "tracker",
        title: "Replication waits",
        about: "2,000 writes, each awaited on lax's replica (replication link \
                delayed 2 ms): the delay from the replica's replay to the \
                waiter's wake-up, the replica's queries while anyone waits and \
                while nobody does, the Elixir library's 50 ms polling in the \
                same run, and one region of 4 app instances sharing one poller \
                against one instance.",
        args: &["bench", "tracker", "--instances", "4"],
        charts: true,
        long: false,
        headline: &[
            ("notify_p50_ms", "notification delay p50 (ms)"),
            ("notify_p99_ms", "notification delay p99 (ms)"),
            (
                "baseline_50ms_poll_p50_ms",
                "the Elixir library's 50 ms polling, p50 (ms)",
            ),
            (
                "replica_queries_per_s_while_waiting",
                "replica queries per second while anyone waits",
            ),
            (
                "replica_queries_while_idle",
                "replica queries in 1 s while nobody waits",
            ),
        ],
    },
    SuiteEntry {
        name: "tracker-load",
        title: "Replication waits under load",
        about: "The same with pgbench writing on the primary (4 clients) and \
                1,000 waiters per write, against a bare replay poll timed in \
                the same run under the same load.",
        args: &["bench", "tracker", "--load", "--instances", "4"],
        charts: false,
        long: false,
        headline: &[],
    },
    SuiteEntry {
        name: "sweeps",
        title: "Writes while records are swept",
        about: "16 writers forward writes from lax (no added latency) for 40 s \
                with a 2 s record retention and a sweep every second, as the \
                exactly-once table sees under a steady load. The writers' p99 \
                while a sweep runs, against outside sweeps, says what a sweep \
                costs them; the table's size stays bounded by rate x retention.",
        args: &["bench", "repo", "--soak", "40"],
        charts: false,
        long: false,
        headline: &[
            (
                "write_p99_ms_outside_sweeps",
                "write p99 outside sweeps (ms)",
            ),
            ("write_p99_ms_during_sweeps", "write p99 during sweeps (ms)"),
            ("sweep_p99_ratio", "during over outside"),
        ],
    },
    SuiteEntry {
        name: "soak",
        title: "An hour of traffic",
        about: "The demo's three regions (syd holds the primary; lax 60 ms \
                and fra 120 ms away) as real todo app processes, with 16 \
                writers and 8 readers per region paced to 40 writes and 80 \
                reads a second each; every read fetches a write made in \
                another region, with that write's token. The library's \
                sweeps run at their production settings (records of \
                generated request ids kept 10 minutes, a sweep a minute). \
                Every 10 s: each app's resident memory and open descriptors, \
                the exactly-once records, the primary's client connections. \
                The bounds compare the end with the end of a 10-minute \
                warm-up.",
        args: &["bench", "soak", "--minutes", "60"],
        charts: true,
        long: true,
        headline: &[],
    },
    SuiteEntry {
        name: "sessions",
        title: "Ten thousand sessions",
        about: "Browser-like sessions over the same three regions, each with \
                its own cookie jar (the `fly_lsn` cookie), 64 at a time: each \
                writes in one region, reads what it wrote in the next in \
                `session` mode, writes there, and so on. 30,000 hops by 100 \
                sessions twice (the first run warms the servers up), then \
                30,000 hops by 10,000 sessions: a backwards \
                read is one that did not show the session's own write, and \
                the apps' memory after each run tells whether the servers \
                keep anything per session.",
        args: &["bench", "sessions"],
        charts: false,
        long: false,
        headline: &[],
    },
    SuiteEntry {
        name: "flood",
        title: "A flood of strong reads",
        about: "200 HTTP clients read back to back from lax's public port \
                (lax and syd 20 ms apart) while lax forwards writes one after \
                the other; in turn without a consistency header and with \
                `fly-consistency: strong` (allowed by the layer), twice each. \
                Strong reads waiting at the same moment share one question to \
                the primary region, so the flood should cost the writes no \
                more than the same flood without the header.",
        args: &["bench", "flood"],
        charts: false,
        long: false,
        headline: &[
            (
                "plain_write_p99_ms",
                "forwarded write p99 during the plain flood (ms)",
            ),
            (
                "strong_write_p99_ms",
                "forwarded write p99 during the strong flood (ms)",
            ),
            ("strong_vs_plain_write_p99", "strong over plain, same run"),
            (
                "position_calls_per_s",
                "position questions lax sent to syd per second",
            ),
        ],
    },
    SuiteEntry {
        name: "chaos",
        title: "Fault drills",
        about: "The todo app as real processes in syd and lax (20 ms apart), a \
                real primary and streaming replica. Clients write rows to an \
                append-only ledger through lax with an Idempotency-Key and read \
                each back at once; after each scenario the ledger on the \
                primary is compared with what every client was told. lost: \
                told OK but absent; dup: present twice; failed+c: told a \
                definite failure but committed; maybe(c): told \"outcome \
                unknown\" (of which committed); stale: told OK and replicated \
                but the read right after missed it.",
        args: &["chaos"],
        charts: false,
        long: false,
        headline: &[],
    },
    SuiteEntry {
        name: "fly-demo",
        title: "The demo on an emulated Fly network",
        about: "`flypg demo --fly` (root): the template app deployed as the \
                deploy guide says on Linux network namespaces, one per machine, \
                IPv6 only between them, a DNS server answering as Fly's at \
                `fdaa::3` (discovery by DNS only), Postgres machines with port \
                5433 to their own server and 5432 to the leader, Fly's proxy \
                emulated in front of each region. No latency is added between \
                the regions. Writes in lax read back at once; `fly deploy` \
                rolling then bluegreen of all four machines with four writers \
                running (their ledger checked on the primary); a scale-out \
                into fra.",
        args: &["demo", "--fly"],
        charts: false,
        long: false,
        headline: &[],
    },
    SuiteEntry {
        name: "fly-chaos",
        title: "Fault drills on an emulated Fly network",
        about: "The same world as the Fly demo (root). `fly-deploy`: a rolling \
                deploy over a machine left on the old build (version skew), \
                then a bluegreen deploy to new machines at new addresses found \
                through DNS only. `fly-dns-churn`: a killed machine still \
                listed, a gone machine still listed with its address silent \
                (`gone_but_listed`: sequential writes before and during), a new \
                machine listed before it listens, and the RPC secret rotated \
                with `fly secrets set`. Columns as in the drills above.",
        args: &["chaos", "--scenarios", "fly-deploy,fly-dns-churn"],
        charts: false,
        long: false,
        headline: &[],
    },
];
