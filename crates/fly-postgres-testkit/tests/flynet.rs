//! The emulated Fly private network, checked from inside its machines with
//! a plain resolver: DNS answers each record type as Fly's does, over UDP
//! and TCP; machines reach each other over IPv6 only; a destroyed machine
//! leaves DNS; nothing the world made outlives it, also when a test panics.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use fly_postgres_testkit::flynet::DNS_ADDR;
use fly_postgres_testkit::{FlyMachine, FlyNet};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A resolver that asks only the network's DNS server, over `tcp` or UDP,
/// without caching (each lookup reaches the server).
fn resolver(tcp: bool) -> TokioResolver {
    let mut server = if tcp {
        NameServerConfig::tcp(IpAddr::V6(DNS_ADDR))
    } else {
        NameServerConfig::udp(IpAddr::V6(DNS_ADDR))
    };
    server.connections = vec![if tcp {
        ConnectionConfig::tcp()
    } else {
        ConnectionConfig::udp()
    }];
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.attempts = 1;
    options.timeout = Duration::from_secs(2);
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .expect("a resolver")
}

/// What `name` answers with for `kind`, asked from `machine`: addresses
/// or TXT strings, sorted; `None` for NXDOMAIN.
async fn ask(machine: &FlyMachine, name: &str, kind: RecordType, tcp: bool) -> Option<Vec<String>> {
    let name = name.to_owned();
    let asked = machine
        .spawn(async move { resolver(tcp).lookup(name.as_str(), kind).await })
        .unwrap()
        .await
        .unwrap();
    match asked {
        Ok(lookup) => {
            let mut found: Vec<String> = lookup
                .answers()
                .iter()
                .map(|r| match &r.data {
                    RData::AAAA(a) => a.0.to_string(),
                    RData::TXT(t) => t
                        .txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                    other => format!("unexpected {other:?}"),
                })
                .collect();
            found.sort();
            Some(found)
        }
        Err(e) if e.is_nx_domain() => None,
        Err(e) if e.is_no_records_found() => Some(Vec::new()),
        Err(e) => panic!("lookup failed: {e}"),
    }
}

