//! A network partition is silence, not a reset: connections stay open and
//! nothing arrives. With the link between an instance and its database
//! black-holed (`LatencyProxy::black_hole`), writes still end within their
//! deadline in a truthful class, and everything resumes once the link
//! returns, nothing written twice.

mod common;

use std::time::{Duration, Instant};

use common::{CreateTodo, syd_and_lax};
use fly_postgres::sqlx::{self, PgConnection};
use fly_postgres::{Error, Repo, WriteOutcome};
use fly_postgres_testkit::{Delay, LatencyProxy, PgCluster};

fn todo(title: &str) -> CreateTodo {
    CreateTodo {
        title: title.into(),
    }
}

struct World {
    cluster: PgCluster,
    /// syd's pool reaches the primary through this link.
    primary_link: LatencyProxy,
    /// lax's pool reaches its replica through this link.
    replica_link: LatencyProxy,
    syd: Repo,
    lax: Repo,
}

async fn world() -> World {
    let cluster = PgCluster::start().await.unwrap();
    let link = |port: u16| LatencyProxy::start(([127, 0, 0, 1], port).into(), Delay::NONE);
    let primary_link = link(cluster.primary().port()).await.unwrap();
    let replica_link = link(cluster.replica().port()).await.unwrap();
    let pool = |options: sqlx::postgres::PgConnectOptions, via: &LatencyProxy| {
        fly_postgres::pool_options()
            .max_connections(4)
            .connect_lazy_with(options.port(via.local_addr().port()))
    };
    let (syd, lax) = syd_and_lax(
        pool(cluster.primary().connect_options(), &primary_link),
        pool(cluster.replica().connect_options(), &replica_link),
        |b| b,
        |b| b,
    )
    .await;
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    // Connections open and in use before the partition.
    lax.write(todo("before")).await.unwrap();
    World {
        cluster,
        primary_link,
        replica_link,
        syd,
        lax,
    }
}

/// Todos titled `title` on the primary, read past the black-holed link.
async fn rows(world: &World, title: &str) -> i64 {
    let mut conn = <PgConnection as sqlx::Connection>::connect_with(
        &world.cluster.primary().connect_options(),
    )
    .await
    .unwrap();
    sqlx::query_scalar("select count(*) from todos where title = $1")
        .bind(title)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_silent_primary_link_ends_writes_at_their_deadline_and_they_resume_after() {
    let world = world().await;
    world.primary_link.black_hole();
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let result = world
        .syd
        .write(todo("in the dark"))
        .request_id("dark-1")
        .rpc_timeout(deadline)
        .await;
    let took = started.elapsed();
    // No answer to BEGIN, so COMMIT was never sent: the write is not
    // committed, and says so, with what the database did (nothing).
    match &result {
        Err(e @ Error::NoConnection { reason, .. }) => {
            assert_eq!(e.outcome(), WriteOutcome::NotCommitted, "{e}");
            assert!(reason.contains("did not accept a connection"), "{reason}");
        }
        other => panic!("expected NoConnection (not committed), got {other:?}"),
    }
    // Ended by its deadline, not by the operating system's minutes-long
    // retransmissions (the bound is loose: a defect hangs forever).
    assert!(took < deadline * 3, "the write took {took:?}");

    world.primary_link.restore();
    // What the attempt had sent arrives now, as TCP would deliver it after
    // the partition, and commits nothing: "not committed" was the truth.
    let healed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows(&world, "in the dark").await, 0);
    // The same request again writes it, once.
    let settled = world
        .syd
        .write(todo("in the dark"))
        .request_id("dark-1")
        .rpc_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(settled.title, "in the dark");
    assert_eq!(rows(&world, "in the dark").await, 1);
    // New writes go through again.
    world
        .syd
        .write(todo("after"))
        .rpc_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        healed.elapsed() < Duration::from_secs(20),
        "writes resumed {:?} after the link returned",
        healed.elapsed()
    );
}

#[tokio::test]
async fn a_silent_replica_link_ends_the_wait_at_its_bound_and_the_write_stays_committed() {
    let world = world().await;
    world.replica_link.black_hole();
    let bound = Duration::from_secs(1);
    let started = Instant::now();
    let result = world
        .lax
        .write(todo("unseen in lax"))
        .replication_timeout(bound)
        .await;
    let took = started.elapsed();
    // Committed in syd, not visible in lax in time: the committed class,
    // with the output, never a failure.
    match &result {
        Err(Error::ReplicationTimeout { output, .. }) => assert!(output.is_some()),
        other => panic!("expected ReplicationTimeout, got {other:?}"),
    }
    assert!(
        took < bound + Duration::from_secs(5),
        "the wait took {took:?}"
    );
    assert_eq!(rows(&world, "unseen in lax").await, 1);

    world.replica_link.restore();
    // The waits work again: the next write is read back in lax.
    world
        .lax
        .write(todo("seen in lax"))
        .replication_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("select count(*) from todos where title = 'seen in lax'")
        .fetch_one(world.lax.local())
        .await
        .unwrap();
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn a_silent_replica_link_ends_reads_at_the_callers_bound_and_they_resume_after() {
    let world = world().await;
    let count = || {
        sqlx::query_scalar::<_, i64>("select count(*) from todos where title = 'before'")
            .fetch_one(world.lax.local())
    };
    assert_eq!(count().await.unwrap(), 1);
    world.replica_link.black_hole();
    // A query on an open connection has no client-side bound in sqlx: the
    // caller's timeout is the bound (the reliability guide says so). Each
    // read ends there, including the ones that meet the connections cut
    // before them, or wait for a connection (the pool's acquire timeout).
    let bound = Duration::from_millis(800);
    for attempt in 0..6 {
        let started = Instant::now();
        let read = tokio::time::timeout(bound, count()).await;
        let took = started.elapsed();
        match read {
            Err(_elapsed) => {}
            Ok(Err(sqlx::Error::PoolTimedOut)) => {}
            Ok(other) => panic!("read {attempt} in the dark answered: {other:?}"),
        }
        assert!(took < bound * 4, "read {attempt} took {took:?}");
    }

    world.replica_link.restore();
    // Reads resume: the connections cut mid-query are settled or closed
    // when they return to the pool, never handed out half-read.
    let healed = Instant::now();
    for _ in 0..8 {
        let n = tokio::time::timeout(Duration::from_secs(20), count())
            .await
            .expect("a read after the link returned hung")
            .unwrap();
        assert_eq!(n, 1);
    }
    assert!(
        healed.elapsed() < Duration::from_secs(20),
        "reads resumed {:?} after the link returned",
        healed.elapsed()
    );
}
