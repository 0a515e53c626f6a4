//! The node's own limits against slow or forged requests (TLS: `tls.rs`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use fly_rpc::StaticPeers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/fly-rpc/v1/call/echo";

/// Reads until the server closes the connection; how long that took.
async fn closed_within(mut stream: TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn idle_and_slowloris_connections_are_closed_by_the_timeouts() {
    let syd = start(
        node("syd", "syd", &Counters::named("syd"))
            .header_read_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_millis(500)),
        StaticPeers::new(),
    )
    .await;
    let addr = syd.local_addr().expect("rpc listener");

    // Connects and says nothing.
    let idle = TcpStream::connect(addr).await.unwrap();
    closed_within(idle, Duration::from_secs(3)).await;

    // HTTP/1.1 headers one byte at a time.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for byte in b"POST /fly-rpc/v1/call/echo HTTP/1.1\r\nHost: x\r\nx-pad: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), trickle)
        .await
        .expect("a slowloris connection stayed open")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));

    // HTTP/2 preface, then silence.
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_within(h2, Duration::from_secs(3)).await;

    // A legitimate caller is unaffected.
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    assert_eq!(
        lax.call_primary(Echo("hi".into())).await.unwrap().text,
        "hi"
    );
}

/// The head of a request for a body of `length` bytes `a`, signed with
/// `secret` (the cluster's, or a stranger's guess).
fn head(addr: SocketAddr, length: usize, secret: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let id = format!("{:032x}", rand_u128());
    let digest = hex::encode(Sha256::digest(vec![b'a'; length]));
    let target = addr.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    // The three optional fields, absent (`-`).
    for field in ["POST", PATH, &target, &ts, &id, &digest, "-", "-", "-"] {
        mac.update(field.as_bytes());
        mac.update(b"\n");
    }
    let sig = hex::encode(mac.finalize().into_bytes());
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {length}\r\n\
         x-fly-rpc-timestamp: {ts}\r\nx-fly-rpc-request-id: {id}\r\n\
         x-fly-rpc-body-sha256: {digest}\r\nx-fly-rpc-signature: {sig}\r\n\r\n"
    )
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(Instant::now());
    let b = RandomState::new().hash_one(a);
    (u128::from(a) << 64) | u128::from(b)
}

/// The body read deadline of the budget test's node.
const READ_DEADLINE: Duration = Duration::from_millis(400);

async fn status(stream: &mut TcpStream) -> u16 {
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn bodies_share_one_budget_and_a_read_deadline_and_strangers_get_none() {
    let syd = start(
        node("syd", "syd", &Counters::named("syd"))
            .max_body_bytes(64 * 1024)
            .body_budget_bytes(100 * 1024)
            .body_read_timeout(READ_DEADLINE),
        StaticPeers::new(),
    )
    .await;
    let addr = syd.local_addr().expect("rpc listener");
    // A stranger's request with a made-up signature is refused from its
    // headers: 401 at once, no body byte read, no budget taken.
    let mut stranger = TcpStream::connect(addr).await.unwrap();
    stranger
        .write_all(head(addr, 60 * 1024, "a guess, not the cluster secret").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(status(&mut stranger).await, 401);
    // Had its body been waited for, the answer would come at the read
    // deadline (400 ms) at the soonest.
    assert!(
        started.elapsed() < READ_DEADLINE,
        "not refused from its headers: {:?}",
        started.elapsed()
    );
    // Two signed bodies of 60 KiB that never finish (a stuck peer): the
    // first fits the budget, the second is refused at once with 503.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(head(addr, 60 * 1024, SECRET).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(head(addr, 60 * 1024, SECRET).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(status(&mut second).await, 503);
    assert!(
        started.elapsed() < READ_DEADLINE,
        "not refused before reading: {:?}",
        started.elapsed()
    );
    // The first times out (408) and its share of the budget comes back.
    assert_eq!(status(&mut first).await, 408);
    // Over the per-request limit: 413 before any body byte.
    let mut big = TcpStream::connect(addr).await.unwrap();
    big.write_all(head(addr, 65 * 1024, SECRET).as_bytes())
        .await
        .unwrap();
    assert_eq!(status(&mut big).await, 413);
    // A signed head with another body: the digest does not match, 401.
    let mut swapped = TcpStream::connect(addr).await.unwrap();
    swapped
        .write_all(format!("{}bbb", head(addr, 3, SECRET)).as_bytes())
        .await
        .unwrap();
    assert_eq!(status(&mut swapped).await, 401);
    // The budget is whole again: a signed call with a body works.
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    let text = "y".repeat(50 * 1024);
    assert_eq!(
        lax.call_primary(Echo(text.clone())).await.unwrap().text,
        text
    );
}
