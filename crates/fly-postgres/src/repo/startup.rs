//! Starting a [`Repo`] from its [`RepoBuilder`]: pools, tracker, node and
//! the background tasks, one step per function.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use fly_rpc::{Node, NodeBuilder};
use futures_util::FutureExt;
use sqlx::PgPool;

use super::builder::RepoBuilder;
use super::primary_status::PrimaryStatus;
use super::server_state::{AfterCommit, Retention, ServerState};
use super::wire::Forwarded;
use super::{Repo, RepoInner, WriteMode, sweeper};
use crate::app_state::AppState;
use crate::error::Error;
use crate::mutation::Mutation;
use crate::statement::Statement;
use crate::tracker::Tracker;

impl RepoBuilder {
    /// Opens the pool, starts the tracker and the node. In the primary
    /// region it also checks that the database is out of recovery (an error
    /// is logged if not) and starts sweeping old exactly-once records.
    pub async fn start(mut self) -> Result<Repo, Error> {
        let retention = self.retention()?;
        let (pool, primary_pool) = self.pools()?;
        if self.checks_host() {
            super::database_host::check_resolves(&pool.connect_options()).await?;
        }
        let (follow, share_polls) = (self.follows_primary(), self.shares_polls());
        let mut config = self.config;
        config.force_forward = self.forces_forward();
        let app_state = Arc::new(self.app_state);
        let direct = primary_pool
            .map(|pool| server_state(pool, None, true, retention, Arc::clone(&app_state)));
        let (after_commit, ad_hoc) = (self.after_commit, self.ad_hoc_statements);
        let server = server_state(pool.clone(), after_commit, ad_hoc, retention, app_state);
        let tracker = Tracker::builder((*pool.connect_options()).clone())
            .label(self.name.clone())
            .start()?;
        let status = Arc::new(PrimaryStatus::new(pool.clone()));
        let registrations = Registrations {
            explicit: self.registrations,
            auto: self.auto_register,
        };
        let node = start_node(self.node, registrations, &server, &tracker, &status).await?;
        let regions = node.regions().clone();
        let sweeps = Arc::new(sweeper::SweepCounters::default());
        let sweeper = if regions.is_primary() {
            check_primary(&status, regions.my_region()).await;
            Some(sweeper::spawn(
                &pool,
                config.retention,
                self.sweep_interval,
                &sweeps,
            ))
        } else {
            None
        };
        // Only a node with a listener has siblings to share with; in the
        // primary region waits return at once.
        let poll_sharing = (share_polls && node.local_addr().is_some() && !regions.is_primary())
            .then(|| crate::shared_polls::spawn(tracker.sibling_link(), node.clone()));
        let follow =
            follow.then(|| super::primary_follower::PrimaryFollower::new(regions.primary_region()));
        let lag = if regions.is_primary() {
            None
        } else {
            Some(crate::replica_lag::LagMonitor::start(&pool.connect_options(), &self.name).await)
        };
        Ok(Repo {
            inner: Arc::new(RepoInner {
                registered: node.info().procedures.into_iter().collect(),
                token_keys: node.derive_keys(crate::consistency::token::KEY_CONTEXT),
                pool,
                tracker,
                node,
                regions,
                config,
                server,
                direct,
                follow,
                status,
                sweeper,
                poll_sharing,
                sweeps,
                counters: Default::default(),
                timelines: Default::default(),
                remote_positions: Default::default(),
                lag,
            }),
        })
    }

    fn forces_forward(&self) -> bool {
        (self.force_forward).unwrap_or_else(|| env_flag("FLY_POSTGRES_FORCE_FORWARD", false))
    }

    fn follows_primary(&self) -> bool {
        (self.follow_primary).unwrap_or_else(|| env_flag("FLY_POSTGRES_FOLLOW_PRIMARY", false))
    }

    fn checks_host(&self) -> bool {
        (self.check_host).unwrap_or_else(|| env_flag("FLY_POSTGRES_CHECK_DATABASE_HOST", true))
    }

    fn shares_polls(&self) -> bool {
        (self.share_polls).unwrap_or_else(|| env_flag("FLY_POSTGRES_SHARE_POLLS", true))
    }

    /// The local pool and, for direct writes, the primary's.
    fn pools(&mut self) -> Result<(PgPool, Option<PgPool>), Error> {
        let max = self.max_connections;
        let Some(pool) = open_pool(self.pool.take(), self.database_url.as_deref(), max, "")? else {
            return Err(Error::Config(
                "the repo needs a database: call database_url() or pool()".into(),
            ));
        };
        let primary = open_pool(
            self.primary_pool.take(),
            self.primary_url.as_deref(),
            max,
            "primary URL: ",
        )?;
        if primary.is_none()
            && (self.config.write_mode == WriteMode::Direct || self.config.direct_fallback)
        {
            return Err(Error::Config(
                "direct writes (write_mode(Direct) or direct_fallback(true)) need primary_url() or \
                 primary_pool()"
                    .into(),
            ));
        }
        Ok((pool, primary))
    }

