//! The endpoint spoken to as a stranger would: raw HTTP/1.1 over TCP.
//! Each bad request gets its status and the handler never runs.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use fly_rpc::{Node, StaticPeers};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/fly-rpc/v1/call/echo";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[allow(clippy::too_many_arguments)]
fn mac(
    secret: &str,
    method: &str,
    path: &str,
    target: &str,
    ts: &str,
    id: &str,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    let digest = sha256_hex(body);
    // Idempotency key, caller region, require-primary: all absent here,
    // which the canonical form writes as `-` (present: `+` and the value).
    for field in [method, path, target, ts, id, &digest, "-", "-", "-"] {
        mac.update(field.as_bytes());
        mac.update(b"\n");
    }
    hex::encode(mac.finalize().into_bytes())
}

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(body))
}

struct Req<'a> {
    path: &'a str,
    /// The `Host` the request names (and its MAC covers).
    target: String,
    /// The signed digest of the body (as signed, whatever the body is now).
    body_sha256: String,
    body: Vec<u8>,
    timestamp: u64,
    request_id: String,
    signature: Option<String>,
}

impl<'a> Req<'a> {
    fn signed(target: SocketAddr, path: &'a str, body: &[u8]) -> Self {
        let ts = now_ms();
        let id = format!("{:032x}", rand_id());
        let target = target.to_string();
        let sig = mac(SECRET, "POST", path, &target, &ts.to_string(), &id, body);
        Req {
            path,
            target,
            body_sha256: sha256_hex(body),
            body: body.to_vec(),
            timestamp: ts,
            request_id: id,
            signature: Some(sig),
        }
    }
}

fn rand_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    (u128::from(now_ms()) << 64) | u128::from(N.fetch_add(1, Ordering::Relaxed))
}

