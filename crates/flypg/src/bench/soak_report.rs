//! What `flypg bench soak` found, and the bounds it holds the run to.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::app_usage::AppUsage;

/// How long the primary keeps the record of a write whose request id the
/// library generated (its default: four RPC timeouts, at least 10
/// minutes), and how often it sweeps (its default).
const GENERATED_RETENTION_S: f64 = 600.0;
const SWEEP_INTERVAL_S: f64 = 60.0;
/// Descriptors or backends a process may open past the warm-up's most
/// (a pool replacing a connection holds two for a moment).
const FLAT_SLACK: u64 = 8;

/// The clients' measures of one minute (index 0 is the first).
pub(super) struct Minute {
    pub(super) index: usize,
    /// Latencies in microseconds.
    pub(super) writes: Histogram<u64>,
    pub(super) reads: Histogram<u64>,
    /// Reads of a write made elsewhere, with its token, that did not show it.
    pub(super) stale_reads: u64,
    /// Requests of the clients that idle 60 to 125 s between requests.
    pub(super) idle_requests: u64,
    pub(super) errors: u64,
}

impl Minute {
    pub(super) fn new(index: usize) -> Self {
        let histogram = || Histogram::<u64>::new(3).expect("3 significant figures");
        Minute {
            index,
            writes: histogram(),
            reads: histogram(),
            stale_reads: 0,
            idle_requests: 0,
            errors: 0,
        }
    }

    pub(super) fn write(&mut self, us: u64) {
        let _ = self.writes.record(us);
    }

    pub(super) fn read(&mut self, us: u64) {
        let _ = self.reads.record(us);
    }
}

/// One sample of every app process and of the primary.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Sample {
    pub(super) at_s: u64,
    pub(super) apps: Vec<AppUsage>,
    /// Rows in `fly_postgres_requests` (exactly-once records); `None`
    /// when the primary did not answer the sample's query.
    pub(super) record_rows: Option<i64>,
    /// Client connections to the primary.
    pub(super) backends: Option<i64>,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>5} s:", self.at_s)?;
        for app in &self.apps {
            write!(f, " {} {:.1} MiB {} fds;", app.region, app.rss_mib, app.fds)?;
        }
        let or_dash = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        write!(
            f,
            " {} records, {} backends",
            or_dash(self.record_rows),
            or_dash(self.backends)
        )
    }
}

#[derive(Debug, Serialize)]
struct MinuteSummary {
    minute: usize,
    writes: u64,
    write_p50_ms: f64,
    write_p99_ms: f64,
    reads: u64,
    read_p50_ms: f64,
    read_p99_ms: f64,
    stale_reads: u64,
    errors: u64,
}

/// One bound: what it limits, the limit, what was measured.
#[derive(Debug, Serialize)]
pub(super) struct Bound {
    what: String,
    limit: f64,
    measured: f64,
    held: bool,
}

