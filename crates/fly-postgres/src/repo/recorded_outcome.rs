//! The request record as an answer: a definite failure recorded so no
//! earlier attempt commits after it, and a retry of a recorded id answered
//! with the first write's outcome.

use super::attempt_outcome::{Failure, Outcome};
use super::server_state::ServerState;
use super::wire::WireError;
use crate::commit_lsn::commit_position;
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;

/// Makes a definite failure of a write with a request id final: the id is
/// recorded as failed, so an earlier attempt with the same id that is still
/// on its way (it could not claim the id while this one held it) cannot
/// commit after the caller was told "not committed". If a concurrent
/// attempt committed in between, its output is the answer. If the record
/// cannot be written, the outcome is reported unknown rather than definite.
pub(super) async fn settle_failure<M: Mutation>(
    state: &ServerState,
    key: Option<&RequestKey>,
    error: Error,
) -> Result<Outcome<M::Output>, Failure> {
    if is_read_only(&error) {
        // A database that turned read-only (a failover): nothing ran and
        // nothing can be recorded here; worth retrying elsewhere.
        return Err(Failure::NotStarted(error));
    }
    let Some(key) = key.filter(|_| !matches!(error, Error::Config(_))) else {
        return Err(Failure::NotCommitted(error));
    };
    let Ok(failure) = serde_json::to_string(&WireError::of(&error)) else {
        return Err(Failure::NotCommitted(error));
    };
    // Not the write's own connection: it may be what failed.
    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(request_id = %key.id, error = %e, "could not record a failed write");
            return Err(Failure::Unknown(error));
        }
    };
    match insert_failure::<M>(&mut conn, key, &failure).await {
        Ok(1) => Err(Failure::NotCommitted(error)),
        // Another attempt recorded the id first: its outcome is the answer.
        Ok(_) => recorded::<M>(state, &mut conn, key).await,
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
        "insert into fly_postgres_requests (id, mutation, args_digest, failure, keep_until) \
         values ($1, $2, $3, $4, now() + make_interval(secs => $5)) on conflict (id) do nothing",
    )
    .bind(&key.id)
    .bind(M::NAME)
    .bind(&key.digest)
    .bind(failure)
    .bind(key.keep.as_secs_f64())
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
    match commit_position(conn).await {
        Ok(lsn) => Ok(Outcome::Committed(output, lsn)),
        Err(_) => Ok(Outcome::CommittedLsnUnknown(output)),
    }
}

fn is_read_only(error: &Error) -> bool {
    matches!(error, Error::Database(db) if db.is_read_only_transaction())
}