fn ips(machines: &[&FlyMachine]) -> Vec<String> {
    let mut ips: Vec<String> = machines
        .iter()
        .map(|m| m.private_ip().to_string())
        .collect();
    ips.sort();
    ips
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn dns_answers_each_record_type_as_flys_does() {
    let Some(net) = FlyNet::start_or_skip("dns_answers_each_record_type_as_flys_does") else {
        return;
    };
    let syd1 = net.machine("todo", "syd").unwrap();
    let syd2 = net.machine("todo", "syd").unwrap();
    let lax = net.machine("todo", "lax").unwrap();
    let db = net.machine("todo-db", "syd").unwrap();
    let aaaa = RecordType::AAAA;
    for tcp in [false, true] {
        let all = ask(&lax, "todo.internal.", aaaa, tcp).await;
        assert_eq!(all, Some(ips(&[&syd1, &syd2, &lax])), "tcp: {tcp}");
        let syd = ask(&lax, "syd.todo.internal.", aaaa, tcp).await;
        assert_eq!(syd, Some(ips(&[&syd1, &syd2])));
        // Nearest is by the asker's region.
        let near = ask(&lax, "top1.nearest.of.todo.internal.", aaaa, tcp).await;
        assert_eq!(near, Some(ips(&[&lax])));
        let near = ask(&syd1, "top2.nearest.of.todo.internal.", aaaa, tcp).await;
        assert_eq!(near, Some(ips(&[&syd1, &syd2])));
        let vm = format!("{}.vm.todo.internal.", lax.id());
        assert_eq!(ask(&syd1, &vm, aaaa, tcp).await, Some(ips(&[&lax])));
        let regions = ask(&lax, "regions.todo.internal.", RecordType::TXT, tcp).await;
        assert_eq!(regions, Some(vec!["lax,syd".to_owned()]));
        let vms = ask(&lax, "vms.todo.internal.", RecordType::TXT, tcp)
            .await
            .unwrap();
        for m in [&syd1, &syd2, &lax] {
            assert!(
                vms[0].contains(&format!("{} {}", m.id(), m.region())),
                "{vms:?}"
            );
        }
        // The database app is its own.
        let db_near = ask(&lax, "top1.nearest.of.todo-db.internal.", aaaa, tcp).await;
        assert_eq!(db_near, Some(ips(&[&db])));
        // IPv6 only: an A query finds the name and no record.
        assert_eq!(
            ask(&lax, "syd.todo.internal.", RecordType::A, tcp).await,
            Some(vec![])
        );
        assert_eq!(ask(&lax, "fra.todo.internal.", aaaa, tcp).await, None);
        assert_eq!(ask(&lax, "nothing.internal.", aaaa, tcp).await, None);
    }

    // A stopped machine leaves the region's list; a destroyed one goes
    // altogether.
    syd2.set_listed(false);
    assert_eq!(
        ask(&lax, "syd.todo.internal.", aaaa, false).await,
        Some(ips(&[&syd1]))
    );
    let gone = format!("{}.vm.todo.internal.", syd1.id());
    drop(syd1);
    // No started machine in syd: the region's name is gone (NXDOMAIN).
    assert_eq!(ask(&lax, "syd.todo.internal.", aaaa, false).await, None);
    assert_eq!(ask(&lax, &gone, aaaa, false).await, None);
}

#[tokio::test]
async fn machines_talk_over_ipv6_only_and_nothing_is_left_after() {
    let Some(net) = FlyNet::start_or_skip("machines_talk_over_ipv6_only_and_nothing_is_left_after")
    else {
        return;
    };
    let prefix = net.namespace_prefix().to_owned();
    let syd = net.machine("todo", "syd").unwrap();
    let lax = net.machine("todo", "lax").unwrap();
    assert!(syd.private_ip().segments()[0] == 0xfdaa);
    assert!(
        syd.env()
            .contains(&("FLY_PRIVATE_IP", syd.private_ip().to_string()))
    );
    let addr = SocketAddr::from((syd.private_ip(), 5500));
    let server = syd
        .spawn(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let (mut stream, from) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(b"pong").await.unwrap();
            (buf, from.ip())
        })
        .unwrap();
    let lax_ip = lax.private_ip();
    let client = lax
        .spawn(async move {
            // The listener may not be bound yet.
            for _ in 0..50 {
                if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
                    stream.write_all(b"ping").await.unwrap();
                    let mut buf = [0u8; 4];
                    stream.read_exact(&mut buf).await.unwrap();
                    return buf;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("never connected to {addr}");
        })
        .unwrap();
    assert_eq!(&client.await.unwrap(), b"pong");
    let (said, from) = server.await.unwrap();
    assert_eq!(&said, b"ping");
    assert_eq!(from, IpAddr::V6(lax_ip));
    // No IPv4 between machines, and loopback of the host is not theirs.
    let v4 = lax
        .spawn(async {
            tokio::net::TcpStream::connect("10.0.0.1:5432")
                .await
                .is_ok()
        })
        .unwrap();
    assert!(!v4.await.unwrap());
    let host_loopback: Ipv6Addr = "::1".parse().unwrap();
    assert_ne!(lax.private_ip(), host_loopback);

    assert!(!namespaces_with(&prefix).is_empty());
    drop((syd, lax));
    drop(net);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_namespace_behind() {
    let Some(probe) = FlyNet::start_or_skip("a_test_that_panics_leaves_no_namespace_behind") else {
        return;
    };
    drop(probe);
    let prefix = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = std::sync::Arc::clone(&prefix);
    let panicked = tokio::spawn(async move {
        let net = FlyNet::start().unwrap();
        let _machine = net.machine("todo", "syd").unwrap();
        *seen.lock().unwrap() = net.namespace_prefix().to_owned();
        panic!("a test fails with the world up");
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let prefix = prefix.lock().unwrap().clone();
    assert!(!prefix.is_empty());
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}
