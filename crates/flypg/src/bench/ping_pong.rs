//! A bare 1-byte TCP round trip through a latency proxy: what the proxy and
//! this machine charge for a round trip before any RPC code runs. The
//! baseline of `bench rpc` and part of `bench repo`'s machine floor.

use std::time::{Duration, Instant};

use fly_postgres_testkit::{Delay, LatencyProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type PingResult<T> = Result<T, Box<dyn std::error::Error>>;

/// An echo server behind a proxy with a given RTT, and one connection to it.
pub(crate) struct PingPong {
    stream: TcpStream,
    _proxy: LatencyProxy,
    echo: tokio::task::JoinHandle<()>,
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.echo.abort();
    }
}

impl PingPong {
    pub(crate) async fn start(rtt: Duration) -> PingResult<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let upstream = listener.local_addr()?;
        let echo = tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).await.is_ok() {
                    if stream.write_all(&byte).await.is_err() {
                        break;
                    }
                }
            }
        });
        let proxy = LatencyProxy::start(upstream, Delay::rtt(rtt)).await?;
        let stream = TcpStream::connect(proxy.local_addr()).await?;
        stream.set_nodelay(true)?;
        Ok(PingPong {
            stream,
            _proxy: proxy,
            echo,
        })
    }

    /// One round trip of one byte.
    pub(crate) async fn round_trip(&mut self) -> PingResult<Duration> {
        let started = Instant::now();
        let mut byte = [7u8; 1];
        self.stream.write_all(&byte).await?;
        self.stream.read_exact(&mut byte).await?;
        Ok(started.elapsed())
    }
}
