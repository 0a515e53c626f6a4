//! The RPC port's limits against strangers who hold connections or send
//! slowly; every one is a [`crate::NodeBuilder`] setting.

use std::time::Duration;

/// Connection and request limits of a node's server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections at most; past it the longest-idle one is closed to
    /// make room (or the new one refused if none is idle).
    pub(crate) max_connections: usize,
    /// Time to send a request's headers (HTTP/1.1) or finish the TLS
    /// handshake.
    pub(crate) header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub(crate) idle_timeout: Duration,
    /// A connection that has not delivered one complete request head this
    /// long after accept is closed: silent sockets, a lone HTTP/2 preface.
    pub(crate) first_request_timeout: Duration,
    /// How long a closed connection may take to wind down.
    pub(crate) close_grace: Duration,
    /// HTTP/2 pings: how often, and how long to wait for the answer.
    pub(crate) keep_alive_interval: Duration,
    pub(crate) keep_alive_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub(crate) max_concurrent_streams: u32,
    /// Time to receive a request body once its headers passed the checks.
    pub(crate) body_read_timeout: Duration,
    /// Body bytes being read or held, across all requests.
    pub(crate) body_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            first_request_timeout: Duration::from_secs(10),
            close_grace: Duration::from_secs(1),
            keep_alive_interval: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(10),
            max_concurrent_streams: RPC_MAX_CONCURRENT_STREAMS,
            body_read_timeout: Duration::from_secs(10),
            body_budget: 64 * 1024 * 1024,
        }
    }
}

/// Concurrent streams per connection on the RPC port. A stranger's stream
/// is refused from its headers, before its body is read, so it holds
/// little; a peer's are calls, and a busy replica region keeps hundreds of
/// writes in flight to the primary region on its one connection (at 128,
/// `flypg bench repo --no-proxy` measured forwarded writes at 0.68-0.74 of
/// local ones with 256 callers; at 512, 0.81-0.91).
pub(crate) const RPC_MAX_CONCURRENT_STREAMS: u32 = 512;

/// Concurrent streams per connection on an app's public port
/// ([`crate::serve_app`]), where each one runs a handler for anyone.
pub(crate) const APP_MAX_CONCURRENT_STREAMS: u32 = 128;

/// Half the process's file-descriptor limit (read at start), between 64 and
/// 16,384: the other half stays for database pools, peers and logs, so held
/// connections can never make `accept` fail.
pub(crate) fn default_max_connections() -> usize {
    #[cfg(unix)]
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    // No such limit to read: the default of most Unix shells.
    #[cfg(not(unix))]
    let soft: u64 = 1024;
    usize::try_from(soft / 2)
        .unwrap_or(16_384)
        .clamp(64, 16_384)
}
