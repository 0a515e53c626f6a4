//! What a committed write hands back to the pipeline, whichever path ran it.

use crate::wal_position::WalPosition;

/// A committed write's output, where it committed, and what it took.
pub(super) struct Reply<O> {
    pub(super) output: O,
    /// `None` only in the primary region, when the commit's position could
    /// not be read: the write is done, only the consistency token misses it.
    pub(super) position: Option<WalPosition>,
    /// Microseconds its transaction took next to the primary, when known.
    pub(super) primary_us: Option<u64>,
    pub(super) attempts: u32,
}
