//! Mutations that register themselves: `#[fly_postgres::mutation]` submits
//! one [`AutoMutation`] per function, and every repo the program starts
//! serves them all, with no builder line to forget.

use std::sync::Arc;

use fly_rpc::NodeBuilder;

use super::server_state::ServerState;
use super::wire::Forwarded;
use crate::mutation::Mutation;

/// One mutation as the registry knows it: what `RepoBuilder::mutation`
/// records, and what `#[mutation]` submits.
#[derive(Clone, Copy)]
pub(crate) struct MutationEntry {
    pub(crate) name: &'static str,
    pub(crate) type_name: fn() -> &'static str,
    pub(crate) register: fn(NodeBuilder, &Arc<ServerState>) -> NodeBuilder,
}

impl MutationEntry {
    pub(crate) const fn of<M: Mutation>() -> Self {
        MutationEntry {
            name: M::NAME,
            type_name: std::any::type_name::<M>,
            register: register_forwarded::<M>,
        }
    }
}

fn register_forwarded<M: Mutation>(node: NodeBuilder, state: &Arc<ServerState>) -> NodeBuilder {
    node.procedure::<Forwarded<M>>(Arc::clone(state))
}

/// A mutation submitted by `#[fly_postgres::mutation]` (not for direct use).
#[doc(hidden)]
pub struct AutoMutation(pub(crate) MutationEntry);

impl AutoMutation {
    /// The submission of `M`.
    pub const fn of<M: Mutation>() -> Self {
        AutoMutation(MutationEntry::of::<M>())
    }
}

inventory::collect!(AutoMutation);

/// Every submitted mutation.
pub(crate) fn submitted() -> impl Iterator<Item = MutationEntry> {
    inventory::iter::<AutoMutation>
        .into_iter()
        .map(|auto| auto.0)
}

/// The mutations a repo serves: `explicit` ones, then the submitted ones;
/// the same type twice is one, two types under one name (or a name the
/// library uses itself) is an error naming both.
pub(crate) fn choose(
    explicit: Vec<MutationEntry>,
    auto: impl Iterator<Item = MutationEntry>,
    reserved: &[&str],
) -> Result<Vec<MutationEntry>, crate::Error> {
    let mut chosen: Vec<MutationEntry> = Vec::new();
    for entry in explicit.into_iter().chain(auto) {
        if reserved.contains(&entry.name) {
            return Err(crate::Error::Config(format!(
                "mutation `{}` uses the name `{}`, which fly-postgres uses itself; pick another",
                (entry.type_name)(),
                entry.name
            )));
        }
        match chosen.iter().find(|e| e.name == entry.name) {
            Some(seen) if (seen.type_name)() == (entry.type_name)() => {}
            Some(seen) => {
                return Err(crate::Error::Config(format!(
                    "two mutations share the name `{}`: `{}` and `{}`; a name must be unique \
                     (Mutation::NAME, or #[mutation(name = \"...\")])",
                    entry.name,
                    (seen.type_name)(),
                    (entry.type_name)()
                )));
            }
            None => chosen.push(entry),
        }
    }
    Ok(chosen)
}
