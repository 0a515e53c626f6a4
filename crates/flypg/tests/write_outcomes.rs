//! A forwarded write while the primary-region instance (a real `flypg
//! todo-app` process) is killed, restarted or stopped with SIGTERM: the
//! caller is told the truth, and a committed write is never reported failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fly_postgres::sqlx::{self, postgres::PgPoolOptions};
use fly_postgres::{Error, Repo};
use fly_postgres_testkit::{AppProcess, Delay, LatencyProxy, PgCluster};
use fly_postgres_todo::{AppendLedger, LedgerEntry};
use fly_rpc::{Node, Regions, StaticPeers};

const SECRET: &str = "write outcome test secret 0123456789";
const RTT: Duration = Duration::from_millis(20);

/// The syd instance as a process, with the primary as its database,
/// reached by lax through `link`.
fn spawn_syd(cluster: &PgCluster, link: &LatencyProxy) -> AppProcess {
    let syd = AppProcess::spawn(
        env!("CARGO_BIN_EXE_flypg"),
        &["todo-app"],
        &[
            ("FLY_REGION", "syd".into()),
            ("PRIMARY_REGION", "syd".into()),
            ("FLY_RPC_SECRET", SECRET.into()),
            ("FLY_RPC_LISTEN", "127.0.0.1:0".into()),
            ("HTTP_LISTEN", "127.0.0.1:0".into()),
            ("FLY_POSTGRES_REWRITE_URL", "false".into()),
            ("DATABASE_URL", cluster.primary().url()),
            ("FLY_RPC_ADVERTISE", link.local_addr().to_string()),
            ("RUST_LOG", "error".into()),
        ],
    )
    .unwrap();
    link.connect_to(syd.rpc());
    syd
}

/// lax, in this process, reaching syd's instances at `peers` (through
/// latency proxies, or directly).
async fn lax_repo(cluster: &PgCluster, syd: &[SocketAddr], rpc_timeout: Duration) -> Repo {
    let mut peers = StaticPeers::new();
    for addr in syd {
        peers = peers.with("syd", *addr);
    }
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(cluster.replica().connect_options())
        .await
        .unwrap();
    fly_postgres_todo::mutations(Repo::builder())
        .pool(pool)
        .node(
            Node::builder()
                .regions(Regions::new("lax", "syd"))
                .listen("127.0.0.1:0".parse().unwrap())
                .secret(SECRET)
                .discovery(peers),
        )
        .rpc_timeout(rpc_timeout)
        .start()
        .await
        .unwrap()
}

