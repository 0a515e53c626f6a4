//! The testkit's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting or driving test servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries found (looked in: {searched}); install them with \
         `apt-get install postgresql` or point PG_BIN at the directory holding `postgres` and `initdb`"
    )]
    NoPostgres {
        /// The places that were searched, in order.
        searched: String,
    },
    /// Running as root, but there is no unprivileged user to run the server as.
    #[error(
        "running as root and there is no `postgres` OS user to run the server as (PostgreSQL refuses to run as root)"
    )]
    NoPostgresUser,
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper program (initdb, cp, ...) exited unsuccessfully.
    #[error("`{program}` failed ({status}): {output}")]
    Command {
        /// The program that failed.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// A server exited while it was expected to run.
    #[error(
        "postgres server `{name}` exited during start ({status}); its log {log:?} ends with:\n{tail}"
    )]
    ServerExited {
        /// The server's name (`primary`, `replica`).
        name: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: Duration,
    },
    /// The PostgreSQL server found is not a supported version.
    #[error(
        "unsupported PostgreSQL server {found:?}: the testkit supports 13 to 18; \
         point PG_BIN at another build"
    )]
    UnsupportedVersion {
        /// Its `--version` line.
        found: String,
    },
    /// An app process exited or printed something else instead of its
    /// "listening" line.
    #[error("the app process did not start (it said {said:?})")]
    AppStart {
        /// Its first line on stdout.
        said: String,
    },
    /// A SQL statement against a test server failed.
    #[error("SQL against test server failed: {0}")]
    Sql(#[from] sqlx::Error),
    /// The server is not running (it was stopped or killed).
    #[error("postgres server `{0}` is not running")]
    NotRunning(String),
    /// A topology was asked for something it does not have or cannot do.
    #[error("topology: {0}")]
    Topology(String),
    /// A fly.toml the Fly world cannot read.
    #[error("fly.toml: {0}")]
    FlyToml(String),
    /// A machine of a deploy never passed its health check, or exited.
    #[error("deploy failed: machine {machine}: {why}; its log ends with:\n{tail}")]
    FailedDeploy {
        /// The machine's id.
        machine: String,
        /// What went wrong.
        why: String,
        /// The last lines the app printed.
        tail: String,
    },
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for testkit results.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
