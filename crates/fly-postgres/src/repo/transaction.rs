//! Running a mutation in one transaction next to the primary, exactly once
//! per request id.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::attempt_outcome::{Failure, Outcome};
use super::commit_round_trip::{Finished, Record, commit_with_record};
use super::recorded_outcome::settle_failure;
use super::server_state::ServerState;
use super::xact_probe::{XactProbe, probe};
use crate::commit_lsn::commit_position;
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::RequestKey;
use crate::wal_position::WalPosition;

/// Runs `mutation` in its own transaction.
///
/// Without a request `key` nothing is recorded: the transaction's id is
/// read before COMMIT, and a lost COMMIT answer is
/// [`Outcome::Unsettled`] with the output, for the caller to settle (see
/// [`super::xact_settle`]).
///
/// With a request `key`, an id that names a write which kept no record is
/// settled first (see [`super::unrecorded_retry`]). Otherwise the id is recorded with the output in the same
/// transaction, right before COMMIT (one round trip with COMMIT and the LSN,
/// see [`commit_with_record`]). A second attempt with the same id (a retry
/// after a timeout or a dropped connection, on any node) that runs while the
/// first is open blocks on the first one's uncommitted key, then fails on
/// it and rolls back its own work; one that runs later does the same at
/// once, or fails earlier in its mutation (a unique title, say). Either way
/// it then answers from the record: the recorded output, with the current
/// flush LSN (which covers the first commit), or the recorded failure. A
/// recorded id whose mutation or arguments differ is refused
/// ([`Error::RequestIdReused`]), never answered with another write's output.
///
/// A failure before anything could run (no connection, a read-only database
/// after a failover) is [`Failure::NotStarted`].
///
/// Once COMMIT succeeded nothing here reports a failure: the write is done.
pub(crate) async fn run_once<M: Mutation>(
    state: &ServerState,
    mutation: M,
    key: Option<&RequestKey>,
) -> Result<Outcome<M::Output>, Failure> {
    run_once_noting(state, mutation, key, &Progress::default()).await
}

/// How far an attempt got, and the one decision between an attempt about
/// to COMMIT and a caller giving up on it (its deadline passed while the
/// database was silent or the mutation ran long): exactly one of them wins,
/// so "not committed" is never said of an attempt that went on to commit.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// A connection was had and BEGIN answered.
    began: AtomicBool,
    /// [`RUNNING`], then [`COMMITTING`] or [`ABANDONED`].
    state: AtomicU8,
}

const RUNNING: u8 = 0;
const COMMITTING: u8 = 1;
const ABANDONED: u8 = 2;

impl Progress {
    /// Whether BEGIN was answered.
    pub(crate) fn began(&self) -> bool {
        self.began.load(Ordering::SeqCst)
    }

