//! The HTTP wire format shared by the client and the server.

use serde::{Deserialize, Serialize};

/// Path prefix of every endpoint.
pub(crate) const CALL_PATH: &str = "/fly-rpc/v1/call/";
/// Several calls in one request (see `coalesce`).
pub(crate) const BATCH_PATH: &str = "/fly-rpc/v1/batch";
/// The introspection endpoint.
pub(crate) const INFO_PATH: &str = "/fly-rpc/v1/info";

pub(crate) const H_TIMESTAMP: &str = "x-fly-rpc-timestamp";
pub(crate) const H_REQUEST_ID: &str = "x-fly-rpc-request-id";
pub(crate) const H_SIGNATURE: &str = "x-fly-rpc-signature";
/// The SHA-256 of the body, signed: the MAC is checked from the headers.
pub(crate) const H_BODY_SHA256: &str = "x-fly-rpc-body-sha256";
pub(crate) const H_IDEMPOTENCY_KEY: &str = "x-fly-rpc-idempotency-key";
pub(crate) const H_CALLER_REGION: &str = "x-fly-rpc-caller-region";
pub(crate) const H_REQUIRE_PRIMARY: &str = "x-fly-rpc-require-primary";

/// Every non-200 answer carries one of these as its JSON body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct WireError {
    pub(crate) kind: WireErrorKind,
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) procedure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) procedures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireErrorKind {
    Unauthorized,
    UnknownProcedure,
    BadRequest,
    PayloadTooLarge,
    Remote,
    Panic,
    NotPrimary,
    Internal,
    /// The node could not take the request now (body budget, body read
    /// timeout); it did not run.
    Busy,
    /// A kind a newer version sends and this one does not know; never
    /// sent. Read as "may have run", the class that cannot mislead.
    #[serde(other)]
    Unknown,
}

impl WireError {
    pub(crate) fn new(kind: WireErrorKind, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
            procedure: None,
            version: None,
            procedures: None,
            payload: None,
        }
    }
}
