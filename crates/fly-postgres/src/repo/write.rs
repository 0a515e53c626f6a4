//! One write call and its options.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fly_rpc::CallOptions;
use tracing::Instrument;

use super::Repo;
use super::forward::{Committed, Forwarded, from_rpc, retryable};
use super::transaction::{Failure, Outcome, run_once};
use crate::error::Error;
use crate::lsn::Lsn;
use crate::mutation::Mutation;

/// A pending write; `.await` it. Built by [`Repo::write`],
/// [`Repo::execute`] and friends.
#[must_use = "a write does nothing until awaited"]
pub struct Write<'r, M: Mutation, T> {
    repo: &'r Repo,
    mutation: M,
    finish: fn(M::Output) -> Result<T, Error>,
    wait: bool,
    rpc_timeout: Option<Duration>,
    replication_timeout: Option<Duration>,
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
        }
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
}

impl<'r, M: Mutation, T: Send + 'r> IntoFuture for Write<'r, M, T> {
    type Output = Result<T, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'r>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let finish = self.finish;
            let output = run(self).await?;
            finish(output)
        })
    }
}

async fn run<M: Mutation, T>(write: Write<'_, M, T>) -> Result<M::Output, Error> {
    let Write {
        repo,
        mutation,
        wait,
        rpc_timeout,
        replication_timeout,
        ..
    } = write;
    let inner = &repo.inner;
    let started = Instant::now();
    if inner.regions.is_primary() {
        inner.local_writes.fetch_add(1, Ordering::Relaxed);
        let result = match run_once(&inner.server, mutation, None).await {
            Ok(Outcome::Committed(output, lsn)) => {
                crate::consistency::record_write(lsn);
                Ok(output)
            }
            // Committed; only the consistency cookie misses its LSN.
            Ok(Outcome::CommittedLsnUnknown(output)) => Ok(output),
            // Locally there is no request id to settle an unknown COMMIT
            // with: the caller gets the connection error.
            Err(Failure::NotCommitted(e) | Failure::Unknown(e)) => Err(e),
        };
        record(M::NAME, "local", started, result.is_ok());
        return result;
    }

    inner.forwarded_writes.fetch_add(1, Ordering::Relaxed);
    // Serialized once, before the first await: retries resend these bytes.
    let call = Forwarded::new(&mutation)?;
    drop(mutation);
    let rpc_timeout = rpc_timeout.unwrap_or(inner.config.rpc_timeout);
    let request_id = hex::encode(rand::random::<[u8; 16]>());
    let span = tracing::info_span!(
        "fly_postgres.write",
        mutation = M::NAME,
        request_id = %request_id,
        primary_region = inner.regions.primary_region(),
        attempts = tracing::field::Empty,
        lsn = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let result = async {
        let (output, lsn) = forward::<M>(repo, call, rpc_timeout, &request_id).await?;
        tracing::Span::current().record("lsn", tracing::field::display(lsn));
        crate::consistency::record_write(lsn);
        if wait {
            let timeout = replication_timeout.unwrap_or(inner.config.replication_timeout);
            if let Err(e) = inner.tracker.wait_for(lsn, timeout).await {
                return Err(match e {
                    Error::ReplicationTimeout {
                        committed_lsn,
                        replayed,
                        waited,
                        ..
                    } => Error::ReplicationTimeout {
                        committed_lsn,
                        replayed,
                        waited,
                        output: serde_json::to_value(&output).ok(),
                    },
                    other => other,
                });
            }
        }
        Ok(output)
    }
    .instrument(span.clone())
    .await;
    span.record("outcome", if result.is_ok() { "ok" } else { "error" });
    record(M::NAME, "forwarded", started, result.is_ok());
    result
}

/// The RPC, retried with the same request id after a timeout or a broken
/// connection: the primary region records the id with the write, so a retry
/// of a write that did commit returns its recorded output instead of running
/// it twice. `budget` bounds all attempts together; each gets a share of
/// what is left, so a hung instance leaves time to try another.
async fn forward<M: Mutation>(
    repo: &Repo,
    call: Forwarded<M>,
    budget: Duration,
    request_id: &str,
) -> Result<(M::Output, Lsn), Error> {
    let inner = &repo.inner;
    let primary = inner.regions.primary_region();
    let deadline = Instant::now() + budget;
    let attempts = inner.config.retries.saturating_add(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        tracing::Span::current().record("attempts", attempt);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::RpcTimeout {
                mutation: M::NAME.to_owned(),
                after: budget,
            });
        }
        let share = remaining / (attempts - attempt + 1).max(1);
        let timeout = share.max(MIN_ATTEMPT).min(remaining);
        let options = CallOptions::new()
            .timeout(timeout)
            .idempotency_key(request_id)
            .require_primary();
        match inner.node.call(primary, call.clone(), options).await {
            Ok(Committed { output, lsn }) => return Ok((output, lsn)),
            Err(e) if retryable(&e) && attempt < attempts => {
                inner.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("fly_postgres_write_retries_total", "mutation" => M::NAME)
                    .increment(1);
                tracing::warn!(error = %e, attempt, "forwarded write failed; retrying with the same request id");
                let backoff = Duration::from_millis(25) * 2u32.pow(attempt.min(6));
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(backoff.min(left / 4)).await;
            }
            Err(fly_rpc::Error::Timeout { .. }) => {
                return Err(Error::RpcTimeout {
                    mutation: M::NAME.to_owned(),
                    after: budget,
                });
            }
            Err(e) => return Err(from_rpc(e, M::NAME)),
        }
    }
}

/// An attempt gets at least this long (unless the budget is smaller): a
/// write across an ocean needs a few round trips of slack.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

fn record(mutation: &'static str, path: &'static str, started: Instant, ok: bool) {
    metrics::histogram!(
        "fly_postgres_write_seconds",
        "mutation" => mutation, "path" => path, "outcome" => if ok { "ok" } else { "error" }
    )
    .record(started.elapsed().as_secs_f64());
}
