//! Configuring a [`Repo`](super::Repo); [`startup`](super::startup) starts it.

use std::sync::Arc;
use std::time::Duration;

use fly_rpc::NodeBuilder;
use sqlx::PgPool;

use super::server_state::AfterCommit;
use super::{RepoConfig, WriteMode};
use crate::mutation::Mutation;

/// Settings of a [`Repo`](crate::Repo); every setter states its default.
pub struct RepoBuilder {
    pub(super) database_url: Option<String>,
    pub(super) pool: Option<PgPool>,
    pub(super) primary_url: Option<String>,
    pub(super) primary_pool: Option<PgPool>,
    pub(super) max_connections: u32,
    pub(super) node: Option<NodeBuilder>,
    pub(super) registrations: Vec<super::auto_mutation::MutationEntry>,
    pub(super) auto_register: bool,
    pub(super) config: RepoConfig,
    pub(super) name: String,
    pub(super) sweep_interval: Duration,
    pub(super) generated_retention: Option<Duration>,
    pub(super) after_commit: Option<AfterCommit>,
    pub(super) ad_hoc_statements: bool,
    pub(super) force_forward: Option<bool>,
    pub(super) share_polls: Option<bool>,
    pub(super) check_host: Option<bool>,
    pub(super) app_state: crate::app_state::AppState,
    pub(super) follow_primary: Option<bool>,
}

