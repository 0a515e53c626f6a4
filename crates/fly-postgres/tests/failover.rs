//! A PostgreSQL failover in the primary region while lax and syd write: the
//! syd primary is killed, the syd standby promoted, the leader address
//! moves; no write fails in either region (the ones that met the dead
//! primary did not run, and are retried on a fresh connection), none is
//! lost or doubled, none hangs, and lax's tracker follows the new timeline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fly_postgres::sqlx::{self, postgres::PgPoolOptions};
use fly_postgres_testkit::PgTopology;

const RPC_TIMEOUT: Duration = Duration::from_secs(3);
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(3);

/// How one write ended.
#[derive(Debug)]
enum Ended {
    Ok,
    NotCommitted,
    Maybe,
    Committed,
}

#[tokio::test]
async fn writes_survive_a_failover_in_the_primary_region() {
    let ms = Duration::from_millis;
    let topology = PgTopology::builder("syd")
        .replica("lax")
        .synchronous_standby()
        // lax's WAL arrives 150 ms after the standby's: a replica that got
        // WAL the promoted standby never had cannot follow it (PostgreSQL
        // would need pg_rewind). A loaded 2-core CI machine let the standby
        // fall 10 ms behind lax once, and 30 ms once on PostgreSQL 18.
        .rtt("syd", "lax", ms(300))
        .start()
        .await
        .unwrap();
    // syd's instance reaches the database by the leader address, as an app
    // on Fly does by port 5432.
    let leader_pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(topology.leader_options());
    // syd serves the forwarded writes until the end of the test, and
    // writes itself.
    let (syd, lax) = syd_and_lax(
        leader_pool.clone(),
        pool(topology.replica("lax").unwrap().connect_options()).await,
        |syd| syd.rpc_timeout(RPC_TIMEOUT),
        |lax| {
            lax.rpc_timeout(RPC_TIMEOUT)
                .replication_timeout(REPLICATION_TIMEOUT)
        },
    )
    .await;
    topology.wait_for_catch_up(ms(10_000)).await.unwrap();

    // Before.
    lax.write(CreateTodo {
        title: "before".into(),
    })
    .await
    .unwrap();

    // During: eight writers in lax and four in syd, each write timed and
    // its outcome kept.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..12 {
        let (region, repo) = if w < 8 {
            ("lax", lax.clone())
        } else {
            ("syd", syd.clone())
        };
        let stop = stop.clone();
        writers.spawn(async move {
            let mut ended = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let title = format!("{region}-w{w}-{i}");
                i += 1;
                let started = Instant::now();
                let result = repo
                    .write(CreateTodo {
                        title: title.clone(),
                    })
                    .await;
                let took = started.elapsed();
                let how = match &result {
                    Ok(_) => Ended::Ok,
                    Err(e) if e.is_committed() => Ended::Committed,
                    Err(e) if e.is_maybe_committed() => Ended::Maybe,
                    Err(_) => Ended::NotCommitted,
                };
                ended.push((title, how, took, result.err().map(|e| e.to_string())));
                if region == "syd" {
                    // Local writes take ~2 ms: paced, so their WAL does not
                    // bury lax's replica (this test is about errors, not
                    // throughput).
                    tokio::time::sleep(ms(5)).await;
                }
            }
            ended
        });
    }
    tokio::time::sleep(ms(500)).await;
    topology.primary().kill().await.unwrap();
    let failed_at = Instant::now();
    topology.promote("syd-standby").await.unwrap();
    eprintln!("promoted after {:?}", failed_at.elapsed());

    // After: a write succeeds within a few seconds, nothing restarted.
    let resumed = loop {
        match lax
            .write(CreateTodo {
                title: format!("after-{}", failed_at.elapsed().as_micros()),
            })
            .await
        {
            Ok(_) => break failed_at.elapsed(),
            // Committed, only not yet replayed in lax: writes resumed.
            Err(e) if e.is_committed() => break failed_at.elapsed(),
            Err(e) => {
                assert!(
                    failed_at.elapsed() < Duration::from_secs(15),
                    "writes did not resume: {e}"
                );
                tokio::time::sleep(ms(100)).await;
            }
        }
    };
    eprintln!("writes resumed {resumed:?} after the kill");
    tokio::time::sleep(ms(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut ended = Vec::new();
    while let Some(done) = writers.join_next().await {
        ended.extend(done.unwrap());
    }
    topology.wait_for_catch_up(ms(10_000)).await.unwrap();
    let mut primary = topology.primary().connect().await.unwrap();
    let (mut ok, mut maybe, mut failed) = (0, 0, 0);
    let mut errors = Vec::new();
    let mut syd_worst = Duration::ZERO;
    for (title, how, took, error) in &ended {
        if title.starts_with("syd-") {
            syd_worst = syd_worst.max(*took);
        }
        if matches!(how, Ended::NotCommitted | Ended::Maybe) {
            errors.push(format!("{title}: {how:?} {error:?}"));
        }
        // None hangs past its timeouts (plus the backoff and slack).
        assert!(
            *took < RPC_TIMEOUT + REPLICATION_TIMEOUT + ms(2000),
            "{title} took {took:?} ({how:?}, {error:?})"
        );
        let rows: i64 = sqlx::query_scalar("select count(*) from todos where title = $1")
            .bind(title)
            .fetch_one(&mut primary)
            .await
            .unwrap();
        match how {
            // With a synchronous standby no acknowledged write is lost.
            Ended::Ok | Ended::Committed => {
                ok += 1;
                assert_eq!(rows, 1, "{title} was acknowledged, then lost")
            }
            Ended::NotCommitted => {
                failed += 1;
                assert_eq!(
                    rows, 0,
                    "{title} was reported failed but committed: {error:?}"
                )
            }
            Ended::Maybe => {
                maybe += 1;
                assert!(rows <= 1)
            }
        }
    }
    eprintln!(
        "{ok} ok, {maybe} maybe committed, {failed} not committed; the worst syd write took {syd_worst:?}"
    );
    assert!(ok > 8, "writes before and after the failover went through");
    // Writes that met the dead primary did not run: both regions retried
    // them on the new one, so no caller saw an error.
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());

    // lax's tracker follows the new timeline: a write now is read back.
    let todo = lax
        .write(CreateTodo {
            title: "on the new timeline".into(),
        })
        .await
        .unwrap();
    assert_eq!(find_todo(lax.local(), todo.id).await, Some(todo));
    let replayed = lax
        .tracker()
        .last_replayed()
        .expect("lax's tracker has seen replay");
    // A position the new timeline has not reached: a typed timeout, not a hang.
    let beyond = fly_postgres::Lsn::new(replayed.as_u64() + (1 << 30));
    let waited = lax
        .tracker()
        .wait_for(beyond, Duration::from_millis(300))
        .await;
    assert!(
        matches!(waited, Err(fly_postgres::Error::ReplicationTimeout { .. })),
        "{waited:?}"
    );
}
