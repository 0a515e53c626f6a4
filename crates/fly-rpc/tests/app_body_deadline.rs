//! `serve_app`'s body deadline: a body that trickles in is answered 408 at
//! its deadline, however often its bytes come, and its connection closed,
//! while other clients are served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};

async fn echo(body: Bytes) -> Bytes {
    body
}

/// What arrives until the server closes the connection. A close with part
/// of the body unread may reach the client as a reset, after the answer.
async fn read_until_closed(reader: &mut OwnedReadHalf) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn post_at_once(addr: SocketAddr, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_trickling_body_is_answered_408_at_its_deadline_and_others_are_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/echo", post(echo));
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let options = fly_rpc::AppServeOptions::default().body_deadline(Duration::from_millis(500));
    let server = tokio::spawn(fly_rpc::serve_app_with(
        listener,
        app,
        async move {
            let _ = stopping.await;
        },
        options,
    ));

    // A byte every 50 ms of a 1,000-byte body: each one comes in time, the
    // whole would take 50 s.
    let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
    let started = Instant::now();
    writer
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Meanwhile, a client that sends its body at once is answered.
    let answer = post_at_once(addr, "hello").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");

    // Far sooner than the body would arrive; the deadline is what counts.
    let answer = tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut reader))
        .await
        .expect("the trickling request was neither answered nor closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // Not before the deadline, which started once the headers were in.
    assert!(started.elapsed() >= Duration::from_millis(450));
    trickle.abort();

    // A body that arrives whole is still answered afterwards.
    let answer = post_at_once(addr, "again").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    tokio::time::timeout(fly_rpc::DEFAULT_GRACE + Duration::from_secs(5), server)
        .await
        .expect("serve_app returns once stopped")
        .unwrap()
        .unwrap();
}

#[test]
fn the_default_deadline_is_ten_seconds() {
    assert_eq!(fly_rpc::DEFAULT_BODY_DEADLINE, Duration::from_secs(10));
}
