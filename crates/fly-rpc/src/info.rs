//! What a node says about itself.

use serde::{Deserialize, Serialize};

/// A node's self-description, served by its (authenticated) info endpoint and
/// shown by `flypg status`: enough to diagnose version skew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's region.
    pub region: String,
    /// The primary region it believes in.
    pub primary_region: String,
    /// The app's build version the node reports.
    pub version: String,
    /// The procedures it serves, sorted.
    pub procedures: Vec<String>,
}
