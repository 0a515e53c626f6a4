//! How an instance outside the primary region gets its writes to the
//! primary.

/// How an instance outside the primary region writes; set with
/// [`RepoBuilder::write_mode`](super::RepoBuilder::write_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteMode {
    /// One RPC to an instance in the primary region, which runs the
    /// mutation next to the primary (the default): one ocean crossing
    /// whatever the number of statements.
    #[default]
    Forward,
    /// The mutation runs here, in one transaction on the primary over
    /// PostgreSQL ([`RepoBuilder::primary_url`](super::RepoBuilder::primary_url)),
    /// with the same exactly-once record and the same wait for the local
    /// replica: for apps that run no instance in the primary region. Each
    /// statement crosses the ocean (BEGIN, the statements, then COMMIT with
    /// the record), so a 3-statement mutation costs several round trips.
    Direct,
}
