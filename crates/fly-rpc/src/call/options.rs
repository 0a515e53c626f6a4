//! Per-call options.

use std::time::Duration;

/// Per-call options; the defaults come from the node.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub(super) timeout: Option<Duration>,
    pub(super) idempotency_key: Option<String>,
    pub(super) require_primary: bool,
    pub(super) through_wire: bool,
}

impl CallOptions {
    /// Options with the node's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole call's deadline, every failover included (default: the
    /// node's `rpc_timeout`, 5 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A key that stays the same across retries of one logical call. The
    /// handler sees it in [`CallContext::idempotency_key`]; a call that
    /// carries one is retried on another instance after a broken connection.
    ///
    /// [`CallContext::idempotency_key`]: crate::CallContext::idempotency_key
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Only an instance whose [`crate::PrimaryCheck`] passes may serve the
    /// call; others answer "not primary" and the next instance is tried. (A
    /// call to the node's own region runs locally, without the check.)
    pub fn require_primary(mut self) -> Self {
        self.require_primary = true;
        self
    }

    /// A call to the node's own region goes through the wire format, as a
    /// peer's would: the arguments serialized, the registered handler run
    /// on those bytes, its output or error serialized and decoded back.
    /// Only the network is skipped. For tests and development, so a type
    /// that does not survive JSON fails on a laptop, not in a second region.
    pub fn through_wire(mut self) -> Self {
        self.through_wire = true;
        self
    }
}
