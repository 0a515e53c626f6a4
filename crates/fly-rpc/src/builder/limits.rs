//! The [`NodeBuilder`] settings that bound what callers, trusted or not,
//! can hold of the server: connections, time and body memory.

use std::time::Duration;

use super::NodeBuilder;

impl NodeBuilder {
    /// Largest request body served, and response body read (default 8 MiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body = limit;
        self
    }

    /// Open connections at most (default: half the process's file
    /// descriptor limit at start, between 64 and 16,384). Past it the
    /// longest-idle connection is closed to make room; a new one is refused
    /// only if every open one is busy.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// How long a client may take to send a request's headers, from their
    /// first byte (HTTP/1.1), or finish the TLS handshake (default 5 s). A
    /// keep-alive connection waiting for its next request is idle, not
    /// slow: [`idle_timeout`](Self::idle_timeout) governs it.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// A connection with no request in flight for this long is closed
    /// (default 120 s; callers' pooled connections idle out at 90 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// How long after accept a connection may take to deliver its first
    /// complete request head (default 10 s); a silent socket, a partial
    /// head or a lone HTTP/2 preface is closed then. Connections that have
    /// served a request are governed by the idle timeout instead.
    pub fn first_request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.first_request_timeout = timeout;
        self
    }

    /// How long a request body may take to arrive once its headers passed
    /// the auth checks (default 10 s); slower is HTTP 408.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_read_timeout = timeout;
        self
    }

    /// Request body bytes being read or handled at once, across all
    /// connections (default 64 MiB); a request that does not fit is HTTP 503
    /// at once, before its body is read.
    pub fn body_budget_bytes(mut self, bytes: usize) -> Self {
        self.limits.body_budget = bytes;
        self
    }

    /// Concurrent HTTP/2 streams per connection (default 512): calls from
    /// one peer past it wait for a stream on the caller's side.
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.limits.max_concurrent_streams = n.max(1);
        self
    }
}
