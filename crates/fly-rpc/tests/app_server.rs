//! `serve_app`: an app's public port with the RPC port's connection
//! hygiene, and a shutdown that lets requests finish.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn get_root(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_shutdown_waits_for_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "hello" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }),
    );
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fly_rpc::serve_app(listener, app, async move {
        let _ = stopping.await;
    }));
    assert!(get_root(addr).await.ends_with("hello"));

    // Headers one byte at a time, forever: the server hangs up (its 5 s
    // header-read timeout, counted from the head's first byte), not the
    // client.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nx-pad: ".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            let mut buf = [0u8; 256];
            // A 408 answer or a close both end it.
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await
            {
                let _ = n;
                return;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(15), trickle)
        .await
        .expect("a slowloris connection stayed open")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(4));

    // A request in flight when the shutdown comes still gets its answer.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let mut answer = String::new();
    busy.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with("done"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_app returns once its requests are done")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn a_request_that_never_finishes_cannot_hold_the_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Reads the whole body: a client that trickles it holds the request.
    let app = Router::new().route("/", axum::routing::post(|body: String| async move { body }));
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    // A body deadline far past the grace: the grace alone must end it.
    let options = fly_rpc::AppServeOptions::default().body_deadline(Duration::from_secs(3600));
    let server = tokio::spawn(fly_rpc::serve_app_with(
        listener,
        app,
        async move {
            let _ = stopping.await;
        },
        options,
    ));
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        while slow.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(fly_rpc::DEFAULT_GRACE + Duration::from_secs(5), server)
        .await
        .expect("serve_app returns after its grace, whatever a client does")
        .unwrap()
        .unwrap();
    assert!(stopped_at.elapsed() >= fly_rpc::DEFAULT_GRACE - Duration::from_secs(1));
    // The trickling connection was closed with the server.
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("the held connection was closed")
        .unwrap();
}

/// One keep-alive request on `stream`: the answer's body, or why none came.
async fn keep_alive_get(stream: &mut TcpStream) -> Result<String, String> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"hello") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Err("closed before the answer".into()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => return Err("no answer".into()),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn keep_alive_connections_outlive_the_header_read_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "hello" }));
    let (_stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let _server = tokio::spawn(fly_rpc::serve_app(listener, app, async move {
        let _ = stopping.await;
    }));
    // 200 clients, each sending its second request on its kept-alive
    // connection around the 5 s header-read timeout (4.9 to 5.1 s after
    // its first answer), where hyper used to close idle connections: every
    // one is answered. A client pool idles out long before the server's
    // idle timeout (120 s), so it never sends on a connection being closed.
    let clients = (0..200u64).map(|i| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        keep_alive_get(&mut stream).await?;
        tokio::time::sleep(Duration::from_millis(4_900 + i)).await;
        keep_alive_get(&mut stream).await
    });
    let answers = futures_util::future::join_all(clients).await;
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|body| body.contains("200 OK")))
    );
}
