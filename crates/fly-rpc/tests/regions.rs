//! Nodes in two regions inside one test process, over real sockets.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fly_rpc::{CallOptions, Error, StaticPeers};
use futures_util::future::FutureExt;

#[tokio::test]
async fn call_region_call_primary_and_local_short_circuit() {
    let syd_c = Counters::named("syd-1");
    let lax_c = Counters::named("lax-1");
    let syd = start(node("syd", "syd", &syd_c), StaticPeers::new()).await;
    let lax = start(
        node("lax", "syd", &lax_c),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;

    let reply = lax.call_primary(Echo("hi".into())).await.unwrap();
    assert_eq!(
        reply,
        EchoReply {
            text: "hi".into(),
            served_by: "syd-1".into(),
            local: false,
            caller_region: "lax".into()
        }
    );
    let reply = lax.call_region("syd", Echo("again".into())).await.unwrap();
    assert_eq!(reply.served_by, "syd-1");
    assert_eq!(syd_c.runs(), 2);

    // Own region: runs here, no network hop.
    let reply = lax.call_region("lax", Echo("here".into())).await.unwrap();
    assert!(reply.local);
    assert_eq!(reply.served_by, "lax-1");
    let reply = syd.call_primary(Echo("primary".into())).await.unwrap();
    assert!(reply.local, "in the primary region a primary call is local");
    assert_eq!(syd_c.runs(), 3);
    assert_eq!(lax_c.runs(), 1);

    let info = lax
        .peer_info(syd.local_addr().expect("rpc listener"))
        .await
        .unwrap();
    assert_eq!(info.region, "syd");
    assert_eq!(info.version, "test-syd-1");
    assert_eq!(info.procedures, vec!["buy", "echo", "explode", "sleep"]);
    let peers = lax.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].info.as_ref().unwrap().region, "syd");
}

