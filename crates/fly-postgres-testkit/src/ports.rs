//! Free TCP ports on loopback.

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
