//! One write call and its options.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fly_rpc::CallOptions;
use tracing::Instrument;

use super::forward::{AttemptFailure, Committed, Forwarded, WireError, classify, from_rpc};
use super::local_write::write_locally;
use super::timings::WriteTimings;
use super::transaction::{Failure, Outcome, run_once};
use super::{Repo, WriteMode};
use crate::error::Error;
use crate::mutation::Mutation;
use crate::request_key::{self, RequestKey};
use crate::wal_position::WalPosition;

/// A pending write; `.await` it. Built by [`Repo::write`],
/// [`Repo::execute`] and friends.
#[must_use = "a write does nothing until awaited"]
pub struct Write<'r, M: Mutation, T> {
    repo: &'r Repo,
    mutation: M,
    pub(super) finish: fn(M::Output) -> Result<T, Error>,
    pub(super) wait: bool,
    rpc_timeout: Option<Duration>,
    replication_timeout: Option<Duration>,
    /// Fixed when the write is created, so it is known before awaiting.
    request_id: String,
    /// The caller chose the id (its record is kept longer).
    chosen_id: bool,
    direct_fallback: Option<bool>,
}

impl<'r, M: Mutation, T> Write<'r, M, T> {
    pub(crate) fn new(
        repo: &'r Repo,
        mutation: M,
        finish: fn(M::Output) -> Result<T, Error>,
    ) -> Self {
        Write {
            repo,
            mutation,
            finish,
            wait: true,
            rpc_timeout: None,
            replication_timeout: None,
            request_id: request_key::generate(),
            chosen_id: false,
            direct_fallback: None,
        }
    }

    /// The write's request id, known before the write is awaited: a fresh
    /// random one, or the one given to [`Write::request_id`]. If the
    /// future is dropped before it finishes (a client that went away, a
    /// `tokio::time::timeout`, a `select!`), the write may still commit:
    /// in the primary region it runs to its end in a task of its own, and
    /// a forwarded one may have reached the primary region. Either way a
    /// write with this id settles it: it answers with the first write's
    /// output if that one committed, and runs it otherwise. Ids the library
    /// generated are remembered for the repo's `generated_id_retention`
    /// (10 minutes by default).
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, statement: fly_postgres::Statement, again: fly_postgres::Statement) -> Result<(), fly_postgres::Error> {
    /// let write = repo.execute(statement);
    /// let id = write.id().to_owned();
    /// match tokio::time::timeout(std::time::Duration::from_millis(50), write).await {
    ///     Ok(result) => { result?; }
    ///     // Gave up waiting: the same write with the same id settles it.
    ///     Err(_) => { repo.execute(again).request_id(id).await?; }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> &str {
        &self.request_id
    }

    /// The write's request id (default: a fresh random one). Pass a
    /// client's `Idempotency-Key` to make the write exactly-once end to end:
    /// a write with an id the primary has recorded (for the repo's
    /// `request_retention`, 24 h by default) returns the recorded output
    /// instead of running again, and one whose mutation or arguments differ
    /// fails with [`Error::RequestIdReused`]. 1 to 128 characters out of
    /// `A-Z a-z 0-9 - _ . :`; anything else fails with
    /// [`Error::InvalidRequestId`]. Also how an [`Error::MaybeCommitted`]
    /// is settled: write again with its [`Error::request_id`].
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = id.into();
        self.chosen_id = true;
        self
    }

    /// Returns as soon as the primary committed, without waiting for the
    /// local replica (the Elixir library's `await: false`): a read right
    /// after may not see the write yet.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// Deadline of the RPC phase, every retry included (default: the repo's,
    /// 5 s unless set); each attempt gets a share of what is left.
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = Some(timeout);
        self
    }

    /// How long to wait for the local replica (default: the repo's, 5 s
    /// unless set).
    pub fn replication_timeout(mut self, timeout: Duration) -> Self {
        self.replication_timeout = Some(timeout);
        self
    }

    /// Whether this write may run directly on the primary over PostgreSQL
    /// when no primary-region instance takes it (default: the repo's
    /// [`RepoBuilder::direct_fallback`](super::RepoBuilder::direct_fallback);
    /// `true` needs the repo's primary URL, or the write fails with
    /// [`Error::Config`]).
    pub fn direct_fallback(mut self, enabled: bool) -> Self {
        self.direct_fallback = Some(enabled);
        self
    }

    /// Also returns where the write's time went ([`WriteTimings`]).
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, statement: fly_postgres::Statement) -> Result<(), fly_postgres::Error> {
    /// let (rows, timings) = repo.execute(statement).timed().await?;
    /// println!("{rows} rows, RPC {:?}, replica wait {:?}", timings.rpc, timings.replication_wait);
    /// # Ok(()) }
    /// ```
    pub fn timed(self) -> Timed<'r, M, T> {
        Timed(self)
    }

    /// Resolves to [`Written`](crate::Written): the output, and whether the local replica
    /// had replayed the write when the call returned. A write that
    /// committed but was not replayed here in time
    /// ([`Error::ReplicationTimeout`]) is then a success with `replicated:
    /// false`, as it should be for a client: it must not be sent again.
    ///
    // Not run as a doctest: needs a running database.
    /// ```no_run
    /// # async fn demo(repo: fly_postgres::Repo, statement: fly_postgres::Statement) -> Result<(), fly_postgres::Error> {
    /// let written = repo.execute(statement).written().await?;
    /// if !written.replicated {
    ///     println!("{} rows changed; a read here may not see them yet", written.output);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn written(self) -> super::written::WrittenWrite<'r, M, T> {
        super::written::WrittenWrite(self)
    }

    /// [`Write::request_id`] when a key is given: the request's
    /// `Idempotency-Key`, if the client sent one (with the `axum` feature,
    /// `Option<IdempotencyKey>` is an extractor).
    pub fn request_id_opt(self, id: Option<impl Into<String>>) -> Self {
        match id {
            Some(id) => self.request_id(id),
            None => self,
        }
    }
}

