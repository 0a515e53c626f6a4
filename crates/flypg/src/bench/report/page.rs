//! `docs/performance.md` from the saved runs. Nothing on the page is typed
//! by hand: each figure is a value of a run's JSON, printed as it is kept.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::RunRecord;
use super::figure::{number, verdict};
use super::suite;

/// The charts a run's command writes, by run name.
const CHARTS: &[(&str, &[(&str, &str)])] = &[
    ("repo", &[("write-latency-cdf.svg", "Write latency CDF")]),
    (
        "tracker",
        &[
            ("notification-delay-cdf.svg", "Notification delay CDF"),
            (
                "region-notification-delay-cdf.svg",
                "Notification delay, one region of 1 and 4 instances",
            ),
        ],
    ),
];

/// The whole page.
pub(crate) fn render(records: &[RunRecord], chart_dir: &Path, data_dir: &Path) -> String {
    let mut page = String::new();
    let _ = writeln!(page, "# Performance\n");
    let _ = writeln!(
        page,
        "Every figure on this page is a value from the JSON that one command \
         printed; the files are in `{}`, one per command, with the date and \
         the machine. This page is written by `flypg bench report` (add \
         `--run` to run every command again first, about 10 minutes). Other \
         documents quote figures only from here.\n",
        data_dir.display()
    );
    let _ = writeln!(
        page,
        "The latency proxy of the test kit simulates the distance between \
         regions in user space; every report gives its lateness. On a \
         2-core machine the harness competes with what it measures, so \
         ratios taken in the same run say more than absolute figures.\n"
    );
    for record in records {
        section(&mut page, record, chart_dir);
    }
    page
}

fn section(page: &mut String, record: &RunRecord, chart_dir: &Path) {
    let entry = suite::find(&record.name);
    let title = entry.map_or(record.name.as_str(), |e| e.title);
    let _ = writeln!(page, "## {title}\n");
    if let Some(entry) = entry {
        let _ = writeln!(page, "{}\n", entry.about);
    }
    let _ = writeln!(page, "```sh\n{}\n```\n", record.command);
    let _ = writeln!(
        page,
        "Run {} ({} s) on {}.\n",
        record.started,
        record.seconds,
        record.machine.describe()
    );
    match record.name.as_str() {
        "chaos" | "fly-chaos" => return chaos_table(page, &record.report),
        "soak" => {
            super::load_tables::soak(page, &record.report);
            if chart_dir.join("soak.svg").exists() {
                let _ = writeln!(
                    page,
                    "![Memory, descriptors, records and write p99 over the soak](soak.svg)\n"
                );
            }
            return;
        }
        "sessions" => return super::load_tables::sessions(page, &record.report),
        _ => {}
    }
    let headline = entry.map_or(&[][..], |e| e.headline);
    if !headline.is_empty() {
        let _ = writeln!(page, "| figure | value |\n| --- | --- |");
        for (key, label) in headline {
            if let Some(value) = record.report.get(*key) {
                let _ = writeln!(page, "| {label} (`{key}`) | {} |", number(value));
            }
        }
        page.push('\n');
    }
    all_keys(page, &record.report, headline);
    for (name, charts) in CHARTS {
        if *name != record.name {
            continue;
        }
        for (file, alt) in *charts {
            if chart_dir.join(file).exists() {
                let _ = writeln!(page, "![{alt}]({file})\n");
            }
        }
    }
}

