//! What is known of the primary's position over time, and the lag and
//! staleness read from it. Pure bookkeeping: the monitor feeds it what the
//! replica's WAL receiver reports and what the primary answered; the
//! consistency layer asks it what a bounded read must wait for.
//!
//! Two kinds of report, because lag and staleness need opposite bounds:
//!
//! - a *ceiling* `(lsn, at)`: at `at` the primary had no WAL past `lsn`. A
//!   replica that replayed `lsn` is at most `now - at` stale. Sources: the
//!   primary's own messages to the WAL receiver (the end of its WAL when
//!   it sent them), and a position asked of the primary (as of the moment
//!   it was asked).
//! - a *floor* `(lsn, at)`: by `at` the primary had WAL up to `lsn`. A
//!   replica that has not replayed `lsn` lags at least `now - at`.
//!
//! An idle primary sends nothing new, so its replica holds every position
//! known and reads as 0 lag; how long ago the primary was last heard from
//! is reported on its own ([`Figures::heard`]) and is what a bounded read
//! checks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::lsn::Lsn;

/// Ceilings kept: enough for bounds of minutes at the monitor's pace;
/// dropping older ones only makes a longer bound wait for a newer one.
const MAX_CEILINGS: usize = 256;
/// Floors kept beyond the replay position; past that the newest absorbs
/// new ones, which can only make the lag read longer.
const MAX_FLOORS: usize = 4096;

/// At `at` the primary had no WAL past `lsn` (on `timeline`, when known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ceiling {
    pub(crate) lsn: Lsn,
    pub(crate) timeline: Option<u32>,
    pub(crate) at: Instant,
}

/// Reports that contradict each other: the lag is unknown until a report
/// that agrees with the rest arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Anomaly {
    /// The replica replayed past the end of WAL its primary reported.
    ReplicaAhead,
    /// The replica's replay position went backwards (rebuilt, restored).
    ReplayWentBack,
    /// The primary reported less WAL than it had reported before (another
    /// primary, or one restored from a backup).
    PrimaryWentBack,
}

impl Anomaly {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Anomaly::ReplicaAhead => {
                "the replica reports a replay position ahead of its primary's end of WAL"
            }
            Anomaly::ReplayWentBack => "the replica's replay position went backwards",
            Anomaly::PrimaryWentBack => "the primary reported less WAL than it had reported before",
        }
    }
}

/// The lag figures at one moment; `None` where unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Figures {
    /// How long ago the primary first had WAL the replica has not replayed
    /// (zero when it replayed everything the primary is known to have had).
    pub(crate) seconds: Option<Duration>,
    /// WAL the primary is known to have had past the replay position.
    pub(crate) bytes: Option<u64>,
    /// How long ago the newest ceiling was true: the primary last heard.
    pub(crate) heard: Option<Duration>,
}

/// What a bounded read must wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundTarget {
    /// The lowest position that makes the replica fresh enough.
    Wait(Ceiling),
    /// Nothing recent enough is known: the primary must be asked.
    AskPrimary,
    /// The reports contradict each other: never read as fresh.
    Unknown(Anomaly),
}

#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// Strictly increasing in both `at` and `lsn`: an older ceiling with a
    /// higher position is worth nothing next to a newer, lower one.
    ceilings: VecDeque<Ceiling>,
    /// Floors past the replay position, increasing in both.
    floors: VecDeque<(Lsn, Instant)>,
    /// The highest position the primary is known to have had, and since when.
    newest: Option<(Lsn, Instant)>,
    /// The highest end of WAL the primary reported, and by when it had it
    /// (forwarded commits left out: with `synchronous_commit = off` one
    /// may lie past the end of WAL the primary has flushed).
    newest_report: Option<(Lsn, Instant)>,
    replayed: Option<Lsn>,
    /// When the replay position was last read (at the latest).
    replayed_at: Option<Instant>,
    unknown: Option<Anomaly>,
}

impl Evidence {
    /// A report of the primary: nothing past `lsn` at `ceiling_at`, and
    /// `lsn` reached by `floor_at` (at or before `ceiling_at` for the WAL
    /// receiver's, after it for an answer to a question).
    pub(crate) fn primary_report(
        &mut self,
        lsn: Lsn,
        timeline: Option<u32>,
        ceiling_at: Instant,
        floor_at: Instant,
    ) -> Result<(), Anomaly> {
        // Each check compares a position read before `ceiling_at` with
        // the primary's end of WAL at `ceiling_at`, which can only be higher.
        if let Some((newest, by)) = self.newest_report
            && lsn < newest
            && by <= ceiling_at
        {
            return Err(self.contradiction(Anomaly::PrimaryWentBack));
        }
        if let (Some(replayed), Some(read_by)) = (self.replayed, self.replayed_at)
            && replayed > lsn
            && read_by <= ceiling_at
        {
            return Err(self.contradiction(Anomaly::ReplicaAhead));
        }
        if self.newest_report.is_none_or(|(newest, _)| newest < lsn) {
            self.newest_report = Some((lsn, floor_at));
        }
        self.ceiling(Ceiling {
            lsn,
            timeline,
            at: ceiling_at,
        });
        self.floor(lsn, floor_at);
        Ok(())
    }

