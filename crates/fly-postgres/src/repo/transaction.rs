//! Running a mutation in one transaction next to the primary, exactly once
//! per request id.

use sqlx::Acquire;

use super::server_state::ServerState;

use crate::commit_lsn::commit_lsn;
use crate::error::Error;
use crate::lsn::Lsn;
use crate::mutation::Mutation;

/// Runs `mutation` in its own transaction and returns its output with the LSN
/// a reader must wait for.
///
/// With a `request_id`, the id is claimed first, in the same transaction: a
/// second attempt with the same id (a retry after a timeout or a dropped
/// connection, on any node) blocks on the claim while the first runs, then
/// finds it committed and returns the recorded output. The LSN it returns is
/// the current flush position, which covers the first attempt's commit.
pub(crate) async fn run_once<M: Mutation>(
    state: &ServerState,
    mutation: M,
    request_id: Option<&str>,
) -> Result<(M::Output, Lsn), Error> {
    let force_flush = state.needs_local_flush().await;
    let mut conn = state.pool.acquire().await?;
    let mut tx = conn.begin().await?;
    if force_flush {
        sqlx::query("set local synchronous_commit to local")
            .execute(&mut *tx)
            .await?;
    }
    if let Some(id) = request_id {
        let claimed = sqlx::query(
            "insert into fly_postgres_requests (id, mutation) values ($1, $2) on conflict (id) do nothing",
        )
        .bind(id)
        .bind(M::NAME)
        .execute(&mut *tx)
        .await
        .map_err(|e| missing_table_hint(e.into()))?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            let recorded: Option<String> =
                sqlx::query_scalar("select output from fly_postgres_requests where id = $1")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
            let output = recorded.ok_or_else(|| Error::Primary {
                message: format!("request {id} is recorded without an output"),
            })?;
            let output = serde_json::from_str(&output).map_err(|e| Error::Decode {
                message: format!("recorded output of request {id} does not decode: {e}"),
            })?;
            metrics::counter!("fly_postgres_deduplicated_writes_total", "mutation" => M::NAME)
                .increment(1);
            tracing::info!(
                request_id = id,
                mutation = M::NAME,
                "answered a retried write from its record"
            );
            return Ok((output, commit_lsn(&mut conn).await?));
        }
    }
    let output = mutation.run(&mut tx).await?;
    if let Some(id) = request_id {
        let encoded = serde_json::to_string(&output).map_err(|e| Error::Decode {
            message: format!("output of `{}` does not serialize: {e}", M::NAME),
        })?;
        sqlx::query("update fly_postgres_requests set output = $2 where id = $1")
            .bind(id)
            .bind(encoded)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let lsn = commit_lsn(&mut conn).await?;
    Ok((output, lsn))
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