#[tokio::test]
async fn handler_errors_come_back_typed_and_panics_do_not_kill_the_node() {
    let syd_c = Counters::named("syd-1");
    let syd = start(node("syd", "syd", &syd_c), StaticPeers::new()).await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax-1")),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;

    let err = lax
        .call_primary(Buy {
            item: "socks".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.remote::<AppError>(),
        Some(AppError::OutOfStock {
            item: "socks".into(),
            left: 0
        })
    );
    assert!(
        err.to_string().contains("not enough stock for socks"),
        "{err}"
    );

    let err = lax.call_primary(Explode).await.unwrap_err();
    assert!(
        matches!(err, Error::HandlerPanicked { ref procedure, .. } if procedure == "explode"),
        "{err:?}"
    );
    // The node keeps serving after the panic.
    assert_eq!(
        lax.call_primary(Echo("still".into())).await.unwrap().text,
        "still"
    );

    // The same holds for a local call.
    let err = syd.call_primary(Explode).await.unwrap_err();
    assert!(matches!(err, Error::HandlerPanicked { .. }), "{err:?}");
    let err = syd
        .call_primary(Buy { item: "hat".into() })
        .await
        .unwrap_err();
    assert!(err.remote::<AppError>().is_some());
    assert_eq!(syd_c.runs(), 5);
}

#[tokio::test]
async fn version_skew_is_a_typed_error_naming_the_peer_version() {
    let old = start(
        node("syd", "syd", &Counters::named("old")),
        StaticPeers::new(),
    )
    .await;
    let new = start(
        node("lax", "syd", &Counters::named("new")).procedure::<NewFeature>(Counters::named("new")),
        StaticPeers::new().with("syd", old.local_addr().expect("rpc listener")),
    )
    .await;
    // Every instance lacks it until the deadline: the typed error, with the
    // version that answered.
    let options = fly_rpc::CallOptions::new()
        .timeout(Duration::from_millis(300))
        .require_primary();
    let err = new.call("syd", NewFeature, options).await.unwrap_err();
    match &err {
        Error::UnknownProcedure {
            name,
            peer_version,
            peer_procedures,
            ..
        } => {
            assert_eq!(name, "new_feature");
            assert_eq!(peer_version, "test-old");
            assert!(peer_procedures.contains(&"echo".to_owned()));
        }
        other => panic!("expected UnknownProcedure, got {other:?}"),
    }
    assert!(err.to_string().contains("test-old"), "{err}");

    // Same name, other arguments: a 400 with the decode error.
    let err = new
        .call_primary(EchoV2 {
            text: "x".into(),
            loud: true,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BadRequest { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn not_primary_nodes_are_skipped() {
    let replica_c = Counters::named("syd-replica");
    let primary_c = Counters::named("syd-primary");
    let not_primary = start(
        node("syd", "syd", &replica_c).primary_check(Arc::new(|| async { false }.boxed())),
        StaticPeers::new(),
    )
    .await;
    let primary = start(
        node("syd", "syd", &primary_c).primary_check(Arc::new(|| async { true }.boxed())),
        StaticPeers::new(),
    )
    .await;
    // No quarantine: round robin keeps offering the not-primary node first.
    let lax = start(
        node("lax", "syd", &Counters::named("lax")).failure_quarantine(Duration::ZERO),
        StaticPeers::new()
            .with("syd", not_primary.local_addr().expect("rpc listener"))
            .with("syd", primary.local_addr().expect("rpc listener")),
    )
    .await;
    for _ in 0..10 {
        let reply = lax.call_primary(Echo("w".into())).await.unwrap();
        assert_eq!(reply.served_by, "syd-primary");
    }
    assert_eq!(replica_c.runs(), 0, "a not-primary node ran a primary call");
    assert_eq!(primary_c.runs(), 10);
    // Region calls without the primary requirement may use either.
    for _ in 0..4 {
        lax.call_region("syd", Echo("r".into())).await.unwrap();
    }
    assert!(replica_c.runs() > 0);
}

#[tokio::test]
async fn no_node_in_region_fails_fast_not_hangs() {
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("fra", "127.0.0.1:1".parse().unwrap()),
    )
    .await;
    let started = Instant::now();
    let err = lax.call_primary(Echo("x".into())).await.unwrap_err();
    assert!(
        matches!(err, Error::NoNodeInRegion { ref region, tried: 0, sent: 0, .. } if region == "syd"),
        "{err:?}"
    );
    // A region whose only instance refuses connections.
    let err = lax.call_region("fra", Echo("x".into())).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoNodeInRegion {
                tried: 1,
                sent: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.may_have_run(), "a refused connection sent nothing");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn timeouts_are_typed_and_the_handler_still_finishes() {
    let syd_c = Counters::named("syd");
    let syd = start(node("syd", "syd", &syd_c), StaticPeers::new()).await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax")).rpc_timeout(Duration::from_millis(200)),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    let err = lax.call_primary(Sleep(500)).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, sent: true, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(
        err.may_have_run(),
        "the handler was running when the call timed out"
    );
    // Per-call override.
    lax.call(
        "syd",
        Sleep(300),
        CallOptions::new().timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert_eq!(syd_c.runs(), 2);
}

#[tokio::test]
async fn wrong_secret_is_unauthorized_and_no_secret_refuses_to_start() {
    let syd_c = Counters::named("syd");
    let syd = start(node("syd", "syd", &syd_c), StaticPeers::new()).await;
    let intruder = start(
        node("lax", "syd", &Counters::named("lax")).secret("another secret of 16+ bytes"),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    let err = intruder.call_primary(Echo("x".into())).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(syd_c.runs(), 0);

    let err = fly_rpc::Node::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("FLY_RPC_SECRET")),
        "{err:?}"
    );
    let err = fly_rpc::Node::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .secret("short")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let dev = fly_rpc::Node::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .insecure()
        .start()
        .await
        .unwrap();
    dev.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_and_all_succeed() {
    let syd_c = Counters::named("syd");
    let syd = start(node("syd", "syd", &syd_c), StaticPeers::new()).await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let lax = lax.clone();
        tasks.spawn(async move { lax.call_primary(Echo(i.to_string())).await });
    }
    let mut n = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
        n += 1;
    }
    assert_eq!(n, 200);
    assert_eq!(syd_c.runs(), 200);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let syd = start(
        node("syd", "syd", &Counters::named("syd")),
        StaticPeers::new(),
    )
    .await;
    let addr = syd.local_addr().expect("rpc listener");
    syd.shutdown().await.unwrap();
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    let err = lax.call_primary(Echo("x".into())).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoNodeInRegion {
                tried: 1,
                sent: 0,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn call_instance_reaches_the_chosen_sibling_and_only_it() {
    let a_c = Counters::named("lax-a");
    let b_c = Counters::named("lax-b");
    let a = start(node("lax", "syd", &a_c), StaticPeers::new()).await;
    let b = start(node("lax", "syd", &b_c), StaticPeers::new()).await;
    let addr = b.local_addr().expect("rpc listener");
    // A sibling in the same region: call_region would run here.
    let peers = StaticPeers::new()
        .with("lax", a.local_addr().expect("rpc listener"))
        .with("lax", addr);
    let caller = start(node("lax", "syd", &Counters::named("lax-c")), peers).await;
    let listed = caller.instances("lax").await.unwrap();
    assert_eq!(listed.len(), 2);
    let reply = caller
        .call_instance(addr, Echo("sibling".into()), CallOptions::new())
        .await
        .unwrap();
    assert_eq!(reply.served_by, "lax-b");
    assert!(!reply.local);
    assert_eq!((a_c.runs(), b_c.runs()), (0, 1));

    // The chosen instance gone: an error at once, no other one tried.
    b.shutdown().await.unwrap();
    drop(b);
    let started = Instant::now();
    let error = caller
        .call_instance(
            addr,
            Echo("gone".into()),
            CallOptions::new().timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Transport { .. }),
        "unexpected error: {error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(a_c.runs(), 0, "no failover to a sibling");
}
