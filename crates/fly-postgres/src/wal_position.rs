//! A WAL position together with the timeline it was written on.

use std::fmt;

use crate::lsn::Lsn;

/// A position in the WAL of one timeline.
///
/// An LSN alone is ambiguous after a failover: the promoted standby starts a
/// new timeline at its switch point, and the old timeline's WAL past that
/// point (writes that had not reached the standby) is gone, even though the
/// new timeline's WAL soon passes the same numbers. Waiting for the LSN
/// alone would then report a lost write as visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalPosition {
    /// The timeline (`None` when it was not learned: a reply from an older
    /// version, or a database that would not say).
    pub timeline: Option<u32>,
    /// The position.
    pub lsn: Lsn,
}

impl WalPosition {
    /// `lsn` on `timeline`.
    pub const fn new(timeline: Option<u32>, lsn: Lsn) -> Self {
        WalPosition { timeline, lsn }
    }

    /// Whether this position comes after `other`: a later timeline, or the
    /// same one further on. A position without a timeline compares by LSN.
    pub(crate) fn is_after(self, other: WalPosition) -> bool {
        match (self.timeline, other.timeline) {
            (Some(a), Some(b)) if a != b => a > b,
            _ => self.lsn > other.lsn,
        }
    }

    /// The later of `earlier` (if any) and `position`.
    pub(crate) fn latest(earlier: Option<WalPosition>, position: WalPosition) -> WalPosition {
        match earlier {
            Some(earlier) if !position.is_after(earlier) => earlier,
            _ => position,
        }
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timeline {
            Some(timeline) => write!(f, "{} on timeline {timeline}", self.lsn),
            None => write!(f, "{}", self.lsn),
        }
    }
}

/// The timeline in a WAL segment file name (`pg_walfile_name`'s first eight
/// hexadecimal digits).
pub(crate) fn timeline_of_walfile(name: &str) -> Option<u32> {
    let hex = name.get(..8)?;
    u32::from_str_radix(hex, 16).ok().filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timeline_of_a_segment_name() {
        assert_eq!(timeline_of_walfile("000000010000000000000003"), Some(1));
        assert_eq!(timeline_of_walfile("0000001A0000000000000003"), Some(26));
        assert_eq!(timeline_of_walfile("00000000"), None);
        assert_eq!(timeline_of_walfile("xyz"), None);
        assert_eq!(
            WalPosition::new(Some(2), Lsn::new(0x16)).to_string(),
            "0/16 on timeline 2"
        );
    }

    #[test]
    fn later_timelines_come_after_and_unknown_ones_compare_by_lsn() {
        let at = |t, l| WalPosition::new(t, Lsn::new(l));
        assert!(at(Some(2), 5).is_after(at(Some(1), 100)));
        assert!(at(Some(1), 6).is_after(at(Some(1), 5)));
        assert!(!at(Some(1), 5).is_after(at(Some(1), 5)));
        assert!(at(None, 100).is_after(at(Some(1), 5)));
        assert!(!at(Some(1), 5).is_after(at(None, 100)));
        assert_eq!(WalPosition::latest(None, at(None, 1)), at(None, 1));
        assert_eq!(
            WalPosition::latest(Some(at(Some(1), 9)), at(Some(1), 3)),
            at(Some(1), 9)
        );
        assert_eq!(
            WalPosition::latest(Some(at(None, 9)), at(Some(1), 30)),
            at(Some(1), 30)
        );
    }
}
