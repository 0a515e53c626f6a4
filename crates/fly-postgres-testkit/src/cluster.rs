//! A primary and a streaming hot-standby replica, ready in about a second.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::binaries::PgBinaries;
use crate::error::{Result, TestkitError};
use crate::os_user::RunAs;
use crate::ports::free_port;
use crate::proxy::{Delay, LatencyProxy};
use crate::server::PgServer;
use crate::template::template_dir;

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// Options for [`PgCluster`]; start with [`PgCluster::builder`].
#[derive(Debug, Clone, Default)]
pub struct PgClusterBuilder {
    replication_delay: Option<Duration>,
    settings: Vec<(String, String)>,
}

impl PgClusterBuilder {
    /// Route the replica's streaming connection through a [`LatencyProxy`]
    /// that delays the WAL stream (primary to replica) by `delay`
    /// (default: direct, no proxy).
    pub fn replication_delay(mut self, delay: Duration) -> Self {
        self.replication_delay = Some(delay);
        self
    }

    /// Adds a `postgresql.conf` setting to both servers.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Creates both data directories, starts the primary, then the replica,
    /// and waits until the replica has replayed everything the primary wrote.
    pub async fn start(self) -> Result<PgCluster> {
        let Prepared {
            bins,
            run_as,
            template,
            dir,
            tag,
        } = prepare("flypg-cluster-")?;

        let primary = start_server(
            "primary",
            false,
            dir.path(),
            &template,
            &bins,
            run_as,
            &self.common_conf(&tag, "primary"),
        )
        .await?;

        let primary_addr = SocketAddr::from(([127, 0, 0, 1], primary.port()));
        let proxy = match self.replication_delay {
            Some(delay) => {
                Some(LatencyProxy::start(primary_addr, Delay::to_client_only(delay)).await?)
            }
            None => None,
        };
        let upstream = proxy
            .as_ref()
            .map_or(primary_addr, LatencyProxy::local_addr);
        let mut replica_conf = self.common_conf(&tag, "replica");
        let _ = writeln!(
            replica_conf,
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={tag}-replica'\n\
             wal_retrieve_retry_interval = '50ms'\n\
             wal_receiver_status_interval = '1s'",
            upstream.port()
        );
        let replica = start_server(
            "replica",
            true,
            dir.path(),
            &template,
            &bins,
            run_as,
            &replica_conf,
        )
        .await?;
        let cluster = PgCluster {
            replica,
            primary,
            replication_proxy: proxy,
            tag,
            dir,
        };
        cluster.wait_for_catch_up(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn common_conf(&self, tag: &str, role: &str) -> String {
        server_conf(tag, role, &self.settings)
    }
}

/// What every set of testkit servers starts from.
pub(crate) struct Prepared {
    /// The PostgreSQL binaries, of a supported version.
    pub(crate) bins: PgBinaries,
    /// The OS user the servers run as.
    pub(crate) run_as: RunAs,
    /// The initdb'd data directory every server is copied from.
    pub(crate) template: PathBuf,
    /// The temp dir (prefixed `prefix`) the servers' user owns.
    pub(crate) dir: tempfile::TempDir,
    /// A name unique on this machine, in every server's process title.
    pub(crate) tag: String,
}

/// Finds and checks the binaries, the template and a fresh temp dir.
pub(crate) fn prepare(prefix: &str) -> Result<Prepared> {
    let bins = PgBinaries::locate()?;
    bins.check_supported()?;
    let run_as = RunAs::detect()?;
    let template = template_dir(&bins, run_as)?;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| TestkitError::io("creating the servers' temp dir", e))?;
    run_as.give(dir.path())?;
    Ok(Prepared {
        bins,
        run_as,
        template,
        dir,
        tag: next_tag(),
    })
}

/// A name for a new cluster's processes, unique on this machine.
fn next_tag() -> String {
    format!(
        "flypg-{}-{}",
        std::process::id(),
        NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `postgresql.conf` lines every testkit server gets, then `settings`.
pub(crate) fn server_conf(tag: &str, role: &str, settings: &[(String, String)]) -> String {
    {
        let mut conf = format!(
            "\n# fly-postgres-testkit\n\
             cluster_name = '{tag}-{role}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             wal_level = replica\n\
             max_wal_senders = 10\n\
             wal_keep_size = '512MB'\n\
             hot_standby = on\n\
             max_connections = 1000  # benches run up to 512 callers on one server\n\
             shared_buffers = '32MB'\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] '\n"
        );
        for (name, value) in settings {
            let _ = writeln!(conf, "{name} = '{}'", value.replace('\'', "''"));
        }
        conf
    }
}

/// Copies the template into `root/name`, appends `conf`, marks it a
/// standby if asked (every copy of the template starts from the same WAL,
/// so a standby can stream from any primary made from it), and starts it.
pub(crate) async fn start_server(
    name: &str,
    standby: bool,
    root: &Path,
    template: &Path,
    bins: &PgBinaries,
    run_as: RunAs,
    conf: &str,
) -> Result<PgServer> {
    let data_dir = root.join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(&data_dir)
        .status()
        .map_err(|e| TestkitError::io("running cp", e))?;
    if !status.success() {
        return Err(TestkitError::Command {
            program: "cp -a".into(),
            status,
            output: format!("copying {} to {}", template.display(), data_dir.display()),
        });
    }
    append(&data_dir.join("postgresql.conf"), conf)?;
    if standby {
        append(&data_dir.join("standby.signal"), "")?;
        run_as.give(&data_dir.join("standby.signal"))?;
    }
    // A port can be taken between choosing and binding it: retry with another.
    let mut attempt = 0;
    loop {
        let server = PgServer::new(
            name,
            data_dir.clone(),
            root.to_path_buf(),
            root.join(format!("{name}.log")),
            free_port()?,
            bins.clone(),
            run_as,
        );
        match server.start().await {
            Err(TestkitError::ServerExited { ref tail, .. })
                if attempt < 5 && tail.contains("could not") && tail.contains("bind") =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(server),
        }
    }
}

fn append(path: &PathBuf, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TestkitError::io(format!("opening {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
}

/// A real PostgreSQL primary and a real streaming hot-standby replica, in a
/// temp dir, on free ports of 127.0.0.1. Dropping it shuts both down and
/// deletes their files.
///
// Not run as a doctest: starts PostgreSQL servers; the testkit's own tests make the same calls.
/// ```no_run
/// # async fn demo() -> Result<(), fly_postgres_testkit::TestkitError> {
/// let cluster = fly_postgres_testkit::PgCluster::start().await?;
/// let primary = sqlx::PgPool::connect(&cluster.primary().url()).await?;
/// sqlx::query("create table t (id int)").execute(&primary).await?;
/// cluster.wait_for_catch_up(std::time::Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgCluster {
    // Field order is drop order: the replica goes first so it does not spend
    // its last moments reconnecting to a primary that is gone.
    replica: PgServer,
    primary: PgServer,
    replication_proxy: Option<LatencyProxy>,
    tag: String,
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// Starts a cluster with default options.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for a cluster.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The primary (read-write) server.
    pub fn primary(&self) -> &PgServer {
        &self.primary
    }

    /// The streaming hot-standby replica.
    pub fn replica(&self) -> &PgServer {
        &self.replica
    }

    /// The proxy on the replication link, when one was asked for.
    pub fn replication_proxy(&self) -> Option<&LatencyProxy> {
        self.replication_proxy.as_ref()
    }

    /// A name unique to this cluster that appears in every one of its
    /// processes' titles (`postgres: <tag>-primary: ...`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The temp dir holding both data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Pauses WAL replay on the replica (`pg_wal_replay_pause()`): from now
    /// on no further record is applied until [`PgCluster::resume_replay`].
    pub async fn pause_replay(&self) -> Result<()> {
        self.replica.pause_replay().await
    }

    /// Resumes WAL replay on the replica.
    pub async fn resume_replay(&self) -> Result<()> {
        self.replica.resume_replay().await
    }

    /// Sets `recovery_min_apply_delay` on the replica: each commit is applied
    /// no sooner than `delay` after it happened on the primary.
    pub async fn set_recovery_min_apply_delay(&self, delay: Duration) -> Result<()> {
        let mut conn = self.replica.connect().await?;
        // Only a number goes into the statement (ALTER SYSTEM takes no
        // bind parameters).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "alter system set recovery_min_apply_delay = '{}ms'",
            delay.as_millis()
        )))
        .execute(&mut conn)
        .await?;
        sqlx::query("select pg_reload_conf()")
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Waits until the replica has replayed the primary's current WAL position.
    pub async fn wait_for_catch_up(&self, timeout: Duration) -> Result<()> {
        wait_until_replayed(&self.primary, &self.replica, timeout).await
    }
}

/// Waits until `standby` has replayed `primary`'s current WAL position.
pub(crate) async fn wait_until_replayed(
    primary: &PgServer,
    standby: &PgServer,
    timeout: Duration,
) -> Result<()> {
    let mut primary = primary.connect().await?;
    let target: i64 = sqlx::query("select (pg_current_wal_lsn() - '0/0')::bigint")
        .fetch_one(&mut primary)
        .await?
        .try_get(0)?;
    let deadline = Instant::now() + timeout;
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = standby.connect().await.ok();
        }
        if let Some(c) = conn.as_mut() {
            let replayed: Option<i64> =
                match sqlx::query("select (pg_last_wal_replay_lsn() - '0/0')::bigint")
                    .fetch_one(&mut *c)
                    .await
                {
                    Ok(row) => row.try_get(0)?,
                    Err(_) => {
                        conn = None;
                        None
                    }
                };
            if replayed.is_some_and(|r| r >= target) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(TestkitError::Timeout {
                what: format!("{} to catch up with the primary", standby.name()),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