    /// How long request records are kept; each must outlast a write's
    /// retries, or a late retry could run the write again.
    fn retention(&self) -> Result<Retention, Error> {
        let retry_span = self.config.rpc_timeout.saturating_mul(2);
        let generated = self.generated_retention.unwrap_or_else(|| {
            self.config
                .rpc_timeout
                .saturating_mul(4)
                .max(Duration::from_secs(600))
        });
        for (name, retention) in [
            ("request_retention", self.config.retention),
            ("generated_id_retention", generated),
        ] {
            if retention < retry_span {
                return Err(Error::Config(format!(
                    "{name} {retention:?} is shorter than a write's retries can take \
                     (twice the RPC timeout); use at least {retry_span:?}"
                )));
            }
        }
        Ok(Retention {
            chosen: self.config.retention,
            generated,
        })
    }
}

/// The pool given, or one opened lazily from the URL given (`None` when
/// neither was). `what` prefixes a URL's parse error.
fn open_pool(
    pool: Option<PgPool>,
    url: Option<&str>,
    max_connections: u32,
    what: &str,
) -> Result<Option<PgPool>, Error> {
    match (pool, url) {
        (Some(pool), _) => Ok(Some(pool)),
        (None, Some(url)) => {
            crate::database_url::parse(url)?;
            let options: sqlx::postgres::PgConnectOptions =
                url.parse().map_err(|e| Error::InvalidDatabaseUrl {
                    reason: format!("{what}{e}"),
                })?;
            Ok(Some(
                crate::pool_options::pool_options()
                    .max_connections(max_connections)
                    .connect_lazy_with(options),
            ))
        }
        (None, None) => Ok(None),
    }
}

/// What a write running next to the primary needs, for one pool.
fn server_state(
    pool: PgPool,
    after_commit: Option<AfterCommit>,
    ad_hoc_statements: bool,
    retention: Retention,
    app_state: Arc<AppState>,
) -> Arc<ServerState> {
    Arc::new(ServerState {
        positions: Default::default(),
        pool,
        served: AtomicU64::new(0),
        after_commit,
        async_commit: tokio::sync::OnceCell::new(),
        system_id: tokio::sync::OnceCell::new(),
        unrecorded: super::unrecorded::Unrecorded::new(retention.generated),
        ad_hoc_statements,
        retention,
        app_state,
    })
}

/// The mutations to serve: those registered by hand, and (unless turned
/// off) those the derive macro submitted.
struct Registrations {
    explicit: Vec<super::auto_mutation::MutationEntry>,
    auto: bool,
}

/// Starts the node with the library's own procedures and the app's
/// mutations.
async fn start_node(
    node: Option<NodeBuilder>,
    registrations: Registrations,
    server: &Arc<ServerState>,
    tracker: &Tracker,
    status: &Arc<PrimaryStatus>,
) -> Result<Node, Error> {
    let node = match node {
        Some(node) => node,
        None => Node::from_env().map_err(Error::from)?,
    };
    let check_status = Arc::clone(status);
    let mut node = node
        .procedure::<Forwarded<Statement>>(Arc::clone(server))
        .procedure::<super::positions::CurrentPosition>(Arc::clone(server))
        .procedure::<crate::shared_polls::ReplayAsk>(Arc::new(tracker.sibling_link()))
        .primary_check(Arc::new(move || {
            let status = Arc::clone(&check_status);
            async move { status.is_primary().await }.boxed()
        }));
    let auto: Vec<_> = if registrations.auto {
        super::auto_mutation::submitted().collect()
    } else {
        Vec::new()
    };
    let reserved = [
        <Statement as Mutation>::NAME,
        <super::positions::CurrentPosition as fly_rpc::Procedure>::NAME,
        <crate::shared_polls::ReplayAsk as fly_rpc::Procedure>::NAME,
    ];
    for entry in super::auto_mutation::choose(registrations.explicit, auto.into_iter(), &reserved)?
    {
        node = (entry.register)(node, server);
    }
    node.start().await.map_err(Error::from)
}

/// In the primary region the database must take writes: say so loudly if
/// it does not (writes here would fail).
async fn check_primary(status: &PrimaryStatus, region: &str) {
    if !status.is_primary().await {
        tracing::error!(
            region,
            "this instance is in the primary region, but its database is in recovery \
             (or unreachable): writes here will fail; check DATABASE_URL and PRIMARY_REGION"
        );
    }
}

/// A flag's value flips its default only when it clearly says so.
fn env_flag(name: &str, default: bool) -> bool {
    std::env::var(name).map_or(default, |v| match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => true,
        "0" | "false" | "no" => false,
        _ => default,
    })
}