    /// A primary position known to have been reached by `at` (a forwarded
    /// write's commit), with no claim about what came after.
    pub(crate) fn floor(&mut self, lsn: Lsn, at: Instant) {
        if self.newest.is_none_or(|(newest, _)| newest < lsn) {
            self.newest = Some((lsn, at));
        }
        if self.replayed.is_some_and(|replayed| replayed >= lsn) {
            return;
        }
        let mut lsn = lsn;
        // Floors later than this one and no higher tell nothing more.
        while let Some(&(back, back_at)) = self.floors.back() {
            if back_at < at {
                break;
            }
            lsn = lsn.max(back);
            self.floors.pop_back();
        }
        let full = self.floors.len() >= MAX_FLOORS;
        match self.floors.back_mut() {
            Some((back, _)) if *back >= lsn => {}
            Some((back, _)) if full => *back = lsn,
            _ => self.floors.push_back((lsn, at)),
        }
    }

    fn ceiling(&mut self, new: Ceiling) {
        // Dominated by one at least as new and no higher: nothing to add.
        if self
            .ceilings
            .iter()
            .any(|c| c.at >= new.at && c.lsn <= new.lsn)
        {
            return;
        }
        self.ceilings
            .retain(|c| !(c.at <= new.at && c.lsn >= new.lsn));
        let at = self.ceilings.partition_point(|c| c.at < new.at);
        self.ceilings.insert(at, new);
        if self.ceilings.len() > MAX_CEILINGS {
            self.ceilings.pop_front();
        }
    }

    /// The replica's replay position, read by `at`. `primary_end`: what
    /// its WAL receiver said the primary's end was, read at the same moment.
    pub(crate) fn replayed(
        &mut self,
        lsn: Lsn,
        primary_end: Option<Lsn>,
        at: Instant,
    ) -> Result<(), Anomaly> {
        let before = self.replayed.replace(lsn);
        self.replayed_at = Some(at);
        if before.is_some_and(|before| before > lsn) {
            return Err(self.contradiction(Anomaly::ReplayWentBack));
        }
        if primary_end.is_some_and(|end| end < lsn) {
            return Err(self.contradiction(Anomaly::ReplicaAhead));
        }
        while self.floors.front().is_some_and(|&(floor, _)| floor <= lsn) {
            self.floors.pop_front();
        }
        Ok(())
    }

    /// A report that agrees with the rest ends an anomaly.
    pub(crate) fn settled(&mut self) {
        self.unknown = None;
    }

    /// Forgets everything but the replay position: what was known belongs
    /// to a world the new reports contradict.
    fn contradiction(&mut self, anomaly: Anomaly) -> Anomaly {
        self.ceilings.clear();
        self.floors.clear();
        self.newest = None;
        self.newest_report = None;
        self.unknown = Some(anomaly);
        anomaly
    }

    /// After the replica was unreachable: its next position may be lower
    /// (restored) without anything being wrong.
    pub(crate) fn forget_replay(&mut self) {
        self.replayed = None;
        self.replayed_at = None;
    }

    pub(crate) fn figures(&self, now: Instant) -> Figures {
        let heard = self
            .ceilings
            .back()
            .map(|c| now.saturating_duration_since(c.at));
        if self.unknown.is_some() {
            return Figures {
                heard,
                ..Figures::default()
            };
        }
        let (Some(replayed), Some((newest, _))) = (self.replayed, self.newest) else {
            return Figures {
                heard,
                ..Figures::default()
            };
        };
        let seconds = self
            .floors
            .front()
            .map_or(Duration::ZERO, |&(_, at)| now.saturating_duration_since(at));
        Figures {
            seconds: Some(seconds),
            bytes: Some(newest.as_u64().saturating_sub(replayed.as_u64())),
            heard,
        }
    }

    /// What a read that may be `max` stale at `now` must wait for: the
    /// oldest ceiling no older than `max`.
    pub(crate) fn bound_target(&self, now: Instant, max: Duration) -> BoundTarget {
        if let Some(anomaly) = self.unknown {
            return BoundTarget::Unknown(anomaly);
        }
        // A bound longer than the clock's age admits every ceiling.
        let first = now.checked_sub(max).map_or(0, |not_before| {
            self.ceilings.partition_point(|c| c.at < not_before)
        });
        match self.ceilings.get(first) {
            Some(ceiling) => BoundTarget::Wait(*ceiling),
            None => BoundTarget::AskPrimary,
        }
    }