/// A [`Write`] that also returns its [`WriteTimings`]; from [`Write::timed`].
#[must_use = "a write does nothing until awaited"]
pub struct Timed<'r, M: Mutation, T>(Write<'r, M, T>);

impl<'r, M: Mutation, T: Send + 'r> IntoFuture for Timed<'r, M, T> {
    type Output = Result<(T, WriteTimings), Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let finish = self.0.finish;
            let (output, timings) = run(self.0).await?;
            let output = finish(output).map_err(unreadable)?;
            Ok((output, timings))
        })
    }
}

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
    let Write {
        repo,
        mutation,
        wait,
        rpc_timeout,
        replication_timeout,
        request_id,
        chosen_id,
        direct_fallback,
        ..
    } = write;
    let inner = &repo.inner;
    let started = Instant::now();
    // Checked here too, not only where they are served, so an app that
    // forgot the opt-in finds out on a laptop, not in its second region.
    if M::NAME == <crate::statement::Statement as Mutation>::NAME && !inner.server.ad_hoc_statements
    {
        metrics::counter!("fly_postgres_ad_hoc_refused_total", "from" => "local").increment(1);
        return Err(Error::AdHocStatementsDisabled { on_primary: false });
    }
    if chosen_id {
        request_key::validate(&request_id)?;
    }
    // A mutation this build did not register is refused in every region,
    // as the primary region would refuse it forwarded: not only once a
    // second region exists.
    if !inner.registered.contains(M::NAME) {
        return Err(Error::UnknownProcedure {
            name: M::NAME.to_owned(),
            peer_version: inner.node.info().version,
        });
    }
    if !inner.config.force_forward && repo.is_primary().await {
        inner.local_writes.fetch_add(1, Ordering::Relaxed);
        let keep = inner.server.retention.of(!chosen_id);
        let (key, args) = RequestKey::with_args(request_id, M::NAME, &mutation, keep)?;
        drop(mutation);
        let deadline = rpc_timeout.unwrap_or(inner.config.rpc_timeout);
        let result = write_locally::<M>(Arc::clone(&inner.server), args, key, deadline)
            .await
            .map(|reply| {
                if let Some(position) = reply.position {
                    crate::consistency::record_write(position);
                }
                (reply.output, reply.attempts)
            });
        record(M::NAME, "local", started, &result);
        let total = started.elapsed();
        return result.map(|(output, attempts)| {
            let timings = WriteTimings {
                total,
                primary: Some(total),
                attempts,
                ..WriteTimings::default()
            };
            crate::consistency::record_timings(&timings);
            (output, timings)
        });
    }

    let fallback = direct_fallback.unwrap_or(inner.config.direct_fallback);
    if fallback && inner.direct.is_none() {
        return Err(Error::Config(
            "direct_fallback(true) needs the repo's primary_url() or primary_pool()".into(),
        ));
    }
    let direct_mode = inner.config.write_mode == WriteMode::Direct;
    if !direct_mode {
        inner.forwarded_writes.fetch_add(1, Ordering::Relaxed);
    }
    // Serialized once, before the first await: retries resend these bytes.
    let call = Forwarded::new(&mutation, !chosen_id)?;
    drop(mutation);
    let rpc_timeout = rpc_timeout.unwrap_or(inner.config.rpc_timeout);
    let span = tracing::info_span!(
        "fly_postgres.write",
        mutation = M::NAME,
        request_id = %request_id,
        primary_region = %repo.primary_region(),
        attempts = tracing::field::Empty,
        lsn = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let result = async {
        let rpc_started = Instant::now();
        let (reply, rpc) = if direct_mode {
            (direct::<M>(repo, &call, &request_id, None).await?, None)
        } else {
            match forward::<M>(repo, call.clone(), rpc_timeout, &request_id).await {
                Ok(reply) => (reply, Some(rpc_started.elapsed())),
                Err(e) if fallback && falls_back(&e) => {
                    let rpc = rpc_started.elapsed();
                    tracing::warn!(error = %e, "no primary-region instance took the write; running it on the primary directly, with the same request id");
                    (direct::<M>(repo, &call, &request_id, Some(e)).await?, Some(rpc))
                }
                Err(e) => return Err(e),
            }
        };
        let mut timings = WriteTimings {
            rpc,
            primary: reply.primary_us.map(Duration::from_micros),
            attempts: reply.attempts,
            ..WriteTimings::default()
        };
        let (output, position) = (reply.output, reply.position);
        let lsn = position.lsn;
        tracing::Span::current().record("lsn", tracing::field::display(lsn));
        crate::consistency::record_write(position);
        if wait {
            let timeout = replication_timeout.unwrap_or(inner.config.replication_timeout);
            let waiting = Instant::now();
            if let Err(e) = inner.tracker.wait_for(lsn, timeout).await {
                // Committed whatever the wait says (a timeout, or a tracker
                // that stopped): the caller gets the output, never a failure.
                let (replayed, waited) = match e {
                    Error::ReplicationTimeout {
                        replayed, waited, ..
                    } => (replayed, waited),
                    _ => (None, waiting.elapsed()),
                };
                return Err(Error::ReplicationTimeout {
                    committed_lsn: lsn,
                    replayed,
                    waited,
                    output: serde_json::to_value(&output).ok(),
                });
            }
            timings.replication_wait = Some(waiting.elapsed());
        }
        timings.total = started.elapsed();
        crate::consistency::record_timings(&timings);
        Ok((output, timings))
    }
    .instrument(span.clone())
    .await;
    span.record("outcome", outcome_label(&result));
    record(
        M::NAME,
        if direct_mode { "direct" } else { "forwarded" },
        started,
        &result,
    );
    result
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

/// Runs the mutation here, in one transaction on the primary over
/// PostgreSQL, with `request_id`'s exactly-once record. After forwarding
/// failed with `forwarded`, a direct attempt that could not even start
/// leaves the forwarded outcome as the answer.
async fn direct<M: Mutation>(
    repo: &Repo,
    call: &Forwarded<M>,
    request_id: &str,
    forwarded: Option<Error>,
) -> Result<Reply<M::Output>, Error> {
    match direct_once(repo, call, request_id).await? {
        Ok(reply) => Ok(reply),
        Err(Failure::NotStarted(e)) => match forwarded {
            Some(forwarded) => {
                tracing::warn!(error = %e, "the direct write could not start either");
                Err(forwarded)
            }
            None => Err(e),
        },
        // Its id is recorded as failed: no earlier attempt commits later.
        Err(Failure::NotCommitted(e)) => Err(e),
        Err(Failure::Unknown(e)) => Err(Error::MaybeCommitted {
            mutation: M::NAME.to_owned(),
            request_id: Some(request_id.to_owned()),
            attempts: 1,
            reason: match forwarded {
                Some(forwarded) => format!(
                    "forwarding failed ({forwarded}), then COMMIT's outcome on the primary is \
                     unknown: {e}"
                ),
                None => format!("COMMIT's outcome on the primary is unknown: {e}"),
            },
        }),
    }
}

async fn direct_once<M: Mutation>(
    repo: &Repo,
    call: &Forwarded<M>,
    request_id: &str,
) -> Result<Result<Reply<M::Output>, Failure>, Error> {
    let Some(state) = &repo.inner.direct else {
        return Err(Error::Config(
            "direct writes need the repo's primary_url() or primary_pool()".into(),
        ));
    };
    let mutation = call.mutation()?;
    let keep = state.retention.of(call.generated_id());
    let key = RequestKey::of(request_id.to_owned(), M::NAME, &mutation, keep)?;
    state.served.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let outcome = run_once(state, mutation, Some(&key)).await;
    let primary_us = u64::try_from(started.elapsed().as_micros()).ok();
    Ok(match outcome {
        Ok(Outcome::Committed(output, position)) => Ok(Reply {
            output,
            position,
            primary_us,
            attempts: 0,
        }),
        // Committed, but its LSN could not be read (run_once already asked
        // twice): ask a few more times on fresh connections; never run the
        // mutation again, and never call it anything but committed.
        Ok(Outcome::CommittedLsnUnknown(output)) => {
            for _ in 0..3 {
                if let Ok(mut conn) = state.pool.acquire().await
                    && let Ok(position) = crate::commit_lsn::commit_position(&mut conn).await
                {
                    return Ok(Ok(Reply {
                        output,
                        position,
                        primary_us,
                        attempts: 0,
                    }));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Err(Error::CommittedButUnreadable {
                reason: "committed on the primary, but its WAL position could not be read to \
                         wait for, so this region may not show it yet"
                    .to_owned(),
                output: serde_json::to_value(&output).ok(),
            });
        }
        Err(f) => Err(f),
    })
}

/// A forwarded write's reply and how many attempts it took.
struct Reply<O> {
    output: O,
    position: WalPosition,
    primary_us: Option<u64>,
    attempts: u32,
}

/// The RPC, retried with the same request id until `budget` is spent, after
/// every failure that can be transient (refused or broken connections, a
/// timeout, an instance that is not primary, none discovered), with capped
/// exponential backoff and fresh discovery between attempts. The primary
/// region records the id with the write, so a retry of a write that did
/// commit returns its recorded output instead of running it twice: an
/// instance that restarts during a deploy costs latency, not an error.
///
/// When the budget runs out the outcome is told truthfully: nothing was sent
/// ([`Error::NoPrimaryNode`]), or a request may have reached the primary
/// region ([`Error::RpcTimeout`] / [`Error::MaybeCommitted`] with the id).
async fn forward<M: Mutation>(
    repo: &Repo,
    call: Forwarded<M>,
    budget: Duration,
    request_id: &str,
) -> Result<Reply<M::Output>, Error> {
    let inner = &repo.inner;
    let candidates = candidate_regions(repo).await;
    let primary = candidates[0].as_str();
    let deadline = Instant::now() + budget;
    let mut turn = 0usize;
    let mut attempt = 0u32;
    let mut sent_any = false;
    let mut backoff = FIRST_BACKOFF;
    let mut last: Option<fly_rpc::Error> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(give_up(
                M::NAME,
                primary,
                request_id,
                budget,
                attempt,
                sent_any,
                last,
            ));
        }
        attempt += 1;
        tracing::Span::current().record("attempts", attempt);
        // A share of what is left, so a hung instance leaves time to try
        // another one.
        let timeout = (remaining / 2).max(MIN_ATTEMPT).min(remaining);
        let mut options = CallOptions::new()
            .timeout(timeout)
            .idempotency_key(request_id)
            .require_primary();
        if inner.config.force_forward {
            options = options.through_wire();
        }
        let region = candidates[turn % candidates.len()].as_str();
        let error = match inner.node.call(region, call.clone(), options).await {
            Ok(Committed {
                output,
                lsn,
                timeline,
                primary_us,
            }) => {
                if let Some(follower) = &inner.follow {
                    follower.taken_by(region);
                }
                return Ok(Reply {
                    output,
                    position: WalPosition::new(timeline, lsn),
                    primary_us,
                    attempts: attempt,
                });
            }
            Err(e) => e,
        };
        match classify(error) {
            AttemptFailure::Transient { sent, error } => {
                sent_any |= sent;
                if candidates.len() > 1 {
                    // Following the primary: this region did not take it
                    // (or did not answer); offer it to the next region
                    // before backing off. The request id keeps it one
                    // commit wherever it lands.
                    turn += 1;
                    if !turn.is_multiple_of(candidates.len()) {
                        tracing::info!(region, error = %error, "no primary here; trying the next region");
                        last = Some(error);
                        continue;
                    }
                }
                inner.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("fly_postgres_write_retries_total", "mutation" => M::NAME)
                    .increment(1);
                tracing::warn!(error = %error, attempt, sent, "forwarded write attempt failed; retrying with the same request id");
                last = Some(error);
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            AttemptFailure::Final { maybe, error } if maybe || sent_any && !settles(&error) => {
                return Err(Error::MaybeCommitted {
                    mutation: M::NAME.to_owned(),
                    request_id: Some(request_id.to_owned()),
                    attempts: attempt,
                    reason: error.to_string(),
                });
            }
            AttemptFailure::Final { error, .. } => return Err(from_rpc(error)),
        }
    }
}

/// Where to send a forwarded write: the primary region, and when the repo
/// follows the primary, every other region discovery knows after it (not
/// this one: its database is not the primary, or the write would have run
/// here).
async fn candidate_regions(repo: &Repo) -> Vec<String> {
    let inner = &repo.inner;
    let mut candidates = vec![repo.primary_region()];
    if inner.follow.is_some()
        && let Ok(known) = inner.node.known_regions().await
    {
        for region in known {
            if region != inner.regions.my_region() && !candidates.contains(&region) {
                candidates.push(region);
            }
        }
    }
    candidates
}

/// Whether a definite answer also settles earlier attempts that may have
/// reached the primary region: only an answer from the write's own
/// transaction does (it claimed the request id, so no earlier attempt
/// committed). A refusal before the handler ran (auth, unknown procedure,
/// bad request) says nothing about them.
fn settles(error: &fly_rpc::Error) -> bool {
    // The write's own transaction answered "committed".
    if matches!(error, fly_rpc::Error::UndecodableOutput { .. }) {
        return true;
    }
    error.remote::<WireError>().is_some_and(|wire| {
        matches!(
            wire,
            WireError::Database(_)
                | WireError::App(_)
                | WireError::Reused { .. }
                | WireError::Primary(_)
                | WireError::NotFound(_)
        )
    })
}

fn give_up(
    mutation: &str,
    primary: &str,
    request_id: &str,
    budget: Duration,
    attempts: u32,
    sent_any: bool,
    last: Option<fly_rpc::Error>,
) -> Error {
    match last {
        // Every instance asked said it has no such mutation: the caller
        // learns which versions answered.
        Some(fly_rpc::Error::UnknownProcedure {
            name, peer_version, ..
        }) if !sent_any => Error::UnknownProcedure { name, peer_version },
        _ if !sent_any => Error::NoPrimaryNode {
            region: primary.to_owned(),
            tried: attempts as usize,
            last_error: last.map_or_else(|| "no attempt".to_owned(), |e| e.to_string()),
        },
        Some(fly_rpc::Error::Timeout { sent: true, .. }) => Error::RpcTimeout {
            mutation: mutation.to_owned(),
            after: budget,
            request_id: request_id.to_owned(),
        },
        last => Error::MaybeCommitted {
            mutation: mutation.to_owned(),
            request_id: Some(request_id.to_owned()),
            attempts,
            reason: last.map_or_else(|| "no answer".to_owned(), |e| e.to_string()),
        },
    }
}

/// An attempt gets at least this long (unless the budget is smaller): a
/// write across an ocean needs a few round trips of slack.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);
/// Backoff between attempts: 25 ms, doubling, capped at 500 ms, so an
/// instance back after a 1 s restart is found within ~0.5 s.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(25);
pub(super) const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Counts a write whose future was dropped before it finished
/// (`outcome="cancelled"`): its request id ([`Write::id`]) settles it.
struct Cancelled {
    mutation: &'static str,
    started: Instant,
    armed: bool,
}

impl Cancelled {
    fn arm(mutation: &'static str, started: Instant) -> Self {
        Cancelled {
            mutation,
            started,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if self.armed {
            metrics::histogram!(
                "fly_postgres_write_seconds",
                "mutation" => self.mutation, "path" => "any", "outcome" => "cancelled"
            )
            .record(self.started.elapsed().as_secs_f64());
        }
    }
}

fn outcome_label<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_committed() => "committed",
        Err(e) if e.is_maybe_committed() => "maybe_committed",
        Err(_) => "error",
    }
}

fn record<T>(
    mutation: &'static str,
    path: &'static str,
    started: Instant,
    result: &Result<T, Error>,
) {
    metrics::histogram!(
        "fly_postgres_write_seconds",
        "mutation" => mutation, "path" => path, "outcome" => outcome_label(result)
    )
    .record(started.elapsed().as_secs_f64());
}
