//! One scenario's figures, the table and the JSON.

use std::collections::BTreeMap;

use serde::Serialize;

/// What one scenario measured. The JSON keys are the ones the README and
/// the issue name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioReport {
    #[serde(skip)]
    pub(crate) scenario: String,
    pub(crate) writes: usize,
    pub(crate) ok: usize,
    /// Of `ok`: committed, but the app said lax had not replayed it yet.
    pub(crate) ok_not_yet_replicated: usize,
    /// Told OK, absent from the primary.
    pub(crate) lost: usize,
    /// Present more than once.
    pub(crate) duplicated: usize,
    /// Told a definite failure, present.
    pub(crate) failed_but_committed: usize,
    /// Told "outcome unknown".
    pub(crate) maybe_committed: usize,
    /// Of `maybe_committed`: in fact committed.
    pub(crate) maybe_committed_in_fact: usize,
    /// Told OK and replicated, and the read right after did not see it.
    pub(crate) stale_reads: usize,
    /// Failed writes and reads, by `write:`/`read:` and the app's code.
    pub(crate) errors: BTreeMap<String, usize>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// The longest single write or read.
    pub(crate) max_stall_ms: f64,
    pub(crate) stalls_within_timeouts: bool,
    /// The faults injected, with when and how long.
    pub(crate) faults: Vec<String>,
    /// Faults that could not be made as described (the scenario fails).
    pub(crate) faults_not_done: Vec<String>,
    /// Scenario-specific figures (recovery time, load).
    #[serde(flatten)]
    pub(crate) extra: BTreeMap<String, serde_json::Value>,
    /// Whether every promise this scenario checks held.
    pub(crate) promises_held: bool,
}

impl ScenarioReport {
    pub(crate) fn new(scenario: &str) -> Self {
        ScenarioReport {
            scenario: scenario.to_owned(),
            writes: 0,
            ok: 0,
            ok_not_yet_replicated: 0,
            lost: 0,
            duplicated: 0,
            failed_but_committed: 0,
            maybe_committed: 0,
            maybe_committed_in_fact: 0,
            stale_reads: 0,
            errors: BTreeMap::new(),
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_stall_ms: 0.0,
            stalls_within_timeouts: true,
            faults: Vec::new(),
            faults_not_done: Vec::new(),
            extra: BTreeMap::new(),
            promises_held: false,
        }
    }

    /// The promises every scenario keeps: nothing lost, nothing twice, no
    /// committed write reported failed, no stale read, no stall past the
    /// timeouts.
    pub(crate) fn core_promises_held(&self) -> bool {
        self.faults_not_done.is_empty()
            && self.lost == 0
            && self.duplicated == 0
            && self.failed_but_committed == 0
            && self.stale_reads == 0
            && self.stalls_within_timeouts
            && self.writes > 0
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Errors of writes only (a read of a database that is failing over
    /// may fail; a write must not).
    pub(crate) fn write_error_count(&self) -> usize {
        self.errors
            .iter()
            .filter(|(kind, _)| kind.starts_with("write:"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The human-readable table.
pub(crate) fn print_table(reports: &[ScenarioReport]) {
    println!();
    println!(
        "{:<13} {:>6} {:>6} {:>5} {:>5} {:>9} {:>11} {:>6} {:>7} {:>8} {:>8} {:>10}  promises",
        "scenario",
        "writes",
        "ok",
        "lost",
        "dup",
        "failed+c",
        "maybe(c)",
        "stale",
        "errors",
        "p50 ms",
        "p99 ms",
        "max stall"
    );
    for r in reports {
        println!(
            "{:<13} {:>6} {:>6} {:>5} {:>5} {:>9} {:>11} {:>6} {:>7} {:>8.1} {:>8.1} {:>10.0}  {}",
            r.scenario,
            r.writes,
            r.ok,
            r.lost,
            r.duplicated,
            r.failed_but_committed,
            format!("{}({})", r.maybe_committed, r.maybe_committed_in_fact),
            r.stale_reads,
            r.error_count(),
            r.p50_ms,
            r.p99_ms,
            r.max_stall_ms,
            if r.promises_held { "held" } else { "BROKEN" }
        );
    }
    println!();
    for r in reports {
        println!("{}:", r.scenario);
        for fault in &r.faults {
            println!("  fault: {fault}");
        }
        if !r.errors.is_empty() {
            let errors: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("  errors: {}", errors.join(", "));
        }
        for (key, value) in &r.extra {
            println!("  {key}: {value}");
        }
    }
    println!(
        "\nfailed+c: told a definite failure but committed; maybe(c): told \"outcome unknown\" (of which committed)."
    );
}
