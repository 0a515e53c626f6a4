//! A rolling deploy that adds a procedure: an instance that does not know it
//! ran nothing, so the caller tries its siblings and asks again until the
//! deadline.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fly_rpc::{CallContext, CallOptions, Discovery, Error, Node, Procedure, StaticPeers};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// Only the new build has it.
#[derive(Debug, Serialize, Deserialize)]
struct Greet(String);

impl Procedure for Greet {
    const NAME: &'static str = "greet";
    type Output = String;
    type Error = AppError;
    type State = Counters;

    async fn run(self, state: Arc<Counters>, _: CallContext) -> Result<String, AppError> {
        state.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(format!("hello {} from {}", self.0, state.name))
    }
}

async fn old_instance() -> Node {
    start(
        node("syd", "syd", &Counters::named("old")),
        StaticPeers::new(),
    )
    .await
}

async fn new_instance(counters: &Arc<Counters>) -> Node {
    start(
        node("syd", "syd", counters).procedure::<Greet>(Arc::clone(counters)),
        StaticPeers::new(),
    )
    .await
}

fn addr(node: &Node) -> SocketAddr {
    node.local_addr().expect("rpc listener")
}

/// Discovery whose instances the test changes while calls run.
#[derive(Debug, Default, Clone)]
struct Moving(Arc<Mutex<Vec<SocketAddr>>>);

impl Discovery for Moving {
    fn instances<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<SocketAddr>, Error>> {
        let now = self.0.lock().unwrap().clone();
        async move { Ok(now) }.boxed()
    }
    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        async { Ok(vec!["syd".to_owned()]) }.boxed()
    }
}

async fn caller(discovery: impl Discovery) -> Node {
    start(
        node("lax", "syd", &Counters::named("lax")).procedure::<Greet>(Counters::named("lax")),
        discovery,
    )
    .await
}

#[tokio::test]
async fn a_half_deployed_region_serves_every_call_from_the_instance_that_knows() {
    let old = old_instance().await;
    let new_c = Counters::named("new");
    let new = new_instance(&new_c).await;
    let lax = caller(
        StaticPeers::new()
            .with("syd", addr(&old))
            .with("syd", addr(&new)),
    )
    .await;
    for i in 0..20 {
        let reply = lax.call_primary(Greet(i.to_string())).await.unwrap();
        assert_eq!(reply, format!("hello {i} from new"));
    }
    assert_eq!(new_c.runs(), 20);
}

#[tokio::test]
async fn a_new_instance_that_appears_before_the_deadline_takes_the_call() {
    let old = old_instance().await;
    let moving = Moving::default();
    moving.0.lock().unwrap().push(addr(&old));
    let lax = caller(moving.clone()).await;
    let new_c = Counters::named("new");
    let new = new_instance(&new_c).await;
    let call = tokio::spawn({
        let lax = lax.clone();
        async move {
            let options = CallOptions::new()
                .timeout(Duration::from_secs(3))
                .require_primary();
            lax.call("syd", Greet("late".into()), options).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The deploy replaces the old instance with the new one.
    *moving.0.lock().unwrap() = vec![addr(&new)];
    assert_eq!(call.await.unwrap().unwrap(), "hello late from new");
    assert_eq!(new_c.runs(), 1);
}

#[tokio::test]
async fn a_procedure_no_instance_ever_knows_fails_typed_at_the_deadline() {
    let old = old_instance().await;
    let lax = caller(StaticPeers::new().with("syd", addr(&old))).await;
    let started = Instant::now();
    let options = CallOptions::new()
        .timeout(Duration::from_millis(400))
        .require_primary();
    let err = lax
        .call("syd", Greet("x".into()), options)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "asked again before giving up: {:?}",
        started.elapsed()
    );
    match &err {
        Error::UnknownProcedure {
            name, peer_version, ..
        } => {
            assert_eq!(name, "greet");
            assert_eq!(peer_version, "test-old");
        }
        other => panic!("expected UnknownProcedure, got {other:?}"),
    }
    assert!(!err.may_have_run());
}
