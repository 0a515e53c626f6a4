//! Free TCP ports on loopback.

use std::net::SocketAddr;

use crate::error::{Result, TestkitError};

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it
/// before we bind it again, so servers retry on a bind failure.
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| TestkitError::io("binding a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading a bound port", e))?
        .port();
    Ok(port)
}

/// `n` distinct addresses on 127.0.0.1 that were free a moment ago, lowest
/// first (held open together while chosen, so no two are the same), for
/// app instances whose order by address matters, such as the instances
/// of a region electing the lowest as their replay poll leader.
pub fn free_loopback_addrs(n: usize) -> Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| TestkitError::io("binding a free port", e))?;
    let mut addrs = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| TestkitError::io("reading a bound port", e))?;
    addrs.sort();
    Ok(addrs)
}
