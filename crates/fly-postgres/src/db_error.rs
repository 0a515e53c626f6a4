//! A database error raised on the primary, kept intact across regions.

use serde::{Deserialize, Serialize};
use sqlx::error::ErrorKind;
use sqlx::postgres::PgDatabaseError;

/// What PostgreSQL said when it refused a statement: SQLSTATE, message,
/// constraint and the rest, so a unique violation raised in `syd` is matched
/// in `lax` exactly as it would be next to the primary.
///
/// ```
/// # fn check(err: fly_postgres::Error) {
/// if let Some(db) = err.as_database_error() {
///     if db.is_unique_violation() {
///         println!("taken: {}", db.constraint().unwrap_or("?"));
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DbError(Box<Fields>);

/// Boxed so that `Error` stays small on the happy path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Fields {
    code: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    constraint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    column: Option<String>,
}

impl DbError {
    pub(crate) fn from_sqlx(error: &(dyn sqlx::error::DatabaseError + 'static)) -> Self {
        let pg = error.try_downcast_ref::<PgDatabaseError>();
        DbError(Box::new(Fields {
            code: error.code().map(|c| c.into_owned()).unwrap_or_default(),
            message: error.message().to_owned(),
            detail: pg.and_then(|p| p.detail()).map(str::to_owned),
            constraint: error.constraint().map(str::to_owned),
            table: error.table().map(str::to_owned),
            column: pg.and_then(|p| p.column()).map(str::to_owned),
        }))
    }

    /// The SQLSTATE code, such as `23505`.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// PostgreSQL's primary message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// PostgreSQL's detail line, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The violated constraint, for integrity errors.
    pub fn constraint(&self) -> Option<&str> {
        self.0.constraint.as_deref()
    }

    /// The table involved, if PostgreSQL named one.
    pub fn table(&self) -> Option<&str> {
        self.0.table.as_deref()
    }

    /// The column involved, if PostgreSQL named one.
    pub fn column(&self) -> Option<&str> {
        self.0.column.as_deref()
    }

    /// The category, as sqlx's `DatabaseError::kind()` gives it.
    pub fn kind(&self) -> ErrorKind {
        match self.0.code.as_str() {
            "23505" => ErrorKind::UniqueViolation,
            "23503" => ErrorKind::ForeignKeyViolation,
            "23502" => ErrorKind::NotNullViolation,
            "23514" => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }

    /// `23505`: a unique or primary-key constraint refused a duplicate.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self.kind(), ErrorKind::UniqueViolation)
    }

    /// `23503`: a foreign key refused the change.
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self.kind(), ErrorKind::ForeignKeyViolation)
    }

    /// `23502`: a NOT NULL column got a null.
    pub fn is_not_null_violation(&self) -> bool {
        matches!(self.kind(), ErrorKind::NotNullViolation)
    }

    /// `23514`: a CHECK constraint refused the row.
    pub fn is_check_violation(&self) -> bool {
        matches!(self.kind(), ErrorKind::CheckViolation)
    }

    /// `25006`: the statement tried to write on a read-only connection (a
    /// replica, or a [`crate::read_only`] one).
    pub fn is_read_only_transaction(&self) -> bool {
        self.0.code == "25006"
    }

    /// `40001`: a serialization failure; the transaction may be retried.
    pub fn is_serialization_failure(&self) -> bool {
        self.0.code == "40001"
    }

    /// The database cannot serve right now, whatever the statement: a
    /// connection exception (class `08`), insufficient resources (`53`, such
    /// as too many connections), or operator intervention (`57`: shutting
    /// down, starting up, terminated by an administrator).
    pub fn is_unavailable(&self) -> bool {
        ["08", "53", "57"]
            .iter()
            .any(|class| self.0.code.starts_with(class))
    }

    /// `40P01`: a deadlock was detected; the transaction may be retried.
    pub fn is_deadlock(&self) -> bool {
        self.0.code == "40P01"
    }

    /// `42P01`: a table the statement names does not exist.
    pub(crate) fn is_undefined_table(&self) -> bool {
        self.0.code == "42P01"
    }

    /// The connection or the server went away (a crash, a failover, an
    /// administrator's shutdown), not a refusal of the statement: class
    /// `08` and `57P01`-`57P03`.
    pub(crate) fn is_connection_gone(&self) -> bool {
        self.0.code.starts_with("08") || matches!(self.0.code.as_str(), "57P01" | "57P02" | "57P03")
    }
}

/// Whether an error answering COMMIT may have come after the commit was
/// durable: the server shutting down or the backend terminated while COMMIT
/// waited for a synchronous standby (PostgreSQL warns "the transaction has
/// already committed locally"), a lost connection, an I/O or internal
/// error (classes `08`, `53`, `57`, `58`, `XX`). A deferred constraint or a
/// serialization failure refuses it.
pub(crate) fn may_follow_commit(code: &str) -> bool {
    ["08", "53", "57", "58", "XX"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// Whether sqlx failed to reach or keep its connection (not the server
/// refusing a statement).
pub(crate) fn connection_failed(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.0.message, self.0.code)?;
        if let Some(constraint) = &self.0.constraint {
            write!(f, " on constraint {constraint}")?;
        }
        Ok(())
    }
}
