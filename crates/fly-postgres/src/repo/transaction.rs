//! Running a mutation in one transaction next to the primary, exactly once
//! per request id.

use sqlx::Acquire;

use super::server_state::ServerState;

use crate::commit_lsn::commit_lsn;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;

/// How a write ended, when it did not simply fail.
#[derive(Debug)]
pub(crate) enum Outcome<O> {
    /// Committed; readers wait for this LSN.
    Committed(O, Lsn),
    /// Committed, but the LSN could not be read afterwards (the connection
    /// broke right after COMMIT). A retry with the same request id answers
    /// with the recorded output and a fresh LSN.
    CommittedLsnUnknown(O),
}

/// Why a write did not commit, or may not have.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It did not commit (rolled back, or refused).
    NotCommitted(Error),
    /// The connection failed during COMMIT: it may or may not have
    /// committed. Only a retry with the same request id can tell, safely.
    Unknown(Error),
    /// The write could not start (no connection, a read-only database after
    /// a failover): nothing ran, and the request id was not claimed, so this
    /// says nothing about an earlier attempt. Worth retrying.
    NotStarted(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::NotCommitted(error)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Failure::NotCommitted(error.into())
    }
}

/// Runs `mutation` in its own transaction.
///
/// With a request `key`, its id is claimed first, in the same transaction: a
/// second attempt with the same id (a retry after a timeout or a dropped
/// connection, on any node) blocks on the claim while the first runs, then
/// finds it committed and returns the recorded output. The LSN it returns is
/// the current flush position, which covers the first attempt's commit. A
/// recorded id whose mutation or arguments differ is refused
/// ([`Error::RequestIdReused`]), never answered with another write's output.
///
/// A failure before the claim is made (no connection, a read-only database
/// after a failover) is [`Failure::NotStarted`].
///
/// Once COMMIT succeeded nothing here reports a failure: the write is done.
pub(crate) async fn run_once<M: Mutation>(
    state: &ServerState,
    mutation: M,
    key: Option<&RequestKey>,
) -> Result<Outcome<M::Output>, Failure> {
    let force_flush = state.needs_local_flush().await;
    let before_claim = |e: sqlx::Error| match missing_table_hint(e.into()) {
        config @ Error::Config(_) => Failure::NotCommitted(config),
        other => Failure::NotStarted(other),
    };
    let mut conn = state.pool.acquire().await.map_err(before_claim)?;
    let mut tx = conn.begin().await.map_err(before_claim)?;
    if let Some(key) = key {
        let claimed = sqlx::query(
            "insert into fly_postgres_requests (id, mutation, args_digest) values ($1, $2, $3) \
             on conflict (id) do nothing",
        )
        .bind(&key.id)
        .bind(M::NAME)
        .bind(&key.digest)
        .execute(&mut *tx)
        .await
        .map_err(before_claim)?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await.map_err(before_claim)?;
            return recorded::<M>(&mut conn, key).await;
        }
    }
    let output = mutation.run(&mut tx).await?;
    if let Some(RequestKey { id, .. }) = key {
        let encoded = serde_json::to_string(&output).map_err(|e| Error::Decode {
            message: format!("output of `{}` does not serialize: {e}", M::NAME),
        })?;
        sqlx::query("update fly_postgres_requests set output = $2 where id = $1")
            .bind(id)
            .bind(encoded)
            .execute(&mut *tx)
            .await?;
    }
    if force_flush {
        // Last, so a mutation's own SET cannot undo it: with
        // synchronous_commit = off the flush LSN read after COMMIT might not
        // cover the commit yet.
        sqlx::query("set local synchronous_commit to local")
            .execute(&mut *tx)
            .await?;
    }
    if let Err(e) = tx.commit().await {
        return Err(match e.as_database_error() {
            // The server answered: it refused the commit (e.g. a deferred
            // constraint), so nothing was committed.
            Some(_) => Failure::NotCommitted(e.into()),
            None => Failure::Unknown(e.into()),
        });
    }
    match commit_lsn(&mut conn).await {
        Ok(lsn) => Ok(Outcome::Committed(output, lsn)),
        Err(first) => {
            drop(conn);
            // Any later flush position covers the commit: ask on another
            // connection.
            let retry = async {
                let mut other = state.pool.acquire().await?;
                commit_lsn(&mut other).await
            };
            match retry.await {
                Ok(lsn) => Ok(Outcome::Committed(output, lsn)),
                Err(second) => {
                    tracing::warn!(mutation = M::NAME, %first, %second, "write committed but its LSN could not be read");
                    Ok(Outcome::CommittedLsnUnknown(output))
                }
            }
        }
    }
}

/// The answer to a retry of a request that already committed.
async fn recorded<M: Mutation>(
    conn: &mut sqlx::PgConnection,
    key: &RequestKey,
) -> Result<Outcome<M::Output>, Failure> {
    let id = key.id.as_str();
    let (mutation, digest, recorded): (String, Option<String>, Option<String>) = sqlx::query_as(
        "select mutation, args_digest, output from fly_postgres_requests where id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Failure::NotStarted(e.into()))?;
    // Records written before digests existed only have the name to compare.
    if mutation != M::NAME || digest.is_some_and(|d| d != key.digest) {
        return Err(Failure::NotCommitted(Error::RequestIdReused {
            request_id: id.to_owned(),
            recorded_mutation: mutation,
        }));
    }
    let output = recorded.ok_or_else(|| Error::Primary {
        message: format!("request {id} is recorded without an output"),
    })?;
    let output = serde_json::from_str(&output).map_err(|e| Error::Decode {
        message: format!("recorded output of request {id} does not decode: {e}"),
    })?;
    metrics::counter!("fly_postgres_deduplicated_writes_total", "mutation" => M::NAME).increment(1);
    tracing::info!(
        request_id = id,
        mutation = M::NAME,
        "answered a retried write from its record"
    );
    match commit_lsn(conn).await {
        Ok(lsn) => Ok(Outcome::Committed(output, lsn)),
        Err(_) => Ok(Outcome::CommittedLsnUnknown(output)),
    }
}

fn missing_table_hint(error: Error) -> Error {
    match &error {
        Error::Database(db) if db.code() == "42P01" => Error::Config(
            "table fly_postgres_requests is missing: run Repo::migrate() (or the SQL in \
             fly-postgres' migrations/) on the primary"
                .into(),
        ),
        _ => error,
    }
}
