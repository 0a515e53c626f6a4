//! One source for every figure: docs/performance.md is what `flypg bench
//! report` writes from the saved runs, and README.md and the guides quote
//! no measured figure that is not on it.

use std::process::Command;

const PAGE: &str = include_str!("../../../docs/performance.md");

/// The documents whose figures must come from the page.
fn documents() -> Vec<(&'static str, &'static str)> {
    vec![
        ("README.md", include_str!("../../../README.md")),
        (
            "guide/existing_app.md",
            include_str!("../../fly-postgres/src/guide/existing_app.md"),
        ),
        (
            "guide/deploy_on_fly.md",
            include_str!("../../fly-postgres/src/guide/deploy_on_fly.md"),
        ),
        (
            "guide/consistency.md",
            include_str!("../../fly-postgres/src/guide/consistency.md"),
        ),
        (
            "guide/reliability.md",
            include_str!("../../fly-postgres/src/guide/reliability.md"),
        ),
        (
            "guide/topologies.md",
            include_str!("../../fly-postgres/src/guide/topologies.md"),
        ),
        (
            "guide/security.md",
            include_str!("../../fly-postgres/src/guide/security.md"),
        ),
        (
            "guide/operations.md",
            include_str!("../../fly-postgres/src/guide/operations.md"),
        ),
        (
            "guide/testing.md",
            include_str!("../../fly-postgres/src/guide/testing.md"),
        ),
        (
            "guide/from_elixir.md",
            include_str!("../../fly-postgres/src/guide/from_elixir.md"),
        ),
    ]
}

/// Measured figures: a number with a decimal point followed by a unit
/// (`62.839 ms`, `0.89x`, `1.5 %`), outside code blocks. Settings are
/// whole numbers (`5 s`, `15 s`) and are not figures.
fn figures(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit()
                || (i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'))
            {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b',')
            {
                i += 1;
            }
            let number = line[start..i].trim_end_matches(['.', ',']);
            if !number.contains('.') || number.matches('.').count() > 1 {
                continue;
            }
            let rest = line[start + number.len()..].trim_start();
            let unit = [
                "ms", "us", "µs", "s ", "s)", "s,", "s.", "x", "%", "MiB", "GiB",
            ]
            .iter()
            .any(|u| rest.starts_with(u) || (*u == "s " && rest == "s"));
            if unit {
                found.push(number.replace(',', ""));
            }
        }
    }
    found
}

#[test]
fn every_figure_in_the_readme_and_the_guides_is_on_the_performance_page() {
    let mut missing = Vec::new();
    for (name, text) in documents() {
        for figure in figures(text) {
            if !PAGE.contains(&figure) {
                missing.push(format!("{name}: {figure}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "figures not on docs/performance.md (quote the page, or regenerate it \
         with `flypg bench report --run`): {missing:?}"
    );
}

#[test]
fn the_figure_finder_finds_figures_and_skips_settings() {
    let text = "a write took 62.839 ms (0.89x of local, 1.5 % more); the \
                default is 5 s; version 0.1.0 and sqlx 0.9\n```text\n1.25 ms\n```\n";
    assert_eq!(figures(text), ["62.839", "0.89", "1.5"]);
}

#[test]
fn the_page_is_what_bench_report_writes_from_the_saved_runs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = tempfile_path();
    let status = Command::new(env!("CARGO_BIN_EXE_flypg"))
        .current_dir(root)
        .args(["bench", "report", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let written = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        written, PAGE,
        "docs/performance.md was edited by hand or its runs changed: write it \
         with `flypg bench report`"
    );
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flypg-performance-{}.md", std::process::id()))
}