impl std::fmt::Debug for RepoBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoBuilder")
            .field("name", &self.name)
            .field("node", &self.node)
            .field("mutations", &self.registrations.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RepoBuilder {
    pub(super) fn new() -> Self {
        RepoBuilder {
            database_url: None,
            pool: None,
            primary_url: None,
            primary_pool: None,
            max_connections: 10,
            node: None,
            registrations: Vec::new(),
            auto_register: true,
            config: RepoConfig {
                rpc_timeout: Duration::from_secs(5),
                replication_timeout: Duration::from_secs(5),
                retention: Duration::from_secs(24 * 3600),
                write_mode: WriteMode::Forward,
                direct_fallback: false,
                force_forward: false,
                record_local_writes: false,
            },
            name: "default".into(),
            sweep_interval: Duration::from_secs(60),
            generated_retention: None,
            after_commit: None,
            ad_hoc_statements: false,
            follow_primary: None,
            force_forward: None,
            share_polls: None,
            check_host: None,
            app_state: Default::default(),
        }
    }

    /// A value [`Mutation::run`](crate::Mutation::run) reaches with [`crate::state`]`::<T>()` (a
    /// configuration, an HTTP client, a pool of another database), as a
    /// `Procedure` reaches its state. One value per type; register the same
    /// on every instance, since a write runs in the primary region.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.app_state.insert(Arc::new(value));
        self
    }

    /// Every write goes the forwarded way, also in the primary region
    /// (default: the environment's `FLY_POSTGRES_FORCE_FORWARD`, else
    /// false): its arguments serialized, the RPC handler run on those bytes
    /// in this process, its output serialized and decoded back, exactly as
    /// when a replica region forwards it; only the network is skipped. So an
    /// unregistered mutation, or arguments or an output that do not survive
    /// JSON, fail on a laptop and in CI instead of in the second region.
    /// Costs a few microseconds per write; meant for development and tests.
    pub fn force_forward(mut self, enabled: bool) -> Self {
        self.force_forward = Some(enabled);
        self
    }

    /// Whether this region's instances share one replay poller (default:
    /// the environment's `FLY_POSTGRES_SHARE_POLLS`, else true). Instances
    /// whose trackers reach the same server let the lowest RPC address
    /// among them poll it and ask that one over RPC, so the replica's load
    /// does not grow with the number of instances; any failure falls back
    /// to polling here at once. `false` (or `FLY_POSTGRES_SHARE_POLLS=0`)
    /// makes every instance poll on its own.
    pub fn share_replay_polls(mut self, enabled: bool) -> Self {
        self.share_polls = Some(enabled);
        self
    }

    /// Whether the start fails when the database host resolves to no
    /// address (default: the environment's
    /// `FLY_POSTGRES_CHECK_DATABASE_HOST`, else true). The name is looked
    /// up once, for up to 5 s; a name of nothing (a database app with no
    /// machine, a typo) is an [`Error::InvalidDatabaseUrl`](crate::Error::InvalidDatabaseUrl)
    /// naming the host tried, after the `DATABASE_URL` rewrite. A host that
    /// resolves but does not answer never fails the start. `false` starts
    /// regardless, every query failing until the name resolves.
    pub fn check_database_host(mut self, enabled: bool) -> Self {
        self.check_host = Some(enabled);
        self
    }

    /// Lets the primary move between regions (default: the environment's
    /// `FLY_POSTGRES_FOLLOW_PRIMARY`, else false). `PRIMARY_REGION` is then
    /// where writes go first: an instance whose local database is out of
    /// recovery runs writes itself, and when the hinted region's instances
    /// all answer "not primary", a write is offered to the other regions
    /// discovery knows (same request id, so it commits once) and the region
    /// that takes it is where writes go from then on
    /// ([`Repo::primary_region`](crate::Repo::primary_region), [`Repo::is_primary`](crate::Repo::is_primary)), with no redeploy.
    pub fn follow_primary(mut self, enabled: bool) -> Self {
        self.follow_primary = Some(enabled);
        self
    }

    /// The local database's URL (already rewritten for this region, see
    /// [`crate::database_url_from_env`]). Required unless [`RepoBuilder::pool`].
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Use this pool for the local database instead of opening one.
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The primary's URL, for writes that go straight to it over
    /// PostgreSQL ([`WriteMode::Direct`](crate::WriteMode::Direct), [`RepoBuilder::direct_fallback`]);
    /// on Fly, the app's `DATABASE_URL` with port 5432, which always reaches
    /// the leader. Opened lazily, with [`crate::pool_options`] and
    /// [`RepoBuilder::max_connections`].
    pub fn primary_url(mut self, url: impl Into<String>) -> Self {
        self.primary_url = Some(url.into());
        self
    }

    /// Use this pool for direct writes to the primary instead of opening one.
    pub fn primary_pool(mut self, pool: PgPool) -> Self {
        self.primary_pool = Some(pool);
        self
    }

    /// How writes leave a replica region (default [`WriteMode::Forward`](crate::WriteMode::Forward)).
    /// [`WriteMode::Direct`](crate::WriteMode::Direct) needs [`RepoBuilder::primary_url`].
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.config.write_mode = mode;
        self
    }

    /// When a forwarded write finds no instance in the primary region that
    /// takes it before its RPC deadline, run it here directly on the
    /// primary over PostgreSQL, with the same request id, so a forwarded
    /// attempt that did commit is answered from its record, not run twice
    /// (default: false; per call: [`Write::direct_fallback`]). Needs
    /// [`RepoBuilder::primary_url`].
    ///
    /// [`Write::direct_fallback`]: super::Write::direct_fallback
    pub fn direct_fallback(mut self, enabled: bool) -> Self {
        self.config.direct_fallback = enabled;
        self
    }

    /// Size of the pool the repo opens (default 10; the other settings are
    /// [`crate::pool_options`]).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// The RPC node configuration (default: [`Node::from_env`](fly_rpc::Node::from_env) at start).
    /// Each repo of an app needs its own node, on its own port.
    pub fn node(mut self, node: NodeBuilder) -> Self {
        self.node = Some(node);
        self
    }

    /// Registers a mutation, so this instance serves it when it runs in the
    /// primary region and callers may write it.
    /// (`#[fly_postgres::mutation]` functions register themselves; this is
    /// for `impl Mutation` types.) Two types under one name are an error at
    /// [`RepoBuilder::start`].
    pub fn mutation<M: Mutation>(mut self) -> Self {
        self.registrations
            .push(super::auto_mutation::MutationEntry::of::<M>());
        self
    }

    /// Whether the `#[fly_postgres::mutation]` functions linked into the
    /// program are served without a builder line (default: yes). Off, only
    /// [`RepoBuilder::mutation`]'s count: for a build that must lack some
    /// (a test of version skew).
    pub fn auto_register(mut self, enabled: bool) -> Self {
        self.auto_register = enabled;
        self
    }

    /// Deadline of a write's RPC phase, every retry included (default 5 s).
    /// A forwarded write is retried with the same request id until then,
    /// after any failure that can be transient (backoff 25 ms doubling to
    /// 500 ms); each attempt gets half of what is left, so a hung instance
    /// leaves time to try another.
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.config.rpc_timeout = timeout;
        self
    }

    /// How long a write waits for the local replica (default 5 s).
    pub fn replication_timeout(mut self, timeout: Duration) -> Self {
        self.config.replication_timeout = timeout;
        self
    }

    /// How long the exactly-once records of caller-chosen request ids
    /// ([`Write::request_id`](super::Write::request_id), an
    /// `Idempotency-Key`) are kept (default 24 h): a client may repeat a
    /// request that long. It must outlast every retry of a write: at least
    /// twice the RPC timeout, or `start` refuses.
    pub fn request_retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// How long the records of request ids the library generated are kept
    /// (default: four RPC timeouts, at least 10 minutes): only the retries
    /// of one call use them, so at 1,000 writes a second the table holds
    /// minutes of writes, not a day. At least twice the RPC timeout, or
    /// `start` refuses.
    pub fn generated_id_retention(mut self, retention: Duration) -> Self {
        self.generated_retention = Some(retention);
        self
    }

    /// Whether writes in the primary region under a generated request id
    /// keep an exactly-once record as forwarded writes do (default
    /// `false`). Without one, a write costs about what its bare
    /// transaction costs: the transaction's id is read before COMMIT, and
    /// if COMMIT's answer is lost the database is asked whether that
    /// transaction committed (see the [reliability
    /// guide](crate::guide::reliability)). Its id settles it in this
    /// process, and the id in its [`Error::MaybeCommitted`](crate::Error::MaybeCommitted)
    /// in any process; an id the caller chose always keeps a record.
    /// `true` records every write, so a bare generated id (from
    /// [`Write::id`](super::Write::id)) settles in any process too.
    pub fn record_local_writes(mut self, enabled: bool) -> Self {
        self.config.record_local_writes = enabled;
        self
    }

    /// How often expired records are swept in the primary region (default
    /// 60 s, at least 1 s). A sweep deletes in batches of at most 100
    /// rows with a pause between them, and one instance sweeps a database
    /// at a time (session advisory lock `7380407413031007095`, "flypg_sw";
    /// the others skip).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Whether this repo runs ad-hoc statements ([`Repo::execute`](crate::Repo::execute) and the
    /// `fetch_*` calls): its own, and those other regions forward to it
    /// (default: false). Off, it runs only the registered mutations, and
    /// ad-hoc statements fail with [`Error::AdHocStatementsDisabled`](crate::Error::AdHocStatementsDisabled)
    /// before anything runs. Turn it on in every region's repo, knowing
    /// what it grants: whoever holds the RPC secret can then run on the
    /// primary anything the app's database user may, not only the
    /// registered mutations.
    pub fn ad_hoc_statements(mut self, enabled: bool) -> Self {
        self.ad_hoc_statements = enabled;
        self
    }

    /// The `tracker` label of this repo's metrics (default `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Fault injection for tests: runs after a forwarded write committed and
    /// before its reply is sent (for example to cut the connection, as a
    /// crash at the worst moment would).
    #[doc(hidden)]
    pub fn after_commit_hook(mut self, hook: Arc<dyn Fn(&str) + Send + Sync>) -> Self {
        self.after_commit = Some(hook);
        self
    }
}
