//! `FlyDns` against a real DNS server on loopback (UDP), serving records the
//! test changes while nodes run.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use common::*;
use fly_rpc::{Discovery, FlyDns, StaticPeers};
use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, TXT};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

type Zone = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

/// A tiny authoritative DNS server: A/AAAA from `zone`, TXT for
/// `regions.<app>.internal.` listing the zone's regions. TTL 0 so changes
/// show at once (FlyDns still caches briefly).
async fn dns_server(zone: Zone, app: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new(
                query.metadata.id,
                MessageType::Response,
                query.metadata.op_code,
            );
            reply.metadata.authoritative = true;
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                let name = q.name().to_ascii().to_lowercase();
                let zone = zone.lock().unwrap();
                if q.query_type() == RecordType::TXT && name == format!("regions.{app}.internal.") {
                    let regions: Vec<String> = zone
                        .keys()
                        .filter_map(|k| {
                            k.strip_suffix(&format!(".{app}.internal."))
                                .map(str::to_owned)
                        })
                        .collect();
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        0,
                        RData::TXT(TXT::new(vec![regions.join(",")])),
                    ));
                    continue;
                }
                match zone.get(&name) {
                    None => {
                        reply.metadata.response_code = ResponseCode::NXDomain;
                    }
                    Some(ips) => {
                        for &ip in ips {
                            let rdata = match (ip, q.query_type()) {
                                (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                                _ => continue,
                            };
                            reply.add_answer(Record::from_rdata(q.name().clone(), 0, rdata));
                        }
                    }
                }
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    (addr, task)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test]
async fn resolves_regions_and_follows_instances_coming_and_going() {
    let zone: Zone = Arc::default();
    let (dns, server) = dns_server(Arc::clone(&zone), "myapp").await;

    // Two syd instances on two loopback addresses, same port (as on Fly,
    // where every instance listens on the same port).
    let first_c = Counters::named("syd-a");
    let first = start(
        node("syd", "syd", &first_c).listen(SocketAddr::new(ip(2), 0)),
        StaticPeers::new(),
    )
    .await;
    let port = first.local_addr().expect("rpc listener").port();
    let second_c = Counters::named("syd-b");
    let second = start(
        node("syd", "syd", &second_c).listen(SocketAddr::new(ip(3), port)),
        StaticPeers::new(),
    )
    .await;

    zone.lock()
        .unwrap()
        .insert("syd.myapp.internal.".into(), vec![ip(2)]);
    let discovery = FlyDns::with_nameserver("myapp", port, dns).unwrap();
    assert_eq!(
        discovery.instances("syd").await.unwrap(),
        vec![SocketAddr::new(ip(2), port)]
    );
    assert!(discovery.instances("fra").await.unwrap().is_empty());
    assert_eq!(discovery.regions().await.unwrap(), vec!["syd".to_owned()]);

    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        FlyDns::with_nameserver("myapp", port, dns).unwrap(),
    )
    .await;
    assert_eq!(
        lax.call_primary(Echo("1".into())).await.unwrap().served_by,
        "syd-a"
    );

    // A second instance appears in DNS: after the cache expires, calls reach it.
    zone.lock()
        .unwrap()
        .insert("syd.myapp.internal.".into(), vec![ip(2), ip(3)]);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let mut served = std::collections::HashSet::new();
    for i in 0..6 {
        served.insert(
            lax.call_primary(Echo(i.to_string()))
                .await
                .unwrap()
                .served_by,
        );
    }
    assert!(
        served.contains("syd-b"),
        "new instance never used: {served:?}"
    );

    // The first instance goes away (stopped, and removed from DNS): calls
    // fail over at once and keep working.
    first.shutdown().await.unwrap();
    zone.lock()
        .unwrap()
        .insert("syd.myapp.internal.".into(), vec![ip(3)]);
    for i in 0..6 {
        let reply = lax.call_primary(Echo(i.to_string())).await.unwrap();
        assert_eq!(reply.served_by, "syd-b");
    }

    // The DNS server goes away: after a failure expires the cached answer,
    // the last answer still serves instead of failing every call.
    server.abort();
    let _ = server.await;
    discovery.report_failure("syd", SocketAddr::new(ip(2), port));
    assert_eq!(
        discovery.instances("syd").await.unwrap(),
        vec![SocketAddr::new(ip(2), port)],
        "the last good answer is kept when DNS fails"
    );
    // A region never resolved has nothing to fall back on: a typed,
    // retryable discovery error.
    let err = discovery.instances("ams").await.unwrap_err();
    assert!(matches!(err, fly_rpc::Error::Discovery { .. }), "{err:?}");
    drop(second);
    let _ = second_c;
}
