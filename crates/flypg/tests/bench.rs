//! The benchmarks run (tiny sizes) and print the keys the README quotes.

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_keys(report: &serde_json::Value, keys: &[&str]) {
    for key in keys {
        assert!(report[key].is_number(), "missing {key} in {report}");
    }
}

#[test]
fn bench_tracker_reports_its_keys_and_no_idle_queries() {
    let report = bench(&["tracker", "--writes", "30", "--baseline-writes", "3"]);
    assert_keys(
        &report,
        &[
            "notify_p50_ms",
            "notify_p99_ms",
            "bare_poll_p50_ms",
            "bare_poll_p99_ms",
            "notify_p99_vs_bare_poll_p99",
            "baseline_50ms_poll_p50_ms",
            "replica_queries_per_s_while_waiting",
            "replica_queries_while_idle",
            "max_wait_ms",
            "writes",
        ],
    );
    assert_eq!(report["replica_queries_while_idle"], 0);
    assert_eq!(report["writes"], 30);
}

#[test]
fn bench_tracker_instances_shares_one_poller_across_a_region() {
    let report = bench(&[
        "tracker",
        "--writes",
        "100",
        "--baseline-writes",
        "3",
        "--instances",
        "3",
    ]);
    assert_keys(
        &report,
        &[
            "replica_queries_per_s_1_instance",
            "replica_queries_per_s_n_instances",
            "replica_queries_ratio_n_vs_1",
            "notify_p50_ms_n_instances",
            "notify_p99_ms_n_instances",
        ],
    );
    assert_eq!(report["instances"], 3);
    // Three pollers would make about three times the queries of one.
    let ratio = report["replica_queries_ratio_n_vs_1"].as_f64().unwrap();
    assert!(ratio < 2.0, "3 instances sent {ratio}x the queries of one");
}

#[test]
fn bench_rpc_reports_its_keys() {
    let report = bench(&[
        "rpc",
        "--calls",
        "50",
        "--seconds",
        "1",
        "--rtt-ms",
        "10",
        "--rtt-calls",
        "3",
    ]);
    assert_keys(
        &report,
        &[
            "noop_p50_ms",
            "noop_p99_ms",
            "calls_per_s_64",
            "rtt60_p50_ms",
            "rtt60_overhead_vs_proxy_ms",
        ],
    );
    assert!(report["rtt60_p50_ms"].as_f64().unwrap() >= 10.0, "{report}");
}

#[test]
fn bench_flood_compares_the_writes_under_plain_and_strong_floods() {
    let report = bench(&[
        "flood",
        "--readers",
        "20",
        "--seconds",
        "1",
        "--rtt-ms",
        "5",
    ]);
    assert_keys(
        &report,
        &[
            "plain_write_p99_ms",
            "strong_write_p99_ms",
            "strong_vs_plain_write_p99",
            "plain_reads_per_s",
            "strong_reads_per_s",
            "position_calls_per_s",
            "position_queries_per_s",
        ],
    );
    assert_eq!(report["failed_reads"], 0, "{report}");
    assert!(report["plain_writes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["strong_writes"].as_u64().unwrap() > 0, "{report}");
    // Strong reads asked the primary region, and far fewer times than
    // they were served: the questions are shared.
    let calls = report["position_calls_per_s"].as_f64().unwrap();
    let reads = report["strong_reads_per_s"].as_f64().unwrap();
    assert!(calls > 0.0, "{report}");
    assert!(calls < reads / 2.0, "{report}");
}

/// A fresh directory for a bench's charts.
fn chart_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flypg-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn assert_chart(path: &std::path::Path, labels: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(svg.starts_with("<svg"), "{path:?} is not an SVG");
    for label in labels {
        assert!(svg.contains(label), "{path:?} lacks the series {label}");
    }
}

#[test]
fn bench_repo_reports_its_keys_and_no_stale_reads() {
    let charts = chart_dir("repo");
    let report = bench(&[
        "repo",
        "--writes",
        "3",
        "--seconds",
        "1",
        "--concurrency",
        "4",
        "--rtt-ms",
        "10",
        "--svg",
        charts.to_str().unwrap(),
    ]);
    assert_chart(
        &charts.join("write-latency-cdf.svg"),
        &["with the wait", "no_wait", "directly to syd"],
    );
    let _ = std::fs::remove_dir_all(&charts);
    assert_keys(
        &report,
        &[
            "write1_rpc_p50_ms",
            "write1_primary_p50_ms",
            "write1_wait_p50_ms",
            "rpc_link_late_p50_us",
            "replication_link_late_p99_us",
        ],
    );
    assert!(
        report["write1_primary_p50_ms"].as_f64().unwrap()
            < report["write1_rpc_p50_ms"].as_f64().unwrap(),
        "the transaction is part of the RPC: {report}"
    );
    assert_keys(
        &report,
        &[
            "write1_p50_ms",
            "write1_floor_ms",
            "write1_overhead_ms",
            "write3_p50_ms",
            "write3_overhead_ms",
            "direct3_p50_ms",
            "local_read_p50_ms",
            "stale_reads",
            "fwd_writes_per_s_64",
            "direct_writes_per_s_64",
            "rtt_ms",
        ],
    );
    assert_eq!(report["stale_reads"], 0, "{report}");
    // RTT 10 ms: 5 ms out, and the replication link defaults to 5 ms.
    assert_eq!(report["write1_floor_ms"], 10.0, "{report}");
    assert!(
        report["write1_p50_ms"].as_f64().unwrap() >= 10.0,
        "faster than physics: {report}"
    );
}

#[test]
fn bench_repo_no_proxy_reports_rates_and_cpu_per_write() {
    let report = bench(&["repo", "--no-proxy", "--seconds", "1"]);
    let keys = [
        "local_writes_per_s",
        "fwd_writes_per_s",
        "fwd_vs_local_ratio",
        "cpu_us_per_bare_write",
        "cpu_us_per_local_write",
        "cpu_us_per_fwd_write",
    ];
    assert_keys(&report, &keys);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| r["callers"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [64, 256]
    );
    for run in runs {
        assert_keys(run, &keys);
        for key in [
            "local_writes_per_s",
            "fwd_writes_per_s",
            "cpu_us_per_bare_write",
        ] {
            assert!(run[key].as_f64().unwrap() > 0.0, "{key} in {run}");
        }
        // A write costs PostgreSQL some CPU, which the meter must see.
        assert!(
            run["cpu_us_per_fwd_write_postgres"].as_f64().unwrap() > 0.0,
            "{run}"
        );
    }
}

#[test]
fn bench_tracker_under_load_reports_the_load_and_draws_its_chart() {
    let charts = chart_dir("tracker");
    let report = bench(&[
        "tracker",
        "--load",
        "--writes",
        "10",
        "--waiters",
        "50",
        "--baseline-writes",
        "2",
        "--svg",
        charts.to_str().unwrap(),
    ]);
    assert_eq!(report["load"], true);
    assert_eq!(report["waiters"], 50);
    assert!(report["load_tps"].as_f64().unwrap() > 0.0, "{report}");
    assert_keys(&report, &["notify_p50_ms", "notify_p99_ms"]);
    assert_chart(
        &charts.join("notification-delay-cdf.svg"),
        &["Tracker", "50 ms polling"],
    );
    let _ = std::fs::remove_dir_all(&charts);
}

#[test]
fn bad_bench_arguments_are_refused_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args(["bench", "rpc", "--calls", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
    let out = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .args(["bench", "tracker", "--writes", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}
