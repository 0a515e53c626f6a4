//! Running a mutation in one transaction next to the primary, exactly once
//! per request id.

use sqlx::Acquire;

use super::server_state::ServerState;

use super::forward::WireError;
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
            // Recorded already: committed, or failed for good. Nothing of
            // this transaction needs keeping.
            let _ = tx.rollback().await;
            return recorded::<M>(state, &mut conn, key).await;
        }
    }
    let ran = async {
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
            // synchronous_commit = off the flush LSN read after COMMIT might
            // not cover the commit yet.
            sqlx::query("set local synchronous_commit to local")
                .execute(&mut *tx)
                .await?;
        }
        Ok::<_, Error>(output)
    }
    .await;
    let output = match ran {
        Ok(output) => output,
        Err(e) => {
            let _ = tx.rollback().await;
            return settle_failure::<M>(state, &mut conn, key, e).await;
        }
    };
    if let Err(e) = tx.commit().await {
        return match e.as_database_error() {
            // The server answered: it refused the commit (e.g. a deferred
            // constraint), so nothing was committed.
            Some(_) => settle_failure::<M>(state, &mut conn, key, e.into()).await,
            None => Err(Failure::Unknown(e.into())),
        };
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

/// Makes a definite failure of a write with a request id final: the id is
/// recorded as failed, so an earlier attempt with the same id that is still
/// on its way (it could not claim the id while this one held it) cannot
/// commit after the caller was told "not committed". If a concurrent
/// attempt committed in between, its output is the answer. If the record
/// cannot be written, the outcome is reported unknown rather than definite.
async fn settle_failure<M: Mutation>(
    state: &ServerState,
    conn: &mut sqlx::PgConnection,
    key: Option<&RequestKey>,
    error: Error,
) -> Result<Outcome<M::Output>, Failure> {
    let Some(key) = key else {
        return Err(Failure::NotCommitted(error));
    };
    let Ok(failure) = serde_json::to_string(&WireError::of(&error)) else {
        return Err(Failure::NotCommitted(error));
    };
    // The write's own connection may be what failed: try another one.
    let inserted = match insert_failure::<M>(conn, key, &failure).await {
        Ok(n) => Ok(n),
        Err(_) => match state.pool.acquire().await {
            Ok(mut other) => insert_failure::<M>(&mut other, key, &failure).await,
            Err(e) => Err(e),
        },
    };
    match inserted {
        Ok(1) => Err(Failure::NotCommitted(error)),
        // Another attempt recorded the id first: its outcome is the answer.
        Ok(_) => recorded::<M>(state, conn, key).await,
        Err(e) => {
            tracing::warn!(request_id = %key.id, error = %e, "could not record a failed write");
            Err(Failure::Unknown(error))
        }
    }
}

async fn insert_failure<M: Mutation>(
    conn: &mut sqlx::PgConnection,
    key: &RequestKey,
    failure: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "insert into fly_postgres_requests (id, mutation, args_digest, failure) \
         values ($1, $2, $3, $4) on conflict (id) do nothing",
    )
    .bind(&key.id)
    .bind(M::NAME)
    .bind(&key.digest)
    .bind(failure)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A request record: mutation, argument digest, output, failure.
type RecordRow = (String, Option<String>, Option<String>, Option<String>);

/// The answer to a retry of a request id that is recorded: the committed
/// write's output, or its recorded failure.
async fn recorded<M: Mutation>(
    state: &ServerState,
    conn: &mut sqlx::PgConnection,
    key: &RequestKey,
) -> Result<Outcome<M::Output>, Failure> {
    let id = key.id.as_str();
    let query =
        "select mutation, args_digest, output, failure from fly_postgres_requests where id = $1";
    let row: Result<RecordRow, _> = match sqlx::query_as(query).bind(id).fetch_one(&mut *conn).await
    {
        Ok(row) => Ok(row),
        Err(_) => match state.pool.acquire().await {
            Ok(mut other) => sqlx::query_as(query).bind(id).fetch_one(&mut *other).await,
            Err(e) => Err(e),
        },
    };
    // The id is recorded, so the write did commit or did fail: only not
    // being able to read which is an unknown outcome.
    let (mutation, digest, output, failure) = row.map_err(|e| Failure::Unknown(e.into()))?;
    // Records written before digests existed only have the name to compare.
    if mutation != M::NAME || digest.is_some_and(|d| d != key.digest) {
        return Err(Failure::NotCommitted(Error::RequestIdReused {
            request_id: id.to_owned(),
            recorded_mutation: mutation,
        }));
    }
    if let Some(failure) = failure {
        return Err(match serde_json::from_str::<WireError>(&failure) {
            Ok(wire) => Failure::NotCommitted(wire.into()),
            Err(e) => Failure::Unknown(Error::Decode {
                message: format!("recorded failure of request {id} does not decode: {e}"),
            }),
        });
    }
    let output = output
        .ok_or_else(|| {
            Failure::Unknown(Error::Primary {
                message: format!("request {id} is recorded without an outcome"),
            })
        })
        .and_then(|output| {
            serde_json::from_str(&output).map_err(|e| {
                Failure::Unknown(Error::Decode {
                    message: format!("recorded output of request {id} does not decode: {e}"),
                })
            })
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