async fn rows(cluster: &PgCluster, token: &str) -> i64 {
    let mut conn = cluster.primary().connect().await.unwrap();
    sqlx::query_scalar("select count(*) from ledger where token = $1")
        .bind(token)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Waits until `token` has committed on the primary.
async fn committed(cluster: &PgCluster, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(cluster, token).await == 0 {
        assert!(Instant::now() < deadline, "{token} never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Holds every reply syd sends from now on, as if it had not sent it yet.
fn hold_replies(link: &LatencyProxy) {
    link.set_delay(Delay {
        to_upstream: RTT / 2,
        to_client: Duration::from_secs(3600),
    });
}

/// A cluster, one syd instance behind a 20 ms link, and lax in this process.
async fn one_instance_each(rpc_timeout: Duration) -> (PgCluster, LatencyProxy, AppProcess, Repo) {
    let cluster = PgCluster::start().await.unwrap();
    let link = LatencyProxy::bind(Delay::rtt(RTT)).await.unwrap();
    let syd = tokio::task::block_in_place(|| spawn_syd(&cluster, &link));
    cluster
        .wait_for_catch_up(Duration::from_secs(30))
        .await
        .unwrap();
    let lax = lax_repo(&cluster, &[link.local_addr()], rpc_timeout).await;
    (cluster, link, syd, lax)
}

/// The reproduction: a write commits on syd, syd is killed before its reply
/// leaves, and comes back after `down`.
async fn committed_then_killed_then_back_after(down: Duration) {
    let (cluster, link, mut syd, lax) = one_instance_each(Duration::from_secs(5)).await;

    hold_replies(&link);
    let token = format!("restart-{}", down.as_millis());
    let write = tokio::spawn({
        let (lax, token) = (lax.clone(), token.clone());
        async move { lax.write(AppendLedger { token }).await }
    });
    committed(&cluster, &token).await;
    syd.kill9();
    link.sever();
    link.set_delay(Delay::rtt(RTT));
    tokio::time::sleep(down).await;
    tokio::task::block_in_place(|| syd.restart()).unwrap();

    let entry: LedgerEntry = write
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a committed write was reported as {e:?}"));
    assert_eq!(entry.token, token);
    assert_eq!(rows(&cluster, &token).await, 1, "exactly one row");
    assert!(lax.stats().retries >= 1, "{:?}", lax.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_before_a_crash_is_ok_once_when_the_instance_is_back_after_1s() {
    committed_then_killed_then_back_after(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_before_a_crash_is_ok_once_when_the_instance_is_back_after_3s() {
    committed_then_killed_then_back_after(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_the_outcome_is_maybe_committed_and_the_request_id_settles_it() {
    let (cluster, link, mut syd, lax) = one_instance_each(Duration::from_millis(1500)).await;

    // Sent, committed, and syd stays down past the 1.5 s budget.
    hold_replies(&link);
    let key = "client-key-0001";
    let write = tokio::spawn({
        let lax = lax.clone();
        async move {
            lax.write(AppendLedger {
                token: "held".into(),
            })
            .request_id(key)
            .await
        }
    });
    committed(&cluster, "held").await;
    syd.kill9();
    link.sever();
    link.set_delay(Delay::rtt(RTT));
    let err = write.await.unwrap().unwrap_err();
    // Two variants, one class, by timing alone: the last attempt either
    // failed fast on a closed connection (MaybeCommitted) or was still
    // waiting when the deadline came (RpcTimeout). Each is produced alone,
    // deterministically, in fly-postgres's tests/error_variants.rs.
    assert!(
        matches!(err, Error::MaybeCommitted { .. } | Error::RpcTimeout { .. }),
        "{err:?}"
    );
    assert_eq!(err.request_id(), Some(key), "{err}");
    assert!(err.to_string().contains(key), "{err}");

    // Nothing sent (syd is down from the start, its port refuses; a proxy
    // would accept and then drop, which may have delivered): a definite
    // "not written".
    let direct = lax_repo(&cluster, &[syd.rpc()], Duration::from_millis(800)).await;
    let err = direct
        .write(AppendLedger {
            token: "never".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoPrimaryNode { .. }), "{err:?}");
    assert!(!err.is_maybe_committed());
    assert_eq!(rows(&cluster, "never").await, 0);

    // Settled: the same id returns the recorded output, and runs nothing.
    tokio::task::block_in_place(|| syd.restart()).unwrap();
    let first: LedgerEntry = lax
        .write(AppendLedger {
            token: "held".into(),
        })
        .request_id(key)
        .await
        .unwrap();
    assert_eq!(first.token, "held");
    assert_eq!(rows(&cluster, "held").await, 1);
    // The same id for different arguments is refused, not replayed.
    let err = lax
        .write(AppendLedger {
            token: "other".into(),
        })
        .request_id(key)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RequestIdReused { .. }), "{err:?}");
    assert_eq!(rows(&cluster, "other").await, 0);
    // And a malformed id never leaves the caller.
    let err = lax
        .write(AppendLedger {
            token: "bad id".into(),
        })
        .request_id("has spaces")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequestId { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_each_primary_region_instance_in_turn_loses_and_fails_nothing() {
    let cluster = PgCluster::start().await.unwrap();
    let link_a = LatencyProxy::bind(Delay::rtt(RTT)).await.unwrap();
    let link_b = LatencyProxy::bind(Delay::rtt(RTT)).await.unwrap();
    let (mut a, mut b) = tokio::task::block_in_place(|| {
        (spawn_syd(&cluster, &link_a), spawn_syd(&cluster, &link_b))
    });
    cluster
        .wait_for_catch_up(Duration::from_secs(30))
        .await
        .unwrap();
    let lax = lax_repo(
        &cluster,
        &[link_a.local_addr(), link_b.local_addr()],
        Duration::from_secs(5),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (lax, stop) = (lax.clone(), Arc::clone(&stop));
        writers.spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let token = format!("w{w}-{n}");
                n += 1;
                let result = lax.write(AppendLedger {
                    token: token.clone(),
                });
                outcomes.push((token, result.await.map(|_| ()).map_err(|e| e.to_string())));
            }
            outcomes
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for instance in [&mut a, &mut b] {
        let status = tokio::task::block_in_place(|| instance.terminate(Duration::from_secs(10)));
        assert!(
            status.is_some_and(|s| s.success()),
            "SIGTERM did not end the instance cleanly: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| instance.restart()).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut ok = 0;
    let mut failures = Vec::new();
    let mut tokens = Vec::new();
    while let Some(outcomes) = writers.join_next().await {
        for (token, outcome) in outcomes.unwrap() {
            match outcome {
                Ok(()) => {
                    ok += 1;
                    tokens.push(token);
                }
                Err(e) => failures.push(format!("{token}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "writes failed during a rolling restart: {failures:?}"
    );
    assert!(ok > 20, "only {ok} writes");
    let mut conn = cluster.primary().connect().await.unwrap();
    let (total, distinct): (i64, i64) =
        sqlx::query_as("select count(*), count(distinct token) from ledger")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(total, ok as i64, "rows vs writes told OK");
    assert_eq!(distinct, total, "a write ran twice");
    for token in tokens {
        assert_eq!(rows(&cluster, &token).await, 1, "{token}");
    }
}
