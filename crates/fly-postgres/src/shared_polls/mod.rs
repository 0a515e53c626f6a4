//! One replay poller per region and database, not one per instance.
//!
//! A standby cannot `NOTIFY`, so every instance of a region used to poll
//! its replica on its own while anyone waited: ten instances, ten times the
//! queries to learn one number. Instead, the instances watching the same
//! server (same start time and port, as each tracker's own connection
//! reports it) agree on a leader: the lowest RPC address of the region,
//! among those that answer and watch that server. The leader polls as
//! before; the others ask it over RPC for the position their lowest wait
//! needs ([`ReplayAsk`], a long poll of at most 250 ms) and send no query
//! themselves. Any failure (leader gone, restarted, watching another
//! server, itself following someone) hands polling back to the instance's
//! own poller at once, and the leader is chosen again later, so instances
//! can come and go.

mod ask;
mod follower;

pub(crate) use ask::ReplayAsk;
pub(crate) use follower::spawn;
