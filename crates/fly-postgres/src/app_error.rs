//! A mutation's own error, carried from the primary region intact.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// An error value of the app's own type that a mutation returned with
/// [`crate::Error::app`]; the caller decodes it back with
/// [`crate::Error::app_error`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppError {
    message: String,
    payload: serde_json::Value,
}

impl AppError {
    pub(crate) fn new<E: Serialize + Display>(error: &E) -> Self {
        AppError {
            message: error.to_string(),
            payload: serde_json::to_value(error).unwrap_or(serde_json::Value::Null),
        }
    }

    /// The error's `Display` text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The serialized error value.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// Decodes the value into the app's error type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        E::deserialize(&self.payload)
    }
}

impl Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
