//! What this machine charges, in the same run, for the minimum steps of a
//! forwarded write with read-your-writes: a TCP round trip through a proxy
//! identical to the RPC link, the same statement in a bare transaction on
//! the primary, and one replay poll on the replica (plus the replication
//! link's configured one-way delay). Measured interleaved with the writes,
//! so a busy or slow machine moves the floor and the writes together and
//! the difference is what the library adds.

use std::time::{Duration, Instant};

use fly_postgres::sqlx::{self, PgPool};

use super::ping_pong::PingPong;
use crate::percentiles::{Samples, millis};

type FloorResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The three bare steps, sampled once per write.
pub(crate) struct MachineFloor {
    link: PingPong,
    primary: PgPool,
    replica: PgPool,
    pingpong: Vec<f64>,
    transaction: Vec<f64>,
    poll: Vec<f64>,
}

/// The p50s of the steps and their sum with the replication delay.
pub(crate) struct Floor {
    pub(crate) pingpong_ms: f64,
    pub(crate) transaction_ms: f64,
    pub(crate) poll_ms: f64,
    pub(crate) total_ms: f64,
}

impl MachineFloor {
    /// A round trip link with `rtt`, and the two pools.
    pub(crate) async fn start(
        rtt: Duration,
        primary: PgPool,
        replica: PgPool,
    ) -> FloorResult<Self> {
        Ok(MachineFloor {
            link: PingPong::start(rtt).await?,
            primary,
            replica,
            pingpong: Vec::new(),
            transaction: Vec::new(),
            poll: Vec::new(),
        })
    }

    /// One sample of each step.
    pub(crate) async fn sample(&mut self) -> FloorResult<()> {
        self.pingpong.push(millis(self.link.round_trip().await?));

        let started = Instant::now();
        let mut tx = self.primary.begin().await?;
        sqlx::query("insert into items (payload) values ($1)")
            .bind("machine floor")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.transaction.push(millis(started.elapsed()));

        let started = Instant::now();
        let _: Option<String> = sqlx::query_scalar("select pg_last_wal_replay_lsn()::text")
            .fetch_one(&self.replica)
            .await?;
        self.poll.push(millis(started.elapsed()));
        Ok(())
    }

    /// The floor, with the replication link's one-way delay `lag`: the
    /// reply comes back over the link while the WAL goes to the replica, so
    /// the longer of the two paths counts (the round trip, or one way out
    /// plus the WAL's delay), then the transaction and one poll.
    pub(crate) fn floor(&self, lag: Duration) -> Floor {
        let p50 = |v: &Vec<f64>| Samples::new(v.clone()).pct(50.0);
        let (pingpong_ms, transaction_ms, poll_ms) =
            (p50(&self.pingpong), p50(&self.transaction), p50(&self.poll));
        let paths_ms = pingpong_ms.max(pingpong_ms / 2.0 + lag.as_secs_f64() * 1e3);
        Floor {
            pingpong_ms,
            transaction_ms,
            poll_ms,
            total_ms: paths_ms + transaction_ms + poll_ms,
        }
    }
}
