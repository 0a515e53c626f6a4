//! fly-rpc on the emulated Fly private network (testkit's `FlyNet`): a call
//! from lax finds syd's instances through the network's DNS only
//! (`syd.<app>.internal`, no static peers) and travels IPv6 between
//! machine namespaces; a destroyed machine leaves DNS and its sibling takes
//! the calls; one gone but still listed costs a head start, not a connect
//! timeout; with none left the caller gets a typed error in time.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fly_postgres::fly_rpc::{self, CallContext, CallOptions, FlyDns, Node, Procedure, Regions};
use fly_postgres_testkit::{FlyMachine, FlyNet};
use serde::{Deserialize, Serialize};

const PORT: u16 = 7000;
const SECRET: &str = "a shared secret of 16+ bytes for the 6PN test";

/// Answers with the id of the machine that ran it.
#[derive(Serialize, Deserialize)]
struct WhichMachine;

impl Procedure for WhichMachine {
    const NAME: &'static str = "which_machine";
    type Output = String;
    type Error = String;
    type State = String;
    async fn run(self, id: Arc<String>, _: CallContext) -> Result<String, String> {
        Ok((*id).clone())
    }
}

/// The nodes' connect timeout: long, so a call that waited for one to pass
/// stands out from one that a head start spared it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A node started inside `machine`, listening on its 6PN address and
/// finding peers through the network's DNS.
async fn node_on(net: &FlyNet, machine: &FlyMachine) -> Node {
    let (ip, region, id) = (
        machine.private_ip(),
        machine.region().to_owned(),
        machine.id().to_owned(),
    );
    let dns = net.dns_addr();
    machine
        .spawn(async move {
            Node::builder()
                .regions(Regions::new(&region, "syd"))
                .listen(SocketAddr::from((ip, PORT)))
                .secret(SECRET)
                .connect_timeout(CONNECT_TIMEOUT)
                .discovery(FlyDns::with_nameserver("todo", PORT, dns).unwrap())
                .procedure::<WhichMachine>(Arc::new(id))
                .start()
                .await
                .unwrap()
        })
        .unwrap()
        .await
        .unwrap()
}

/// A call to syd made inside `machine` (its sockets are in its network).
async fn call_syd(
    machine: &FlyMachine,
    node: &Node,
    timeout: Duration,
) -> Result<String, fly_rpc::Error> {
    let node = node.clone();
    machine
        .spawn(async move {
            let options = CallOptions::new().timeout(timeout);
            node.call("syd", WhichMachine, options).await
        })
        .unwrap()
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_find_instances_through_dns_and_travel_the_ipv6_network() {
    let Some(net) =
        FlyNet::start_or_skip("calls_find_instances_through_dns_and_travel_the_ipv6_network")
    else {
        return;
    };
    net.set_dns_ttl(1);
    let syd_a = net.machine("todo", "syd").unwrap();
    let syd_b = net.machine("todo", "syd").unwrap();
    let lax = net.machine("todo", "lax").unwrap();
    let nodes = [node_on(&net, &syd_a).await, node_on(&net, &syd_b).await];
    let lax_node = node_on(&net, &lax).await;

    let mut answered = BTreeSet::new();
    for _ in 0..20 {
        let id = call_syd(&lax, &lax_node, Duration::from_secs(5))
            .await
            .unwrap();
        answered.insert(id);
    }
    let syd_ids: BTreeSet<String> = [syd_a.id().to_owned(), syd_b.id().to_owned()].into();
    assert!(answered.is_subset(&syd_ids), "{answered:?}");
    assert!(!answered.is_empty());

    // syd_a is destroyed: its records go, its address never answers again.
    let gone = syd_a.id().to_owned();
    drop(syd_a);
    // Past the TTL (and the resolver's cache), every call goes to syd_b.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..10 {
        let id = call_syd(&lax, &lax_node, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(id, syd_b.id(), "answered by {id} (destroyed: {gone})");
    }

    // None left in syd: a typed error, within the call's deadline.
    drop(syd_b);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let started = Instant::now();
    let error = call_syd(&lax, &lax_node, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, fly_rpc::Error::NoNodeInRegion { .. }),
        "expected NoNodeInRegion, got {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    drop(nodes);
}

#[tokio::test]
async fn a_silent_dns_holds_no_call_past_its_deadline_and_the_last_answer_serves() {
    let Some(net) = FlyNet::start_or_skip(
        "a_silent_dns_holds_no_call_past_its_deadline_and_the_last_answer_serves",
    ) else {
        return;
    };
    net.set_dns_ttl(1);
    let syd = net.machine("todo", "syd").unwrap();
    let lax = net.machine("todo", "lax").unwrap();
    let fra = net.machine("todo", "fra").unwrap();
    let _syd_node = node_on(&net, &syd).await;
    let lax_node = node_on(&net, &lax).await;
    let fra_node = node_on(&net, &fra).await;
    // lax has asked DNS once; fra never has.
    assert_eq!(
        call_syd(&lax, &lax_node, Duration::from_secs(5))
            .await
            .unwrap(),
        syd.id()
    );

    net.set_dns_silent(true);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // No answer for a caller that never had one: a typed error (nothing
    // was sent) at the call's deadline, not after the resolver's own
    // timeouts and attempts.
    let started = Instant::now();
    let error = call_syd(&fra, &fra_node, Duration::from_secs(1))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, fly_rpc::Error::Discovery { .. }),
        "expected Discovery, got {error:?}"
    );
    assert!(!error.may_have_run());
    assert!(took < Duration::from_secs(3), "the call took {took:?}");
    // A caller with an earlier answer keeps calling with it (its lookup
    // fails after the resolver's timeouts; the deadline leaves room).
    let id = call_syd(&lax, &lax_node, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(id, syd.id());

    // DNS back: fra finds syd.
    net.set_dns_silent(false);
    assert_eq!(
        call_syd(&fra, &fra_node, Duration::from_secs(5))
            .await
            .unwrap(),
        syd.id()
    );
}

#[tokio::test]
async fn a_machine_gone_but_still_listed_costs_a_head_start_not_a_connect_timeout() {
    let Some(net) = FlyNet::start_or_skip(
        "a_machine_gone_but_still_listed_costs_a_head_start_not_a_connect_timeout",
    ) else {
        return;
    };
    let syd_a = net.machine("todo", "syd").unwrap();
    let syd_b = net.machine("todo", "syd").unwrap();
    let lax = net.machine("todo", "lax").unwrap();
    let _nodes = [node_on(&net, &syd_a).await, node_on(&net, &syd_b).await];
    let lax_node = node_on(&net, &lax).await;
    let mut answered = BTreeSet::new();
    for _ in 0..6 {
        answered.insert(
            call_syd(&lax, &lax_node, Duration::from_secs(5))
                .await
                .unwrap(),
        );
    }
    assert_eq!(answered.len(), 2, "both syd machines answer: {answered:?}");

    // syd_a ends; its connections close, its address goes silent, and DNS
    // (TTL 5 s) still lists it.
    syd_a.vanish().unwrap();
    let mut took = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let id = call_syd(&lax, &lax_node, Duration::from_secs(5))
            .await
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(id, syd_b.id());
    }
    took.sort();
    let (median, worst) = (took[took.len() / 2], took[took.len() - 1]);
    eprintln!("gone but listed: median {median:?}, worst {worst:?}");
    // Without the head start the first call to syd_a waits out the whole
    // connect timeout (3 s) before syd_b gets it.
    assert!(
        worst < CONNECT_TIMEOUT / 3,
        "a call waited {worst:?} (median {median:?})"
    );
}
