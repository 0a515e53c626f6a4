//! Notes when a request head starts to arrive on an HTTP/1 connection
//! that has no request in flight, so a head that trickles can be cut off
//! at the header-read timeout, while an idle keep-alive connection is kept
//! for the whole idle timeout (hyper's own header-read timer counts idle
//! time as head time, and closing at it races clients that send just
//! then).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::table::{Conn, NO_HEAD, elapsed_ms};

/// The HTTP/2 connection preface: a connection that opens with it has no
/// heads to watch (its pings and settings arrive while idle).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `io`, noting on `conn` when a head begins.
pub(super) struct HeadWatch<I> {
    io: I,
    conn: Arc<Conn>,
    epoch: std::time::Instant,
    /// Bytes of the connection's start compared with the HTTP/2 preface so
    /// far; `None` once decided.
    preface_seen: Option<usize>,
    http2: bool,
}

impl<I> HeadWatch<I> {
    pub(super) fn new(io: I, conn: Arc<Conn>, epoch: std::time::Instant) -> Self {
        HeadWatch {
            io,
            conn,
            epoch,
            preface_seen: Some(0),
            http2: false,
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(seen) = self.preface_seen {
            let want = &H2_PREFACE[seen..];
            let n = want.len().min(bytes.len());
            if bytes[..n] != want[..n] {
                self.preface_seen = None;
            } else if seen + n == H2_PREFACE.len() {
                self.preface_seen = None;
                self.http2 = true;
                // Its first part may have looked like a head.
                self.conn.head_started.store(NO_HEAD, Ordering::Relaxed);
            } else {
                self.preface_seen = Some(seen + n);
            }
        }
        if self.http2 || self.conn.in_flight.load(Ordering::Relaxed) > 0 {
            return;
        }
        let _ = self.conn.head_started.compare_exchange(
            NO_HEAD,
            elapsed_ms(self.epoch),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadWatch<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            this.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadWatch<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
