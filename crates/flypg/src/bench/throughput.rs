//! Calls per second with many concurrent callers, for the benchmarks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a failing call returns.
pub(crate) type CallError = Box<dyn std::error::Error + Send + Sync>;

/// Runs `call` from `callers` tasks, each back to back, for `length`;
/// returns completed calls per second. The first failing call fails the run.
pub(crate) async fn throughput<F, Fut>(
    callers: usize,
    length: Duration,
    call: F,
) -> Result<f64, Box<dyn std::error::Error>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), CallError>> + Send,
{
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (call, done) = (call.clone(), Arc::clone(&done));
        tasks.spawn(async move {
            while Instant::now() < deadline {
                call().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), CallError>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result?.map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
