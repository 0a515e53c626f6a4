//! The crate's one error type.

use std::net::SocketAddr;
use std::time::Duration;

use crate::remote_error::RemoteError;

/// Everything a call or a node can fail with. Match on the variant; new
/// variants may be added in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call did not finish within its timeout. When `sent`, it may or may
    /// not have run on the peer; otherwise no request had left this node.
    #[error("call to `{procedure}` in region {region} timed out after {after:?}{}",
        if *sent { " (it may have run)" } else { " (nothing was sent)" })]
    Timeout {
        /// The procedure's name.
        procedure: &'static str,
        /// The target region.
        region: String,
        /// The timeout that expired.
        after: Duration,
        /// Whether a request may have reached a peer before it expired.
        sent: bool,
    },

    /// Discovery found no instance in the region, or every one failed or
    /// answered that it cannot serve the call. When `sent` is above zero, a
    /// connection broke after a request went out: the call may have run.
    #[error("no reachable instance in region {region} ({tried} tried{}){}",
        if *sent > 0 { format!(", {sent} may have received the call") } else { String::new() },
        last_error.as_deref().map(|e| format!("; last: {e}")).unwrap_or_default())]
    NoNodeInRegion {
        /// The target region.
        region: String,
        /// How many instances were tried.
        tried: usize,
        /// How many of them may have received the request before failing.
        sent: usize,
        /// What the last one failed with, if one was tried.
        last_error: Option<String>,
    },

    /// The peer rejected the call's authentication (missing or wrong MAC,
    /// stale timestamp, replayed request id). The handler did not run.
    #[error("peer {peer} rejected the call as unauthorized: {reason}")]
    Unauthorized {
        /// The peer that answered.
        peer: SocketAddr,
        /// The peer's reason.
        reason: String,
    },

    /// The peer does not know this procedure: most often version skew during
    /// a deploy (the Elixir library's "Where did my function go?"). It ran
    /// nothing. A remote call gets this only once every instance of the
    /// region said so until the call's deadline; `peer_version` lists the
    /// versions that answered.
    #[error(
        "peer {peer} (version {peer_version}) has no procedure `{name}`{}",
        if peer_procedures.is_empty() { String::new() } else { format!("; it serves: {}", peer_procedures.join(", ")) }
    )]
    UnknownProcedure {
        /// The procedure asked for.
        name: String,
        /// The peer that answered (the local node for a local call).
        peer: String,
        /// The peer's build version.
        peer_version: String,
        /// The procedures the peer does serve.
        peer_procedures: Vec<String>,
    },

    /// The peer could not accept the request: its body was too large or could
    /// not be decoded as the procedure's arguments.
    #[error("peer {peer} rejected the request ({status}): {message}")]
    BadRequest {
        /// The peer that answered.
        peer: String,
        /// The HTTP status (400 or 413).
        status: u16,
        /// The peer's explanation, such as the decode error.
        message: String,
    },

    /// The procedure ran and returned its own error, carried back intact.
    #[error(transparent)]
    Remote(RemoteError),

    /// The procedure's handler panicked on the peer; the peer keeps serving.
    #[error("procedure `{procedure}` panicked on {peer}")]
    HandlerPanicked {
        /// The procedure's name.
        procedure: String,
        /// The peer it ran on.
        peer: String,
    },

    /// The connection failed in a way that is not safe to retry elsewhere
    /// (the request may have reached the peer), or the peer's answer was
    /// malformed.
    #[error("transport error talking to {peer}: {message}")]
    Transport {
        /// The peer.
        peer: String,
        /// What went wrong.
        message: String,
    },

    /// The procedure ran and answered, but its output does not decode as
    /// the caller's `Output` type: a serde mismatch between two builds, or
    /// an output type that does not survive JSON (`#[serde(skip)]` fields,
    /// a NaN, a `Deserialize` that differs from its `Serialize`). It ran:
    /// calling again runs it again.
    #[error("`{procedure}` ran on {peer}, but its output does not decode: {message}")]
    UndecodableOutput {
        /// The procedure's name.
        procedure: String,
        /// The peer it ran on.
        peer: String,
        /// The serde error.
        message: String,
    },

    /// The peer could not take the request right now (too many request
    /// bodies in flight, or the body arrived too slowly). It did not run;
    /// worth retrying.
    #[error("peer {peer} is busy: {message}")]
    Busy {
        /// The peer that answered.
        peer: String,
        /// Its explanation.
        message: String,
    },

    /// Discovery could not list the region's instances (a DNS failure with no
    /// earlier answer to fall back on). Worth retrying.
    #[error("could not discover the instances of region {region}: {message}")]
    Discovery {
        /// The region looked up.
        region: String,
        /// What failed.
        message: String,
    },

    /// The node's configuration is incomplete or invalid.
    #[error("invalid fly-rpc configuration: {0}")]
    Config(String),

    /// Binding or serving the RPC endpoint failed.
    #[error("fly-rpc endpoint I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Encoding the arguments failed locally: nothing was sent.
    #[error("could not encode or decode `{procedure}`: {message}")]
    Codec {
        /// The procedure's name.
        procedure: &'static str,
        /// The serde error.
        message: String,
    },
}

impl Error {
    /// Whether the call may have run without a definite answer coming back:
    /// a timeout or a broken connection after the request left this node.
    /// `false` means it certainly did not run, or it ran and answered
    /// (successfully or with its own error).
    pub fn may_have_run(&self) -> bool {
        match self {
            Error::Timeout { sent, .. } => *sent,
            Error::NoNodeInRegion { sent, .. } => *sent > 0,
            Error::Transport { .. } | Error::HandlerPanicked { .. } => true,
            _ => false,
        }
    }

    /// A short, stable name of the variant, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Timeout { .. } => "timeout",
            Error::NoNodeInRegion { .. } => "no_node",
            Error::Unauthorized { .. } => "unauthorized",
            Error::UnknownProcedure { .. } => "unknown_procedure",
            Error::BadRequest { .. } => "bad_request",
            Error::Remote(_) => "remote",
            Error::HandlerPanicked { .. } => "panic",
            Error::Transport { .. } => "transport",
            Error::Busy { .. } => "busy",
            Error::Discovery { .. } => "discovery",
            Error::Config(_) => "config",
            Error::Io(_) => "io",
            Error::Codec { .. } => "codec",
            Error::UndecodableOutput { .. } => "undecodable_output",
        }
    }

    /// The procedure's own error, decoded as `E`, when this is
    /// [`Error::Remote`] and the payload has that shape.
    pub fn remote<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::Remote(remote) => remote.decode().ok(),
            _ => None,
        }
    }
}
