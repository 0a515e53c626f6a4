//! Region identity and typed procedure calls between the instances of an app
//! that runs in several regions: the Rust successor of Fly.io's `fly_rpc`.
//!
//! ```
//! let regions = fly_rpc::Regions::new("lax", "syd");
//! if !regions.is_primary() {
//!     println!("writes from {} go to {}", regions.my_region(), regions.primary_region());
//! }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod regions;

pub use regions::{DEFAULT_REGION, Regions};
