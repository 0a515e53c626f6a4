//! A procedure's own error, as carried back from the peer that ran it.

use std::fmt;

use serde::de::DeserializeOwned;

/// The error value a procedure's handler returned, kept as the JSON it was
/// serialized to, so the caller decodes it back into the procedure's own
/// error type instead of reading a string.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteError {
    procedure: String,
    message: String,
    payload: serde_json::Value,
}

impl RemoteError {
    pub(crate) fn new(procedure: String, message: String, payload: serde_json::Value) -> Self {
        RemoteError {
            procedure,
            message,
            payload,
        }
    }

    /// The procedure that returned it.
    pub fn procedure(&self) -> &str {
        &self.procedure
    }

    /// The error's `Display` text, as rendered where it happened.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The serialized error value.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// Decodes the error into the procedure's error type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        E::deserialize(&self.payload)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "procedure `{}` failed: {}", self.procedure, self.message)
    }
}

impl std::error::Error for RemoteError {}
