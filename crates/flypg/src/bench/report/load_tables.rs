//! The page's tables for the long runs: the soak (its bounds, each minute,
//! and a sample every five minutes) and the sessions (one row per run).

use std::fmt::Write as _;

use serde_json::Value;

use super::figure::{number, verdict};

/// `flypg bench soak`'s report.
pub(super) fn soak(page: &mut String, report: &Value) {
    let _ = writeln!(
        page,
        "{} minutes ({} of warm-up) in {}: {} writes and {} reads, {} failed, {} stale; \
         {} requests after idling 60 to 125 s on a pool that drops connections idle 90 s.\n",
        number(&report["minutes"]),
        number(&report["warmup_minutes"]),
        report["regions"]
            .as_array()
            .map(|r| r.iter().map(number).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        number(&report["writes"]),
        number(&report["reads"]),
        number(&report["errors"]),
        number(&report["stale_reads"]),
        number(&report["idle_requests"]),
    );
    if let Some(errors) = report["errors_by_kind"]
        .as_object()
        .filter(|e| !e.is_empty())
    {
        for (kind, n) in errors {
            let _ = writeln!(page, "- failed: `{kind}` {}", number(n));
        }
        page.push('\n');
    }
    let _ = writeln!(
        page,
        "| bound | at most | measured | |\n| --- | --- | --- | --- |"
    );
    for bound in report["bounds"].as_array().into_iter().flatten() {
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} |",
            number(&bound["what"]),
            number(&bound["limit"]),
            number(&bound["measured"]),
            verdict(&bound["held"])
        );
    }
    page.push('\n');
    let _ = writeln!(
        page,
        "| minute | writes | write p50 ms | write p99 ms | reads | read p50 ms | read p99 ms | stale | failed |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for m in report["per_minute"].as_array().into_iter().flatten() {
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            number(&m["minute"]),
            number(&m["writes"]),
            number(&m["write_p50_ms"]),
            number(&m["write_p99_ms"]),
            number(&m["reads"]),
            number(&m["read_p50_ms"]),
            number(&m["read_p99_ms"]),
            number(&m["stale_reads"]),
            number(&m["errors"]),
        );
    }
    page.push('\n');
    let samples: Vec<&Value> = report["samples"].as_array().into_iter().flatten().collect();
    let Some(first) = samples.first() else {
        return;
    };
    let apps: Vec<String> = first["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| number(&a["region"]))
        .collect();
    let _ = write!(page, "| minute |");
    for app in &apps {
        let _ = write!(page, " {app} MiB | {app} fds |");
    }
    let _ = write!(page, " records | connections |\n| --- |");
    for _ in &apps {
        page.push_str(" --- | --- |");
    }
    page.push_str(" --- | --- |\n");
    // Every five minutes, and the last sample.
    let last = samples.len() - 1;
    for (i, s) in samples.iter().enumerate() {
        let at = s["at_s"].as_u64().unwrap_or(0);
        if at % 300 != 0 && i != last {
            continue;
        }
        let _ = write!(page, "| {} |", at as f64 / 60.0);
        for app in s["apps"].as_array().into_iter().flatten() {
            let _ = write!(
                page,
                " {} | {} |",
                number(&app["rss_mib"]),
                number(&app["fds"])
            );
        }
        let _ = writeln!(
            page,
            " {} | {} |",
            number(&s["record_rows"]),
            number(&s["backends"])
        );
    }
    page.push('\n');
}

/// `flypg bench sessions`' report.
pub(super) fn sessions(page: &mut String, report: &Value) {
    let _ = writeln!(
        page,
        "| sessions | hops | backwards reads | failed | write p50 / p99 ms | read p50 / p99 ms | app memory after (MiB) |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (what, run) in [
        (" (warm-up)", &report["warm_up"]),
        ("", &report["small"]),
        ("", &report["large"]),
    ] {
        let memory: Vec<String> = run["apps_after"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{} {}", number(&a["region"]), number(&a["rss_mib"])))
            .collect();
        let _ = writeln!(
            page,
            "| {}{what} | {} | {} | {} | {} / {} | {} / {} | {} |",
            number(&run["sessions"]),
            number(&run["hops"]),
            number(&run["backwards_reads"]),
            number(&run["failed"]),
            number(&run["write_p50_ms"]),
            number(&run["write_p99_ms"]),
            number(&run["read_p50_ms"]),
            number(&run["read_p99_ms"]),
            memory.join(", "),
        );
    }
    let _ = writeln!(
        page,
        "\nResident memory growth from {} to {} sessions, the largest of any app: \
         {} % (bound {} %).\n",
        number(&report["small"]["sessions"]),
        number(&report["large"]["sessions"]),
        number(&report["rss_growth_pct"]),
        number(&report["max_rss_growth_pct"]),
    );
}
