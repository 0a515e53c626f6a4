//! Connections that never deliver a request are closed within the
//! first-request timeout on both listeners (the RPC port and `serve_app`),
//! whether they send nothing, part of a head, or only an HTTP/2 preface,
//! while signed calls keep being answered.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use fly_rpc::StaticPeers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Opens a connection, sends `first`, and returns when the server closes it
/// (EOF or reset), with how long that took.
async fn closed_after(addr: SocketAddr, first: &'static [u8], limit: Duration) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    if !first.is_empty() {
        stream.write_all(first).await.unwrap();
    }
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("{addr}: still open after {limit:?} (sent {first:?})"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // An HTTP/2 server speaks first (its settings): keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// `serve_app` with a route that says hello, until [`ServedApp::stop`].
struct ServedApp {
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServedApp {
    async fn start() -> (SocketAddr, ServedApp) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(fly_rpc::serve_app(
            listener,
            axum::Router::new().route("/", axum::routing::get(|| async { "hello" })),
            async move {
                let _ = stopping.await;
            },
        ));
        (addr, ServedApp { stop, serving })
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.serving.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn silent_and_half_open_connections_are_closed_while_calls_answer() {
    let counters = Counters::named("syd");
    let syd = start(
        node("syd", "syd", &counters).first_request_timeout(Duration::from_millis(700)),
        StaticPeers::new(),
    )
    .await;
    let addr = syd.local_addr().expect("rpc listener");
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", addr),
    )
    .await;
    let mut probes = tokio::task::JoinSet::new();
    for i in 0..30 {
        let first: &'static [u8] = match i % 3 {
            0 => b"",
            1 => b"POST /fly-rpc/v1/call/echo HT",
            _ => H2_PREFACE,
        };
        probes.spawn(closed_after(addr, first, Duration::from_secs(5)));
    }
    // Signed calls answer meanwhile, and after the silent ones' deadline.
    lax.call_primary(Echo("during".into())).await.unwrap();
    while let Some(took) = probes.join_next().await {
        assert!(took.unwrap() >= Duration::from_millis(500));
    }
    lax.call_primary(Echo("after".into())).await.unwrap();
    assert_eq!(counters.runs(), 2);
}

#[tokio::test]
async fn both_listeners_close_a_silent_socket_within_ten_seconds_by_default() {
    let syd = start(
        node("syd", "syd", &Counters::named("syd")),
        StaticPeers::new(),
    )
    .await;
    let rpc = syd.local_addr().expect("rpc listener");
    let (app_addr, app) = ServedApp::start().await;
    let limit = Duration::from_secs(12);
    let (on_rpc, on_app, preface_on_app) = tokio::join!(
        closed_after(rpc, b"", limit),
        closed_after(app_addr, b"", limit),
        closed_after(app_addr, H2_PREFACE, limit),
    );
    for took in [on_rpc, on_app, preface_on_app] {
        assert!(took >= Duration::from_secs(9), "{took:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_connection_that_served_a_request_outlives_the_first_request_timeout() {
    let (addr, app) = ServedApp::start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let ask = async |stream: &mut TcpStream| {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // A request every 2 s on one keep-alive connection, past the 10 s a
    // silent socket gets.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let answer = ask(&mut stream).await;
        assert!(
            answer.ends_with("hello"),
            "cut after {:?}: {answer:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    app.stop().await;
}
