//! The private network's DNS server, answering as Fly's does at `fdaa::3`:
//! built on hickory-proto's message types (the resolver's own, so queries
//! and answers are parsed and written by the same library the apps use),
//! serving UDP and TCP on port 53 from its own namespace.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{AAAA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// One machine as DNS lists it.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) app: String,
    pub(crate) region: String,
    pub(crate) id: String,
    pub(crate) addr: Ipv6Addr,
    /// Started machines are listed; a stopped one keeps only its
    /// `<id>.vm.<app>.internal` name.
    pub(crate) started: bool,
}

/// The records the server answers from; changed as machines start, stop
/// and go.
#[derive(Debug)]
pub(crate) struct Zone {
    pub(crate) listings: Vec<Listing>,
    /// The TTL of every answer, so a caller can hold a stale one.
    pub(crate) ttl: u32,
    /// While true, queries get no answer at all (a DNS server that is
    /// down or unreachable).
    pub(crate) silent: bool,
}

pub(crate) type SharedZone = Arc<Mutex<Zone>>;

/// Serves `zone` on UDP and TCP at `addr` until the runtime it runs on
/// stops. The sockets are bound before this returns (by the caller's
/// thread, inside the DNS namespace).
pub(crate) async fn serve(zone: SharedZone, addr: SocketAddr) -> std::io::Result<()> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    tokio::spawn(serve_udp(udp, Arc::clone(&zone)));
    tokio::spawn(serve_tcp(tcp, zone));
    Ok(())
}

async fn serve_udp(socket: UdpSocket, zone: SharedZone) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        if let Some(reply) = reply(&zone, &buf[..n], from.ip()) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: SharedZone) {
    loop {
        let Ok((mut stream, from)) = listener.accept().await else {
            return;
        };
        let zone = Arc::clone(&zone);
        tokio::spawn(async move {
            // Two-byte length, then the message (RFC 1035 4.2.2).
            loop {
                let Ok(len) = stream.read_u16().await else {
                    return;
                };
                let mut query = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(answer) = reply(&zone, &query, from.ip()) else {
                    return;
                };
                let Ok(len) = u16::try_from(answer.len()) else {
                    return;
                };
                if stream.write_u16(len).await.is_err() || stream.write_all(&answer).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The answer to one query message, or nothing for bytes that are no query.
fn reply(zone: &SharedZone, query: &[u8], from: IpAddr) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    if zone.lock().unwrap_or_else(PoisonError::into_inner).silent {
        return None;
    }
    let mut reply = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    reply.metadata.authoritative = true;
    reply.metadata.recursion_available = true;
    let zone = zone.lock().unwrap_or_else(PoisonError::into_inner);
    for q in &query.queries {
        reply.add_query(q.clone());
        match answers(&zone, q.name(), q.query_type(), from) {
            Some(records) => {
                for record in records {
                    reply.add_answer(record);
                }
            }
            None => reply.metadata.response_code = ResponseCode::NXDomain,
        }
    }
    reply.to_vec().ok()
}

/// The records for one question; `None` for a name that does not exist.
fn answers(zone: &Zone, name: &Name, kind: RecordType, from: IpAddr) -> Option<Vec<Record>> {
    let text = name.to_ascii().to_ascii_lowercase();
    let text = text.trim_end_matches('.');
    let (label, app) = split_internal(zone, text)?;
    let started = |l: &&Listing| l.app == app && l.started;
    let listed: Vec<&Listing> = zone.listings.iter().filter(started).collect();
    let aaaa = |addrs: Vec<Ipv6Addr>| {
        let records = addrs
            .into_iter()
            .filter(|_| kind == RecordType::AAAA)
            .map(|a| Record::from_rdata(name.clone(), zone.ttl, RData::AAAA(AAAA(a))))
            .collect();
        Some(records)
    };
    let txt = |text: String| {
        let records = (kind == RecordType::TXT)
            .then(|| Record::from_rdata(name.clone(), zone.ttl, RData::TXT(TXT::new(vec![text]))))
            .into_iter()
            .collect();
        Some(records)
    };
    match label.as_str() {
        "" => aaaa(listed.iter().map(|l| l.addr).collect()),
        "regions" => txt(regions(&listed).join(",")),
        "vms" => txt(listed
            .iter()
            .map(|l| format!("{} {}", l.id, l.region))
            .collect::<Vec<_>>()
            .join(",")),
        label => {
            if let Some(id) = label.strip_suffix(".vm") {
                let machine = zone.listings.iter().find(|l| l.app == app && l.id == id)?;
                return aaaa(vec![machine.addr]);
            }
            if let Some(n) = label
                .strip_prefix("top")
                .and_then(|rest| rest.strip_suffix(".nearest.of"))
            {
                let n: usize = n.parse().ok()?;
                return aaaa(nearest(zone, &listed, from, n));
            }
            if regions(&listed).iter().any(|r| r == label) {
                return aaaa(
                    listed
                        .iter()
                        .filter(|l| l.region == label)
                        .map(|l| l.addr)
                        .collect(),
                );
            }
            None
        }
    }
}

/// `(<label>, <app>)` of `<label>.<app>.internal` (label empty for
/// `<app>.internal`), for an app the zone knows.
fn split_internal(zone: &Zone, name: &str) -> Option<(String, String)> {
    let rest = name.strip_suffix(".internal")?;
    let mut apps: Vec<&str> = zone.listings.iter().map(|l| l.app.as_str()).collect();
    // The longest app name first, so `db` does not claim `x.my-db`.
    apps.sort_by_key(|a| std::cmp::Reverse(a.len()));
    apps.into_iter().find_map(|app| {
        if rest == app {
            return Some((String::new(), app.to_owned()));
        }
        rest.strip_suffix(app)
            .and_then(|label| label.strip_suffix('.'))
            .map(|label| (label.to_owned(), app.to_owned()))
    })
}

fn regions(listed: &[&Listing]) -> Vec<String> {
    let mut regions: Vec<String> = listed.iter().map(|l| l.region.clone()).collect();
    regions.sort();
    regions.dedup();
    regions
}

/// The `n` nearest of `listed` to the asker: its own region's first.
fn nearest(zone: &Zone, listed: &[&Listing], from: IpAddr, n: usize) -> Vec<Ipv6Addr> {
    let home = zone
        .listings
        .iter()
        .find(|l| IpAddr::V6(l.addr) == from)
        .map(|l| l.region.clone());
    let mut ordered: Vec<&&Listing> = listed.iter().collect();
    ordered.sort_by_key(|l| {
        (
            Some(&l.region) != home.as_ref(),
            l.region.clone(),
            l.id.clone(),
        )
    });
    ordered.into_iter().take(n).map(|l| l.addr).collect()
}