/// Every scalar of the report; arrays of objects (a run per caller count)
/// as a table with a column each.
fn all_keys(page: &mut String, report: &Value, headline: &[(&str, &str)]) {
    let Some(object) = report.as_object() else {
        let _ = writeln!(page, "`{report}`\n");
        return;
    };
    let columns: Vec<(&String, &Vec<Value>)> = object
        .iter()
        .filter_map(|(k, v)| v.as_array().map(|a| (k, a)))
        .filter(|(_, a)| !a.is_empty() && a.iter().all(Value::is_object))
        .collect();
    // Keys that a table below shows for each column are not repeated.
    let in_columns = |key: &str| {
        columns
            .iter()
            .any(|(_, rows)| rows.iter().any(|r| r.get(key).is_some()))
    };
    let mut scalars = Vec::new();
    for (key, value) in object {
        if headline.iter().any(|(h, _)| h == key) || in_columns(key) {
            continue;
        }
        leaves(key, value, &mut scalars);
    }
    if !scalars.is_empty() {
        let _ = writeln!(page, "| key | value |\n| --- | --- |");
        for (key, value) in scalars {
            let _ = writeln!(page, "| `{key}` | {} |", number(value));
        }
        page.push('\n');
    }
    for (name, rows) in columns {
        let first_key = rows[0]
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        let _ = write!(page, "| `{name}`: `{first_key}` |");
        for row in rows {
            let _ = write!(page, " {} |", number(&row[&first_key]));
        }
        let _ = write!(page, "\n| --- |");
        for _ in rows {
            page.push_str(" --- |");
        }
        page.push('\n');
        let keys: Vec<&String> = rows[0]
            .as_object()
            .map(|o| o.keys().filter(|k| **k != first_key).collect())
            .unwrap_or_default();
        for key in keys {
            let _ = write!(page, "| `{key}` |");
            for row in rows {
                let _ = write!(page, " {} |", number(&row[key.as_str()]));
            }
            page.push('\n');
        }
        page.push('\n');
    }
}

/// The scalars under `key`: itself, or an object's, named `key.inner`
/// (arrays are tables of their own, or not shown).
fn leaves<'a>(key: &str, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(inner) => {
            for (k, v) in inner {
                leaves(&format!("{key}.{k}"), v, out);
            }
        }
        Value::Array(_) => {}
        scalar => out.push((key.to_owned(), scalar)),
    }
}

/// The drills' verdicts, a row per scenario, then what each did.
fn chaos_table(page: &mut String, report: &Value) {
    let distance = if report["rtt_ms"].is_null() {
        "no latency added between the regions".to_owned()
    } else {
        format!("{} ms RTT between the regions", number(&report["rtt_ms"]))
    };
    let _ = writeln!(
        page,
        "{} s per scenario, {} clients, {distance}. Promises: {}.\n",
        number(&report["seconds"]),
        number(&report["clients"]),
        verdict(&report["promises_held"])
    );
    let Some(scenarios) = report["scenarios"].as_object() else {
        return;
    };
    let _ = writeln!(
        page,
        "| scenario | writes | ok | lost | dup | failed+c | maybe(c) | stale | errors | p50 ms | p99 ms | max stall ms | promises |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (name, s) in scenarios {
        let errors: u64 = s["errors"]
            .as_object()
            .map(|e| e.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let _ = writeln!(
            page,
            "| {name} | {} | {} | {} | {} | {} | {}({}) | {} | {errors} | {} | {} | {} | {} |",
            number(&s["writes"]),
            number(&s["ok"]),
            number(&s["lost"]),
            number(&s["duplicated"]),
            number(&s["failed_but_committed"]),
            number(&s["maybe_committed"]),
            number(&s["maybe_committed_in_fact"]),
            number(&s["stale_reads"]),
            number(&s["p50_ms"]),
            number(&s["p99_ms"]),
            number(&s["max_stall_ms"]),
            verdict(&s["promises_held"]),
        );
    }
    page.push('\n');
    const COMMON: &[&str] = &[
        "writes",
        "ok",
        "lost",
        "duplicated",
        "failed_but_committed",
        "maybe_committed",
        "maybe_committed_in_fact",
        "stale_reads",
        "p50_ms",
        "p99_ms",
        "max_stall_ms",
        "promises_held",
        "faults",
        "faults_not_done",
        "errors",
    ];
    for (name, s) in scenarios {
        let _ = writeln!(page, "- `{name}`:");
        if let Some(faults) = s["faults"].as_array() {
            for fault in faults {
                let _ = writeln!(page, "  - fault: {}", fault.as_str().unwrap_or_default());
            }
        }
        if let Some(errors) = s["errors"].as_object().filter(|e| !e.is_empty()) {
            let list: Vec<String> = errors
                .iter()
                .map(|(k, v)| format!("`{k}` {}", number(v)))
                .collect();
            let _ = writeln!(page, "  - errors: {}", list.join(", "));
        }
        if let Some(object) = s.as_object() {
            let extra: Vec<String> = object
                .iter()
                .filter(|(k, _)| !COMMON.contains(&k.as_str()))
                .map(|(k, v)| format!("`{k}` {}", number(v)))
                .collect();
            if !extra.is_empty() {
                let _ = writeln!(page, "  - {}", extra.join(", "));
            }
        }
    }
    page.push('\n');
}
