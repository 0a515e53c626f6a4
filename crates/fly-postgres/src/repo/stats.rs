//! The counters of one repo: [`RepoStats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Repo;

/// Counters of one repo, for tests and `flypg status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepoStats {
    /// Writes this instance ran itself (in the primary region).
    pub local_writes: u64,
    /// Writes this instance forwarded to the primary region.
    pub forwarded_writes: u64,
    /// Extra attempts of forwarded writes (after a timeout or a failure).
    pub retries: u64,
    /// Forwarded writes this instance served for others.
    pub served_writes: u64,
    /// Writes this instance ran on the primary over PostgreSQL
    /// ([`WriteMode::Direct`](crate::WriteMode::Direct) or the direct fallback).
    pub direct_writes: u64,
    /// Exactly-once records this instance's sweeps deleted.
    pub swept_records: u64,
    /// The most rows one sweep statement deleted (at most 100).
    pub largest_sweep_batch: u64,
    /// The longest one sweep statement took.
    pub longest_sweep_statement: Duration,
    /// Sweeps skipped because another instance was sweeping the database.
    pub sweeps_skipped: u64,
    /// Queries of the primary's position this instance ran on its database
    /// (strong and session reads, and other regions' strong reads), one at
    /// a time however many requests wait for one.
    pub position_queries: u64,
    /// RPCs this instance sent to the primary region for its position, one
    /// at a time however many strong reads wait for one.
    pub position_calls: u64,
    /// Reads of the local database's timeline and its history, one at a
    /// time however many requests wait for a newer timeline.
    pub timeline_reads: u64,
}

/// The write counters the pipeline keeps.
#[derive(Debug, Default)]
pub(super) struct WriteCounters {
    pub(super) local: AtomicU64,
    pub(super) forwarded: AtomicU64,
    pub(super) retries: AtomicU64,
}

impl Repo {
    /// The repo's counters.
    pub fn stats(&self) -> RepoStats {
        RepoStats {
            local_writes: self.inner.counters.local.load(Ordering::Relaxed),
            forwarded_writes: self.inner.counters.forwarded.load(Ordering::Relaxed),
            retries: self.inner.counters.retries.load(Ordering::Relaxed),
            served_writes: self.inner.server.served.load(Ordering::Relaxed),
            direct_writes: self
                .inner
                .direct
                .as_ref()
                .map_or(0, |d| d.served.load(Ordering::Relaxed)),
            swept_records: self.inner.sweeps.deleted.load(Ordering::Relaxed),
            largest_sweep_batch: self.inner.sweeps.largest_batch.load(Ordering::Relaxed),
            longest_sweep_statement: Duration::from_micros(
                self.inner
                    .sweeps
                    .longest_statement_us
                    .load(Ordering::Relaxed),
            ),
            sweeps_skipped: self.inner.sweeps.skipped.load(Ordering::Relaxed),
            position_queries: self.inner.server.positions.get().map_or(0, |p| p.queries()),
            position_calls: self.inner.remote_positions.asked(),
            timeline_reads: self.inner.timelines.reads(),
        }
    }
}
