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
fn bench_repo_reports_its_keys_and_no_stale_reads() {
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
    ]);
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