/// Sends one HTTP/1.1 request and returns (status, body).
async fn send(addr: SocketAddr, req: &Req<'_>) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nx-fly-rpc-timestamp: {}\r\nx-fly-rpc-request-id: {}\r\n\
         x-fly-rpc-body-sha256: {}\r\n",
        req.path,
        req.target,
        req.body.len(),
        req.timestamp,
        req.request_id,
        req.body_sha256
    );
    if let Some(sig) = &req.signature {
        head.push_str(&format!("x-fly-rpc-signature: {sig}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer 413 before reading the whole body.
    let _ = stream.write_all(&req.body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

async fn server() -> (Node, std::sync::Arc<Counters>) {
    let counters = Counters::named("syd");
    let node = start(
        node("syd", "syd", &counters).max_body_bytes(1024),
        StaticPeers::new(),
    )
    .await;
    (node, counters)
}

#[tokio::test]
async fn a_valid_request_over_http1_runs() {
    let (node, counters) = server().await;
    let (status, body) = send(
        node.local_addr().expect("rpc listener"),
        &Req::signed(
            node.local_addr().expect("rpc listener"),
            PATH,
            br#""hello""#,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["text"], "hello");
    assert_eq!(counters.runs(), 1);
}

#[tokio::test]
async fn missing_wrong_stale_and_replayed_macs_are_401_and_never_run() {
    let (node, counters) = server().await;
    let addr = node.local_addr().expect("rpc listener");

    let mut no_mac = Req::signed(addr, PATH, br#""x""#);
    no_mac.signature = None;
    let (status, body) = send(addr, &no_mac).await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );

    let mut wrong = Req::signed(addr, PATH, br#""x""#);
    wrong.signature = Some(mac(
        "some other secret 1234",
        "POST",
        PATH,
        &wrong.target,
        &wrong.timestamp.to_string(),
        &wrong.request_id,
        br#""x""#,
    ));
    assert_eq!(send(addr, &wrong).await.0, 401);

    let mut tampered = Req::signed(addr, PATH, br#""x""#);
    tampered.body = br#""y""#.to_vec();
    assert_eq!(send(addr, &tampered).await.0, 401);

    let stale_ts = now_ms() - 120_000;
    let id = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    let stale = Req {
        path: PATH,
        target: addr.to_string(),
        body_sha256: sha256_hex(br#""x""#),
        body: br#""x""#.to_vec(),
        timestamp: stale_ts,
        request_id: id.into(),
        signature: Some(mac(
            SECRET,
            "POST",
            PATH,
            &addr.to_string(),
            &stale_ts.to_string(),
            id,
            br#""x""#,
        )),
    };
    let (status, stale_body) = send(addr, &stale).await;
    assert_eq!(status, 401);
    // One generic answer for every reason: a stranger does not learn the
    // node's clock (the reason is in the metric and the log).
    assert_eq!(stale_body, body, "{stale_body}");
    assert_eq!(counters.runs(), 0, "a rejected request ran its handler");

    let once = Req::signed(addr, PATH, br#""x""#);
    assert_eq!(send(addr, &once).await.0, 200);
    let (status, replay_body) = send(addr, &once).await;
    assert_eq!(status, 401, "replayed request accepted");
    assert_eq!(replay_body, body);
    assert_eq!(counters.runs(), 1);
}

#[tokio::test]
async fn garbage_oversized_and_unknown_get_400_413_404() {
    let (node, counters) = server().await;
    let addr = node.local_addr().expect("rpc listener");

    let (status, body) = send(
        addr,
        &Req::signed(node.local_addr().expect("rpc listener"), PATH, b"{not json"),
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("do not decode"),
        "{body}"
    );

    let big = vec![b'a'; 4096];
    let (status, body) = send(
        addr,
        &Req::signed(node.local_addr().expect("rpc listener"), PATH, &big),
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    let unknown = "/fly-rpc/v1/call/drop_all_tables";
    let (status, body) = send(addr, &Req::signed(addr, unknown, b"{}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["kind"], "unknown_procedure");
    assert_eq!(body["procedure"], "drop_all_tables");
    assert_eq!(body["version"], "test-syd");

    // An unknown procedure without a valid MAC learns nothing.
    let mut unsigned = Req::signed(addr, unknown, b"{}");
    unsigned.signature = Some("00".repeat(32));
    let (status, body) = send(addr, &unsigned).await;
    assert_eq!(status, 401);
    assert!(body.get("procedures").is_none());
    assert_eq!(counters.runs(), 0);
}

#[tokio::test]
async fn an_oversized_call_is_a_typed_client_error() {
    let (node, counters) = server().await;
    let client = start(
        common::node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", node.local_addr().expect("rpc listener")),
    )
    .await;
    let err = client
        .call_primary(Echo("x".repeat(4096)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, fly_rpc::Error::BadRequest { status: 413, .. }),
        "{err:?}"
    );
    assert_eq!(counters.runs(), 0);
}

#[tokio::test]
async fn a_batch_is_authenticated_whole_and_checked_before_any_call_runs() {
    const BATCH: &str = "/fly-rpc/v1/batch";
    let (node, counters) = server().await;
    let addr = node.local_addr().expect("rpc listener");
    // One well-formed echo, then an item cut short.
    let meta = br#"{"procedure":"echo"}"#;
    let args = br#""hi""#;
    let mut body = Vec::new();
    body.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    body.extend_from_slice(meta);
    body.extend_from_slice(&(args.len() as u32).to_be_bytes());
    body.extend_from_slice(args);
    let whole = body.clone();
    body.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    body.extend_from_slice(&meta[..3]);

    let mut unsigned = Req::signed(addr, BATCH, &whole);
    unsigned.signature = None;
    let (status, answer) = send(addr, &unsigned).await;
    assert_eq!(status, 401, "{answer}");

    let (status, answer) = send(addr, &Req::signed(addr, BATCH, &body)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["kind"], "bad_request");
    assert!(
        answer["message"].as_str().unwrap().contains("cut short"),
        "{answer}"
    );
    assert_eq!(counters.runs(), 0, "the batch's first call ran");

    // A header the batch request itself must carry cannot ride in an item.
    let forged = br#"{"procedure":"echo","headers":[["x-fly-rpc-caller-region","syd"]]}"#;
    let mut body = Vec::new();
    body.extend_from_slice(&(forged.len() as u32).to_be_bytes());
    body.extend_from_slice(forged);
    body.extend_from_slice(&(args.len() as u32).to_be_bytes());
    body.extend_from_slice(args);
    let (status, answer) = send(addr, &Req::signed(addr, BATCH, &body)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(counters.runs(), 0);
}