    /// The newest ceiling, if it is no older than `age`.
    pub(crate) fn newest_ceiling_within(&self, now: Instant, age: Duration) -> bool {
        self.ceilings
            .back()
            .is_some_and(|c| now.saturating_duration_since(c.at) <= age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn lsn(n: u64) -> Lsn {
        Lsn::from(n)
    }

    #[test]
    fn an_idle_primary_reads_as_no_lag_but_ages_its_ceiling() {
        let t0 = Instant::now();
        let mut e = Evidence::default();
        e.primary_report(lsn(100), None, t0, t0).unwrap();
        e.replayed(lsn(100), Some(lsn(100)), t0).unwrap();
        let later = t0 + Duration::from_secs(60);
        let figures = e.figures(later);
        assert_eq!(figures.seconds, Some(Duration::ZERO));
        assert_eq!(figures.bytes, Some(0));
        assert_eq!(figures.heard, Some(Duration::from_secs(60)));
        // A 2 s bound cannot lean on a report a minute old.
        assert_eq!(e.bound_target(later, MS(2000)), BoundTarget::AskPrimary);
        assert!(
            matches!(e.bound_target(later, Duration::from_secs(61)), BoundTarget::Wait(c) if c.lsn == lsn(100))
        );
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_replayed() {
        let t0 = Instant::now();
        let mut e = Evidence::default();
        e.replayed(lsn(10), None, t0).unwrap();
        e.primary_report(lsn(50), None, t0 + MS(100), t0 + MS(100))
            .unwrap();
        e.primary_report(lsn(90), None, t0 + MS(300), t0 + MS(300))
            .unwrap();
        let f = e.figures(t0 + MS(400));
        assert_eq!(f.seconds, Some(MS(300)));
        assert_eq!(f.bytes, Some(80));
        e.replayed(lsn(60), Some(lsn(90)), t0).unwrap();
        assert_eq!(e.figures(t0 + MS(400)).seconds, Some(MS(100)));
        e.replayed(lsn(90), Some(lsn(90)), t0).unwrap();
        assert_eq!(e.figures(t0 + MS(400)).seconds, Some(Duration::ZERO));
    }

    #[test]
    fn a_bound_waits_for_the_oldest_ceiling_inside_it() {
        let t0 = Instant::now();
        let mut e = Evidence::default();
        for (i, at) in [0u64, 500, 1000, 1500].into_iter().enumerate() {
            e.primary_report(lsn(100 * (i as u64 + 1)), None, t0 + MS(at), t0 + MS(at))
                .unwrap();
        }
        let now = t0 + MS(1600);
        assert!(matches!(e.bound_target(now, MS(1000)), BoundTarget::Wait(c) if c.lsn == lsn(300)));
        assert!(matches!(
            e.bound_target(now, MS(50)),
            BoundTarget::AskPrimary
        ));
    }

    #[test]
    fn a_newer_lower_ceiling_replaces_older_higher_ones() {
        let t0 = Instant::now();
        let mut e = Evidence::default();
        // Asked at t0+100 (answered late), while the receiver said 80 at t0+200.
        e.primary_report(lsn(80), None, t0 + MS(200), t0 + MS(150))
            .unwrap();
        e.primary_report(lsn(80), None, t0 + MS(100), t0 + MS(300))
            .unwrap();
        assert!(
            matches!(e.bound_target(t0 + MS(300), MS(250)), BoundTarget::Wait(c) if c.at == t0 + MS(200))
        );
    }

    #[test]
    fn contradictions_make_the_lag_unknown_until_reports_agree() {
        let t0 = Instant::now();
        let mut e = Evidence::default();
        e.primary_report(lsn(100), None, t0, t0).unwrap();
        assert_eq!(
            e.replayed(lsn(120), Some(lsn(100)), t0),
            Err(Anomaly::ReplicaAhead)
        );
        assert_eq!(e.figures(t0).seconds, None);
        assert_eq!(
            e.bound_target(t0, MS(1000)),
            BoundTarget::Unknown(Anomaly::ReplicaAhead)
        );
        e.primary_report(lsn(130), None, t0 + MS(10), t0 + MS(10))
            .unwrap();
        e.settled();
        assert!(matches!(
            e.bound_target(t0 + MS(10), MS(1000)),
            BoundTarget::Wait(_)
        ));

        assert_eq!(
            e.replayed(lsn(50), Some(lsn(130)), t0),
            Err(Anomaly::ReplayWentBack)
        );
        assert_eq!(e.figures(t0 + MS(10)).bytes, None);
        e.settled();
        e.primary_report(lsn(130), None, t0 + MS(20), t0 + MS(20))
            .unwrap();
        assert_eq!(
            e.primary_report(lsn(110), None, t0 + MS(30), t0 + MS(30)),
            Err(Anomaly::PrimaryWentBack)
        );
    }

    #[test]
    fn floors_are_bounded_and_only_ever_lengthen_the_lag() {
        let t0 = Instant::now();
        let mut e = Evidence::default();
        e.replayed(lsn(0), None, t0).unwrap();
        for i in 1..=(MAX_FLOORS as u64 + 100) {
            e.floor(lsn(i), t0 + MS(i));
        }
        assert!(e.floors.len() <= MAX_FLOORS);
        assert_eq!(e.figures(t0 + MS(10_000)).seconds, Some(MS(10_000 - 1)));
        // A floor known earlier than later ones absorbs them.
        e.floor(lsn(1_000_000), t0);
        assert_eq!(e.floors.len(), 1);
    }
}
