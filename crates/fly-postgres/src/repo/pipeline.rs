//! The write pipeline, in the order a write travels: admission (checks
//! that hold in every region), the path (here in the primary region,
//! forwarded, or direct), the wait for the local replica, then the
//! request's record, the metric and the span. See the
//! [how a write travels](crate::guide::write_path) guide.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::direct_path::direct;
use super::forwarded_path::forward;
use super::local_write::write_locally;
use super::reply::Reply;
use super::retry_policy::Deadline;
use super::wire::Forwarded;
use super::write::Write;
use super::write_metrics::{Cancelled, outcome_label, record};
use super::{Repo, WriteMode};
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::{self, RequestKey};
use crate::statement::Statement;
use crate::write_timings::WriteTimings;

impl<'r, M: Mutation, T: Send + 'r> IntoFuture for Write<'r, M, T> {
    type Output = Result<T, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let finish = self.finish;
            let (output, _) = run(self).await?;
            // The write committed: a failure to turn its output into `T`
            // must not read as "not committed".
            finish(output).map_err(unreadable)
        })
    }
}

/// A committed write whose output did not turn into what the call asked
/// for is committed-class, whatever the reason.
pub(super) fn unreadable(error: Error) -> Error {
    if error.is_committed() {
        return error;
    }
    Error::CommittedButUnreadable {
        reason: error.to_string(),
        output: None,
    }
}

/// Runs the write; a drop before it finishes is counted as cancelled.
pub(super) async fn run<M: Mutation, T>(
    write: Write<'_, M, T>,
) -> Result<(M::Output, WriteTimings), Error> {
    let mut cancelled = Cancelled::arm(M::NAME, Instant::now());
    let result = run_to_end(write).await;
    cancelled.disarm();
    result
}

async fn run_to_end<M: Mutation, T>(
    write: Write<'_, M, T>,
) -> Result<(M::Output, WriteTimings), Error> {
    let repo = write.repo;
    let started = Instant::now();
    admit::<M>(repo, &write)?;
    // The one deadline of every attempt on every path.
    let deadline = Deadline::after(write.rpc_timeout.unwrap_or(repo.inner.config.rpc_timeout));
    if !repo.inner.config.force_forward && repo.is_primary().await {
        return run_here(write, deadline, started).await;
    }
    run_elsewhere(write, deadline, started).await
}

/// Checks that hold in every region, so an app that forgot one finds out
/// on a laptop, not in its second region.
fn admit<M: Mutation>(repo: &Repo, write: &Write<'_, M, impl Sized>) -> Result<(), Error> {
    let inner = &repo.inner;
    if M::NAME == <Statement as Mutation>::NAME && !inner.server.ad_hoc_statements {
        metrics::counter!("fly_postgres_ad_hoc_refused_total", "from" => "local").increment(1);
        return Err(Error::AdHocStatementsDisabled { on_primary: false });
    }
    if write.chosen_id {
        request_key::validate(&write.request_id)?;
    }
    // A mutation this build did not register is refused in every region,
    // as the primary region would refuse it forwarded.
    if !inner.registered.contains(M::NAME) {
        return Err(Error::UnknownProcedure {
            name: M::NAME.to_owned(),
            peer_version: inner.node.info().version,
        });
    }
    Ok(())
}

/// In the primary region: the local database is the primary.
async fn run_here<M: Mutation, T>(
    write: Write<'_, M, T>,
    deadline: Deadline,
    started: Instant,
) -> Result<(M::Output, WriteTimings), Error> {
    let inner = &write.repo.inner;
    inner.counters.local.fetch_add(1, Ordering::Relaxed);
    let id = write.request_id;
    let (key, args) = if write.chosen_id || inner.config.record_local_writes {
        let keep = inner.server.retention.of(!write.chosen_id);
        let (key, args) = RequestKey::with_args(id.clone(), M::NAME, &write.mutation, keep)?;
        (Some(key), args)
    } else {
        // No record: the arguments only feed each attempt anew.
        (None, request_key::args_json(M::NAME, &write.mutation)?)
    };
    drop(write.mutation);
    let result = write_locally::<M>(Arc::clone(&inner.server), args, id, key, deadline).await;
    record(M::NAME, "local", started, &result);
    let reply = result?;
    if let Some(position) = reply.position {
        crate::request_record::record_write(position);
    }
    let total = started.elapsed();
    let timings = WriteTimings {
        total,
        primary: Some(total),
        attempts: reply.attempts,
        ..WriteTimings::default()
    };
    crate::request_record::record_timings(&timings);
    Ok((reply.output, timings))
}

