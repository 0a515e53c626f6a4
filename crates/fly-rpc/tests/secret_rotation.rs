//! Rotating the cluster secret in three deploys without a failed call,
//! whichever way calls go: previous secrets verify, only the current one
//! signs.

mod common;

use std::sync::Arc;

use common::*;
use fly_rpc::{Error, Node, NodeBuilder, Regions, StaticPeers};

const OLD: &str = "the old cluster secret, 16+ bytes";
const NEW: &str = "the new cluster secret, 16+ bytes";

/// A node's secrets: the current one, and the previous ones that still verify.
type Secrets<'a> = (&'a str, &'a [&'a str]);

fn bare(region: &str, counters: &Arc<Counters>) -> NodeBuilder {
    Node::builder()
        .regions(Regions::new(region, "syd"))
        .listen("127.0.0.1:0".parse().unwrap())
        .procedure::<Echo>(Arc::clone(counters))
}

/// One instance in syd and one in lax, each with `(current, previous)`;
/// lax knows syd and syd knows lax. Calls both ways; returns the results.
async fn both_ways(
    syd: (&str, &[&str]),
    lax: (&str, &[&str]),
) -> (Result<(), Error>, Result<(), Error>) {
    let with = |builder: NodeBuilder, (current, previous): (&str, &[&str])| {
        previous
            .iter()
            .fold(builder.secret(current), |b, p| b.previous_secret(p))
    };
    let syd_node = with(bare("syd", &Counters::named("syd")), syd)
        .start()
        .await
        .unwrap();
    let lax_node = with(bare("lax", &Counters::named("lax")), lax)
        .discovery(StaticPeers::new().with("syd", syd_node.local_addr().expect("rpc listener")))
        .start()
        .await
        .unwrap();
    // syd calls lax through a third node with syd's secrets (a node's
    // discovery is fixed at start).
    let syd_caller = with(bare("syd", &Counters::named("syd-2")), syd)
        .discovery(StaticPeers::new().with("lax", lax_node.local_addr().expect("rpc listener")))
        .start()
        .await
        .unwrap();
    let to_syd = lax_node.call_primary(Echo("x".into())).await.map(drop);
    let to_lax = syd_caller
        .call_region("lax", Echo("y".into()))
        .await
        .map(drop);
    (to_syd, to_lax)
}

#[tokio::test]
async fn the_three_deploy_rotation_never_fails_a_call() {
    // Each stage is a moment of a rolling deploy: the two instances run
    // neighbouring configurations.
    let stages: [(Secrets<'_>, Secrets<'_>); 6] = [
        // Deploy 1: the new secret is added as previous, one instance first.
        ((OLD, &[NEW]), (OLD, &[])),
        ((OLD, &[NEW]), (OLD, &[NEW])),
        // Deploy 2: the new secret signs, the old one only verifies.
        ((NEW, &[OLD]), (OLD, &[NEW])),
        ((NEW, &[OLD]), (NEW, &[OLD])),
        // Deploy 3: the old secret is removed.
        ((NEW, &[]), (NEW, &[OLD])),
        ((NEW, &[]), (NEW, &[])),
    ];
    for (i, (syd, lax)) in stages.into_iter().enumerate() {
        let (to_syd, to_lax) = both_ways(syd, lax).await;
        assert!(to_syd.is_ok(), "stage {i}, lax -> syd: {to_syd:?}");
        assert!(to_lax.is_ok(), "stage {i}, syd -> lax: {to_lax:?}");
    }
}

#[tokio::test]
async fn an_old_signature_is_refused_once_the_old_secret_is_removed() {
    // While listed as previous, a call signed with it is accepted...
    let (to_syd, _) = both_ways((NEW, &[OLD]), (OLD, &[])).await;
    to_syd.unwrap();
    // ...and once it is gone, refused: 401, the handler did not run.
    let (to_syd, _) = both_ways((NEW, &[]), (OLD, &[])).await;
    assert!(
        matches!(to_syd, Err(Error::Unauthorized { .. })),
        "{to_syd:?}"
    );
}

#[tokio::test]
async fn previous_secrets_are_checked_at_start() {
    let err = bare("syd", &Counters::named("syd"))
        .secret(NEW)
        .previous_secret(OLD)
        .previous_secret("short")
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("#2") && m.contains("16 bytes")),
        "{err:?}"
    );
    let err = bare("syd", &Counters::named("syd"))
        .previous_secret(OLD)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("FLY_RPC_SECRET")),
        "{err:?}"
    );
}