impl Bound {
    fn at_most(what: impl Into<String>, limit: f64, measured: f64) -> Self {
        Bound {
            what: what.into(),
            limit,
            measured,
            held: measured <= limit,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct SoakReport {
    minutes: u64,
    warmup_minutes: u64,
    regions: Vec<String>,
    rtt_ms: u64,
    writes_per_s_per_region: u32,
    reads_per_s_per_region: u32,
    writes: u64,
    reads: u64,
    stale_reads: u64,
    /// Requests sent after 60 to 125 s of idling (on a pool that drops
    /// connections idle for 90 s; the server closes them at 120 s).
    idle_requests: u64,
    errors: u64,
    errors_by_kind: BTreeMap<String, u64>,
    per_minute: Vec<MinuteSummary>,
    pub(super) samples: Vec<Sample>,
    bounds: Vec<Bound>,
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

impl SoakReport {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        minutes: u64,
        warmup_minutes: u64,
        regions: Vec<String>,
        rtt_ms: u64,
        (writes_per_s, reads_per_s): (u32, u32),
        (max_rss_growth_pct, max_p99_ratio): (f64, f64),
        measured: Vec<Minute>,
        errors_by_kind: BTreeMap<String, u64>,
        samples: Vec<Sample>,
    ) -> Self {
        let per_minute: Vec<MinuteSummary> = measured
            .iter()
            // The part-minute after the last sample holds the clients'
            // last in-flight requests only.
            .filter(|m| (m.index as u64) < minutes)
            .map(|m| MinuteSummary {
                minute: m.index + 1,
                writes: m.writes.len(),
                write_p50_ms: ms(m.writes.value_at_quantile(0.5)),
                write_p99_ms: ms(m.writes.value_at_quantile(0.99)),
                reads: m.reads.len(),
                read_p50_ms: ms(m.reads.value_at_quantile(0.5)),
                read_p99_ms: ms(m.reads.value_at_quantile(0.99)),
                stale_reads: m.stale_reads,
                errors: m.errors,
            })
            .collect();
        let writes = measured.iter().map(|m| m.writes.len()).sum();
        let reads = measured.iter().map(|m| m.reads.len()).sum();
        let stale_reads = measured.iter().map(|m| m.stale_reads).sum();
        let idle_requests = measured.iter().map(|m| m.idle_requests).sum();
        let errors = measured.iter().map(|m| m.errors).sum();

        let mut bounds = vec![
            Bound::at_most("failed requests", 0.0, errors as f64),
            Bound::at_most(
                "reads that did not show a write made elsewhere, with its token",
                0.0,
                stale_reads as f64,
            ),
        ];
        let exited = samples
            .iter()
            .filter(|s| s.apps.iter().any(|a| !a.running))
            .count();
        bounds.push(Bound::at_most(
            "samples that found an app process gone",
            0.0,
            exited as f64,
        ));
        let unanswered = samples.iter().filter(|s| s.record_rows.is_none()).count();
        bounds.push(Bound::at_most(
            "samples the primary did not answer",
            0.0,
            unanswered as f64,
        ));
        let warm = warmup_minutes * 60;
        let split = samples.iter().position(|s| s.at_s >= warm).unwrap_or(0);
        let (during, after) = samples.split_at(split);
        if let (Some(at_warm), Some(end)) = (after.first(), samples.last()) {
            for (i, app) in at_warm.apps.iter().enumerate() {
                let end_rss = end.apps[i].rss_mib;
                let growth = if app.rss_mib > 0.0 {
                    (end_rss - app.rss_mib) / app.rss_mib * 100.0
                } else {
                    0.0
                };
                bounds.push(Bound::at_most(
                    format!(
                        "{} app #{i}: resident memory growth, minute {warmup_minutes} ({:.1} MiB) to the end ({end_rss:.1} MiB), %",
                        app.region, app.rss_mib
                    ),
                    max_rss_growth_pct,
                    (growth * 10.0).round() / 10.0,
                ));
                let most = |part: &[Sample]| part.iter().map(|s| s.apps[i].fds).max().unwrap_or(0);
                let warm_most = most(during).max(app.fds);
                bounds.push(Bound::at_most(
                    format!(
                        "{} app #{i}: open descriptors after the warm-up (warm-up's most {warm_most} + {FLAT_SLACK})",
                        app.region
                    ),
                    (warm_most as u64 + FLAT_SLACK) as f64,
                    most(after) as f64,
                ));
            }
            let warm_backends = during
                .iter()
                .chain(std::iter::once(at_warm))
                .filter_map(|s| s.backends)
                .max()
                .unwrap_or(0);
            bounds.push(Bound::at_most(
                format!(
                    "client connections to the primary after the warm-up (warm-up's most {warm_backends} + {FLAT_SLACK})"
                ),
                (warm_backends as u64 + FLAT_SLACK) as f64,
                after.iter().filter_map(|s| s.backends).max().unwrap_or(0) as f64,
            ));
        }
        // Forwarded writes leave a record each, kept for the generated
        // ids' retention and swept once a minute: a run shorter than that
        // cannot tell a sweeper that works from one that does not.
        let keep_s = GENERATED_RETENTION_S + SWEEP_INTERVAL_S;
        if (minutes * 60) as f64 > keep_s + SWEEP_INTERVAL_S {
            let forwarded_per_s =
                f64::from(writes_per_s) * (regions.len().saturating_sub(1)) as f64;
            bounds.push(Bound::at_most(
                format!(
                    "exactly-once records ({forwarded_per_s} forwarded writes/s x ({GENERATED_RETENTION_S} s retention + {SWEEP_INTERVAL_S} s sweep interval) + 10 %)"
                ),
                (forwarded_per_s * keep_s * 1.1).ceil(),
                samples.iter().filter_map(|s| s.record_rows).max().unwrap_or(0) as f64,
            ));
        }
        // The first minute after the warm-up against the last: the cold
        // start (new connections, an empty record table) is no baseline.
        let baseline = per_minute.iter().find(|m| m.minute as u64 > warmup_minutes);
        if let (Some(first), Some(last)) = (baseline, per_minute.last())
            && last.minute > first.minute
            && first.write_p99_ms > 0.0
        {
            bounds.push(Bound::at_most(
                format!(
                    "write p99, minute {} ({:.1} ms) over minute {} ({:.1} ms)",
                    last.minute, last.write_p99_ms, first.minute, first.write_p99_ms
                ),
                max_p99_ratio,
                (last.write_p99_ms / first.write_p99_ms * 100.0).round() / 100.0,
            ));
        }
        SoakReport {
            minutes,
            warmup_minutes,
            regions,
            rtt_ms,
            writes_per_s_per_region: writes_per_s,
            reads_per_s_per_region: reads_per_s,
            writes,
            reads,
            stale_reads,
            idle_requests,
            errors,
            errors_by_kind,
            per_minute,
            samples,
            bounds,
        }
    }

    /// The bounds the run broke, each said in a line.
    pub(super) fn broken_bounds(&self) -> Vec<String> {
        self.bounds
            .iter()
            .filter(|b| !b.held)
            .map(|b| format!("{}: {} (at most {})", b.what, b.measured, b.limit))
            .collect()
    }

    /// The write p99 of every minute, for the chart.
    pub(super) fn write_p99_by_minute(&self) -> Vec<(usize, f64)> {
        self.per_minute
            .iter()
            .map(|m| (m.minute, m.write_p99_ms))
            .collect()
    }

    pub(super) fn print(&self) {
        println!(
            "soak: {} minutes in {}, {} writes and {} reads, {} failed, {} stale, {} requests after idling",
            self.minutes,
            self.regions.join(", "),
            self.writes,
            self.reads,
            self.errors,
            self.stale_reads,
            self.idle_requests
        );
        for (kind, n) in &self.errors_by_kind {
            println!("  failed: {kind}: {n}");
        }
        println!("  minute  writes  p50 ms  p99 ms   reads  p50 ms  p99 ms");
        for m in &self.per_minute {
            println!(
                "  {:>6} {:>7} {:>7.2} {:>7.2} {:>7} {:>7.2} {:>7.2}",
                m.minute,
                m.writes,
                m.write_p50_ms,
                m.write_p99_ms,
                m.reads,
                m.read_p50_ms,
                m.read_p99_ms
            );
        }
        for b in &self.bounds {
            println!(
                "  [{}] {}: {} (at most {})",
                if b.held { "held" } else { "BROKEN" },
                b.what,
                b.measured,
                b.limit
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: u64, rss_mib: f64, fds: usize, record_rows: i64) -> Sample {
        Sample {
            at_s,
            apps: vec![AppUsage {
                region: "lax".into(),
                running: rss_mib > 0.0,
                rss_mib,
                fds,
            }],
            record_rows: Some(record_rows),
            backends: Some(5),
        }
    }

    fn minute(index: usize, write_us: u64) -> Minute {
        let mut m = Minute::new(index);
        for _ in 0..100 {
            m.write(write_us);
        }
        m
    }

    fn report(samples: Vec<Sample>, minutes: Vec<Minute>) -> SoakReport {
        report_of(3, samples, minutes)
    }

    fn report_of(run_minutes: u64, samples: Vec<Sample>, minutes: Vec<Minute>) -> SoakReport {
        SoakReport::new(
            run_minutes,
            1,
            vec!["syd".into(), "lax".into()],
            60,
            (10, 20),
            (5.0, 1.2),
            minutes,
            BTreeMap::new(),
            samples,
        )
    }

    #[test]
    fn a_flat_run_holds_every_bound() {
        let r = report(
            vec![
                sample(0, 17.0, 20, 0),
                sample(60, 21.0, 30, 600),
                sample(180, 21.5, 31, 1800),
            ],
            vec![minute(0, 60_000), minute(1, 61_000), minute(2, 65_000)],
        );
        assert_eq!(r.broken_bounds(), Vec::<String>::new());
    }

    #[test]
    fn growth_after_the_warm_up_breaks_its_bounds() {
        // Memory grows 10 % after minute 1 and descriptors by 20: growth
        // during the warm-up (17 -> 21 MiB) does not count.
        let r = report(
            vec![
                sample(0, 17.0, 20, 0),
                sample(60, 21.0, 30, 600),
                sample(180, 23.1, 50, 1800),
            ],
            // Minute 1 (cold) is slow; minute 3 over minute 2 is 1.33.
            vec![minute(0, 200_000), minute(1, 60_000), minute(2, 80_000)],
        );
        let broken = r.broken_bounds().join("\n");
        assert!(broken.contains("resident memory growth"), "{broken}");
        assert!(broken.contains("open descriptors"), "{broken}");
        assert!(broken.contains("write p99"), "{broken}");
        assert!(!broken.contains("records"), "{broken}");
    }

    #[test]
    fn records_past_retention_times_rate_break_their_bound() {
        // 10 forwarded writes a second kept 660 s at most: 7,260 + 10 %.
        let samples = || {
            vec![
                sample(0, 20.0, 20, 0),
                sample(60, 20.0, 20, 7_000),
                sample(900, 20.0, 20, 8_000),
            ]
        };
        let long = report_of(15, samples(), vec![minute(0, 60_000)]);
        let broken = long.broken_bounds().join("\n");
        assert!(broken.contains("exactly-once records"), "{broken}");
        // A run shorter than retention + two sweeps cannot tell.
        let short = report(samples(), vec![minute(0, 60_000)]);
        assert!(!format!("{:?}", short.bounds).contains("exactly-once records"));
    }

    #[test]
    fn an_app_that_exits_or_a_primary_that_does_not_answer_breaks_the_run() {
        let mut unanswered = sample(120, 21.0, 30, 0);
        unanswered.record_rows = None;
        let r = report(
            vec![
                sample(0, 17.0, 20, 0),
                sample(60, 21.0, 30, 600),
                unanswered,
                sample(180, 0.0, 0, 1800),
            ],
            vec![minute(0, 60_000)],
        );
        let broken = r.broken_bounds().join("\n");
        assert!(broken.contains("app process gone"), "{broken}");
        assert!(broken.contains("did not answer"), "{broken}");
    }
}
