//! Calls to one peer that are ready together share a request, and each
//! still gets its own answer, its own error, as soon as it is ready.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fly_rpc::{CallContext, CallOptions, Error, Node, Procedure, StaticPeers};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Waits until the test opens its gate.
#[derive(Debug, Serialize, Deserialize)]
struct Gated;

impl Procedure for Gated {
    const NAME: &'static str = "gated";
    type Output = ();
    type Error = AppError;
    type State = Semaphore;

    async fn run(self, gate: Arc<Semaphore>, _: CallContext) -> Result<(), AppError> {
        let _ = gate.acquire().await;
        Ok(())
    }
}

async fn pair(syd_batches: bool) -> (Node, Node, Arc<Counters>, Arc<Semaphore>) {
    let counters = Counters::named("syd");
    let gate = Arc::new(Semaphore::new(0));
    let syd = start(
        node("syd", "syd", &counters)
            .procedure::<Gated>(Arc::clone(&gate))
            .batch_calls(syd_batches),
        StaticPeers::new(),
    )
    .await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax")).procedure::<Gated>(Arc::new(Semaphore::new(0))),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    (syd, lax, counters, gate)
}

/// `n` echo calls at once; each must come back with its own text.
async fn echo_all(lax: &Node, n: usize, round: &str) {
    let calls = (0..n).map(|i| {
        let lax = lax.clone();
        let text = format!("{round}-{i}");
        tokio::spawn(async move {
            let reply = lax.call_region("syd", Echo(text.clone())).await.unwrap();
            assert_eq!(reply.text, text);
            assert_eq!(reply.caller_region, "lax");
            assert!(!reply.local);
        })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_requests_and_each_gets_its_own_answer() {
    let (syd, lax, counters, _gate) = pair(true).await;
    echo_all(&lax, 300, "a").await;
    assert_eq!(counters.runs(), 300, "each call ran exactly once");
    let counts = lax.call_counts();
    assert!(counts.batches > 0, "no call was batched: {counts:?}");
    assert!(
        counts.requests < 300,
        "300 calls took {} requests",
        counts.requests
    );
    assert_eq!(
        counts.requests - counts.batches + counts.batched_calls,
        300,
        "every call went exactly once, alone or in a batch: {counts:?}"
    );
    // Errors stay per call: every one of these fails with the app's own
    // error, typed, while echoes beside them succeed.
    let buys = (0..50).map(|i| {
        let lax = lax.clone();
        tokio::spawn(async move {
            lax.call_region(
                "syd",
                Buy {
                    item: format!("item-{i}"),
                },
            )
            .await
        })
    });
    let (buys, ()) = tokio::join!(
        futures_util::future::join_all(buys),
        echo_all(&lax, 50, "b")
    );
    for (i, buy) in buys.into_iter().enumerate() {
        match buy.unwrap() {
            Err(Error::Remote(remote)) => {
                let app: AppError = remote.decode().unwrap();
                assert_eq!(
                    app,
                    AppError::OutOfStock {
                        item: format!("item-{i}"),
                        left: 0
                    }
                );
            }
            other => panic!("expected the app's error, got {other:?}"),
        }
    }
    lax.shutdown().await.unwrap();
    syd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_does_not_hold_the_answers_batched_with_it() {
    let (syd, lax, _counters, gate) = pair(true).await;
    let before = lax.call_counts();
    // The slow call and the quick ones are ready at the same moment.
    let slow = {
        let lax = lax.clone();
        tokio::spawn(async move { lax.call_region("syd", Gated).await })
    };
    echo_all(&lax, 100, "q").await;
    // Every quick call answered while the slow one still waits.
    assert!(!slow.is_finished(), "the gate is closed");
    let counts = lax.call_counts();
    assert!(
        counts.batched_calls > before.batched_calls,
        "nothing was batched: {counts:?}"
    );
    gate.add_permits(1);
    slow.await.unwrap().unwrap();
    lax.shutdown().await.unwrap();
    syd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_leaves_the_others_answered() {
    let (syd, lax, counters, gate) = pair(true).await;
    // Calls that time out while batched with ones that do not.
    let gated = (0..20).map(|_| {
        let lax = lax.clone();
        tokio::spawn(async move {
            lax.call(
                "syd",
                Gated,
                CallOptions::new().timeout(Duration::from_millis(300)),
            )
            .await
        })
    });
    let (gated, ()) = tokio::join!(
        futures_util::future::join_all(gated),
        echo_all(&lax, 100, "t")
    );
    for call in gated {
        let error = call.unwrap().unwrap_err();
        assert!(
            matches!(error, Error::Timeout { sent: true, .. }),
            "{error:?}"
        );
        assert!(error.may_have_run());
    }
    assert_eq!(counters.runs(), 100);
    gate.add_permits(20);
    lax.shutdown().await.unwrap();
    syd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_batches_is_sent_lone_requests() {
    // syd answers the batch path as a version before batches did.
    let (syd, lax, counters, _gate) = pair(false).await;
    echo_all(&lax, 200, "old").await;
    assert_eq!(counters.runs(), 200, "each call ran exactly once");
    let first = lax.call_counts();
    echo_all(&lax, 200, "again").await;
    let second = lax.call_counts();
    assert_eq!(
        second.batches, first.batches,
        "once a peer turned a batch away, it gets lone requests"
    );
    assert_eq!(second.requests - first.requests, 200);
    assert_eq!(counters.runs(), 400);
    lax.shutdown().await.unwrap();
    syd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_batching_off_every_call_is_its_own_request() {
    let counters = Counters::named("syd");
    let syd = start(node("syd", "syd", &counters), StaticPeers::new()).await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax")).batch_calls(false),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    echo_all(&lax, 100, "off").await;
    let counts = lax.call_counts();
    assert_eq!((counts.requests, counts.batches), (100, 0), "{counts:?}");
    lax.shutdown().await.unwrap();
    syd.shutdown().await.unwrap();
}
