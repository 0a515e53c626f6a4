//! Guides, in the order a new user needs them. Every Rust block in them is
//! compiled, and most run, as a test of this crate.
//!
//! - [`existing_app`]: add the library to an axum + sqlx app that already
//!   has its pool, one step at a time.
//! - [`deploy_on_fly`]: each step of a deploy on Fly.io, what it does and
//!   what to check after it; running off Fly.
//! - [`consistency`]: the token, the read modes, timelines, bounded waits.
//! - [`reliability`]: the three outcomes of a write, settling "maybe
//!   committed", retries, rolling deploys, the fault drills.
//! - [`topologies`]: several regions and instances, a failover in the
//!   primary region, direct writes, a primary that moves.
//! - [`security`]: what the RPC secret grants, rotating it, what the ports
//!   do against strangers, TLS.
//! - [`operations`]: metrics, traces, logs, `Server-Timing`, status.
//! - [`testing`]: test an app against a real primary and replica.
//! - [`from_elixir`]: the Elixir library's API and this one, side by side.
//! - [`write_path`]: how a write travels through the code, hop by hop.
//!
//! Measured figures live in one place, `docs/performance.md` in the
//! repository, written by `flypg bench report`.

#[doc = include_str!("existing_app.md")]
pub mod existing_app {}

#[doc = include_str!("deploy_on_fly.md")]
pub mod deploy_on_fly {}

#[doc = include_str!("consistency.md")]
pub mod consistency {}

#[doc = include_str!("reliability.md")]
pub mod reliability {}

#[doc = include_str!("topologies.md")]
pub mod topologies {}

#[doc = include_str!("security.md")]
pub mod security {}

#[doc = include_str!("operations.md")]
pub mod operations {}

#[doc = include_str!("testing.md")]
pub mod testing {}

#[doc = include_str!("from_elixir.md")]
pub mod from_elixir {}

#[doc = include_str!("write_path.md")]
pub mod write_path {}