    /// Gives up on the attempt: true when it will not commit (it had not
    /// reached COMMIT, and now never will), false when COMMIT is under way.
    pub(crate) fn abandon(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    fn may_commit(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// [`run_once`], noting its [`Progress`]: a caller that gives up on the
/// attempt can tell "nothing could have committed" from "unknown".
pub(crate) async fn run_once_noting<M: Mutation>(
    state: &ServerState,
    mutation: M,
    key: Option<&RequestKey>,
    progress: &Progress,
) -> Result<Outcome<M::Output>, Failure> {
    if let Some(key) = key
        && let Some(answer) = super::unrecorded_retry::answer::<M>(state, key).await
    {
        return answer;
    }
    let force_flush = state.needs_local_flush().await;
    let mut tx = begin(state).await?;
    progress.began.store(true, Ordering::SeqCst);
    let running = mutation.run(&mut tx);
    let ran = crate::app_state::with_state(std::sync::Arc::clone(&state.app_state), running).await;
    let ready = match ran.and_then(|output| encode::<M>(key, output)) {
        // Without a record, what settles a lost COMMIT answer is read
        // first (a transaction the mutation left aborted fails here).
        Ok(done) if key.is_none() => probe(&mut tx)
            .await
            .map(|probe| (done, Some(probe)))
            .map_err(Error::from),
        Ok(done) => Ok((done, None)),
        Err(e) => Err(e),
    };
    let ((output, encoded), probe) = match ready {
        Ok(ready) => ready,
        Err(e) => {
            let _ = tx.rollback().await;
            // COMMIT was never sent, so the server cannot have committed:
            // the write did not run, and a fresh connection may take it.
            if connection_lost(&e) {
                return Err(Failure::NotStarted(e));
            }
            return settle_failure::<M>(state, key, e).await;
        }
    };
    let record = key.zip(encoded.as_deref()).map(|(key, output)| Record {
        key,
        mutation: M::NAME,
        output,
    });
    if !progress.may_commit() {
        // The caller gave up and was told "not committed": keep it true.
        let _ = tx.rollback().await;
        return Err(Failure::NotStarted(Error::Primary {
            message: "the attempt was given up at the write's deadline before COMMIT".into(),
        }));
    }
    let finished = commit_with_record(&mut tx, record, force_flush, probe.is_some()).await;
    finish::<M>(state, key, tx, finished, (output, probe)).await
}

/// The output's JSON for the request record (only with a key).
fn encode<M: Mutation>(
    key: Option<&RequestKey>,
    output: M::Output,
) -> Result<(M::Output, Option<String>), Error> {
    if key.is_none() {
        return Ok((output, None));
    }
    match serde_json::to_string(&output) {
        Ok(text) => Ok((output, Some(text))),
        Err(e) => Err(Error::Decode {
            message: format!("output of `{}` does not serialize: {e}", M::NAME),
        }),
    }
}

/// The outcome of the commit round trip.
async fn finish<M: Mutation>(
    state: &ServerState,
    key: Option<&RequestKey>,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    finished: Finished,
    (output, probe): (M::Output, Option<XactProbe>),
) -> Result<Outcome<M::Output>, Failure> {
    match finished {
        Finished::Committed(lsn) => {
            // Ends the empty transaction the round trip left open.
            drop(tx);
            Ok(Outcome::Committed(output, lsn))
        }
        Finished::CommittedLsnUnknown(first) => {
            drop(tx);
            match position_on_another_connection(state).await {
                Ok(lsn) => Ok(Outcome::Committed(output, lsn)),
                Err(second) => {
                    tracing::warn!(mutation = M::NAME, %first, %second, "write committed but its LSN could not be read");
                    Ok(Outcome::CommittedLsnUnknown(output))
                }
            }
        }
        Finished::Refused {
            error,
            transaction_open,
        } => {
            if !transaction_open {
                // COMMIT failed and ended the transaction; open an empty one
                // for the ROLLBACK sqlx sends when its guard drops.
                let _ = sqlx::raw_sql("begin").execute(&mut *tx).await;
            }
            let _ = tx.rollback().await;
            settle_failure::<M>(state, key, missing_table_hint(error.into())).await
        }
        Finished::Unknown(e) => match probe {
            Some(probe) => Ok(Outcome::Unsettled(output, probe, e.into())),
            None => Err(Failure::Unknown(e.into())),
        },
    }
}

/// The primary's position now, read on another pooled connection than the
/// write's: any flush position read after a commit covers it.
pub(super) async fn position_on_another_connection(
    state: &ServerState,
) -> Result<WalPosition, Error> {
    let mut other = state.pool.acquire().await?;
    commit_position(&mut other).await
}

/// Whether a statement failed because the connection or the server went
/// away (a crash, a failover, an administrator's shutdown), not because
/// the server refused it: I/O and protocol errors, SQLSTATE class 08, and
/// 57P01-57P03.
fn connection_lost(error: &Error) -> bool {
    match error {
        Error::Sql(e) => crate::db_error::connection_failed(e),
        Error::Database(db) => db.is_connection_gone(),
        _ => false,
    }
}

/// BEGIN on a pooled connection that answers. The pool does not ping
/// before a checkout (see [`crate::pool_options`]), so a connection that
/// died while idle (a database restart) shows up as BEGIN failing without
/// an answer: the pool closes it when its release ping fails, and the next
/// one is tried.
async fn begin(state: &ServerState) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Failure> {
    const TRIES: usize = 4;
    let mut tries = 0;
    loop {
        tries += 1;
        match state.pool.begin().await {
            Ok(tx) => return Ok(tx),
            Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_))) if tries < TRIES => {
                tracing::debug!(error = %e, "a pooled connection had died; trying another");
            }
            Err(e) => {
                return Err(Failure::NotStarted(
                    crate::pool_diagnosis::explain_pool_error(&state.pool, e).await,
                ));
            }
        }
    }
}

fn missing_table_hint(error: Error) -> Error {
    match &error {
        Error::Database(db) if db.is_undefined_table() => Error::Config(
            "table fly_postgres_requests is missing: run Repo::migrate() (or the SQL in \
             fly-postgres' migrations/) on the primary"
                .into(),
        ),
        _ => error,
    }
}