/// Outside the primary region: forwarded (or direct), then the wait for
/// the local replica, in the write's span.
async fn run_elsewhere<M: Mutation, T>(
    write: Write<'_, M, T>,
    deadline: Deadline,
    started: Instant,
) -> Result<(M::Output, WriteTimings), Error> {
    let repo = write.repo;
    let inner = &repo.inner;
    let fallback = write
        .direct_fallback
        .unwrap_or(inner.config.direct_fallback);
    if fallback && inner.direct.is_none() {
        return Err(Error::Config(
            "direct_fallback(true) needs the repo's primary_url() or primary_pool()".into(),
        ));
    }
    let direct_mode = inner.config.write_mode == WriteMode::Direct;
    if !direct_mode {
        inner.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    }
    // Serialized once, before the first await: retries resend these bytes.
    let call = Forwarded::new(&write.mutation, !write.chosen_id)?;
    drop(write.mutation);
    let request_id = write.request_id.as_str();
    let span = write_span(repo, M::NAME, request_id);
    let result = async {
        let rpc_started = Instant::now();
        let (reply, rpc) = if direct_mode {
            (direct::<M>(repo, &call, request_id, None).await?, None)
        } else {
            match forward::<M>(repo, &call, deadline, request_id).await {
                Ok(reply) => (reply, Some(rpc_started.elapsed())),
                Err(e) if fallback && falls_back(&e) => {
                    let rpc = rpc_started.elapsed();
                    tracing::warn!(error = %e, "no primary-region instance took the write; running it on the primary directly, with the same request id");
                    (direct::<M>(repo, &call, request_id, Some(e)).await?, Some(rpc))
                }
                Err(e) => return Err(e),
            }
        };
        let wait = write.wait.then(|| {
            write
                .replication_timeout
                .unwrap_or(inner.config.replication_timeout)
        });
        settle_remote(repo, reply, rpc, wait, started).await
    }
    .instrument(span.clone())
    .await;
    span.record("outcome", outcome_label(&result));
    let path = if direct_mode { "direct" } else { "forwarded" };
    record(M::NAME, path, started, &result);
    result
}

/// The span of a write outside the primary region.
fn write_span(repo: &Repo, mutation: &'static str, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "fly_postgres.write",
        mutation,
        request_id = %request_id,
        primary_region = %repo.primary_region(),
        attempts = tracing::field::Empty,
        lsn = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// Whether a forwarded write that ended this way may be run directly: no
/// instance took it, or the outcome is unknown (the same request id makes
/// the direct attempt answer from the record if one did commit).
fn falls_back(error: &Error) -> bool {
    matches!(
        error,
        Error::NoPrimaryNode { .. } | Error::MaybeCommitted { .. } | Error::RpcTimeout { .. }
    )
}

/// A write committed elsewhere: noted for the request's token, then waited
/// for on the local replica (unless `wait` is `None`). Committed whatever
/// the wait says: the caller gets the output, never a failure.
async fn settle_remote<O: serde::Serialize>(
    repo: &Repo,
    reply: Reply<O>,
    rpc: Option<Duration>,
    wait: Option<Duration>,
    started: Instant,
) -> Result<(O, WriteTimings), Error> {
    let mut timings = WriteTimings {
        rpc,
        primary: reply.primary_us.map(Duration::from_micros),
        attempts: reply.attempts,
        ..WriteTimings::default()
    };
    let Some(position) = reply.position else {
        return Err(Error::committed_position_unknown(&reply.output));
    };
    tracing::Span::current().record("lsn", tracing::field::display(position.lsn));
    crate::request_record::record_write(position);
    if let Some(timeout) = wait {
        let waiting = Instant::now();
        if let Err(e) = repo.inner.tracker.wait_for(position.lsn, timeout).await {
            return Err(e.with_committed_output(position.lsn, waiting.elapsed(), &reply.output));
        }
        timings.replication_wait = Some(waiting.elapsed());
    }
    timings.total = started.elapsed();
    crate::request_record::record_timings(&timings);
    Ok((reply.output, timings))
}
