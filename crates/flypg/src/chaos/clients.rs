//! The drill's clients: each writes a ledger row with a token of its own
//! through the lax instance, then at once reads it back there, and keeps
//! what it was told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use crate::demo::http::Http;
use crate::percentiles::millis;

/// What a client was told about one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Told {
    /// Committed; `replicated: false` when the app said lax has not replayed
    /// it yet (its replica is behind or down).
    Ok { replicated: bool },
    /// The outcome is unknown (`"committed": "unknown"`, or no answer).
    Maybe(String),
    /// A definite failure, by the app's error code.
    Failed(String),
}

/// What the read right after the write saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    Seen,
    Stale,
    Failed(String),
}

/// One write and its read-back.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub(crate) token: String,
    pub(crate) told: Told,
    pub(crate) write_ms: f64,
    pub(crate) read: Option<Read>,
    pub(crate) read_ms: f64,
}

/// Longer than any configured timeout of the app: an answer that takes this
/// long is a stall, reported as such.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes and reads until `stop`; returns every operation.
pub(crate) async fn run(
    http: Http,
    base: String,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut n = 0u64;
    let write_url = format!("{base}/ledger");
    while !stop.load(Ordering::Relaxed) {
        let token = format!("{prefix}-{n}");
        n += 1;
        let started = Instant::now();
        let answer = write_ledger(&http, &write_url, &token, &stop).await;
        let write_ms = millis(started.elapsed());
        let told = match answer {
            Err(_) => Told::Maybe("client_timeout".into()),
            Ok(Err(e)) => Told::Maybe(format!("http: {e}")),
            Ok(Ok(a)) if a.status == StatusCode::CREATED => Told::Ok {
                replicated: a.replicated,
            },
            Ok(Ok(a)) if a.body["committed"] == "unknown" => {
                Told::Maybe(error_code(&a.body, a.status))
            }
            Ok(Ok(a)) => Told::Failed(error_code(&a.body, a.status)),
        };
        let (read, read_ms) = if matches!(told, Told::Ok { .. }) {
            let started = Instant::now();
            // A GET is safe to send again, as any HTTP client does.
            let url = format!("{base}/ledger/{token}");
            let answer = repeating(&stop, || http.get(&url)).await;
            let read = match answer {
                Err(_) => Read::Failed("client_timeout".into()),
                Ok(Err(_)) => Read::Failed("http".into()),
                Ok(Ok(a)) if a.status == StatusCode::OK => {
                    if a.body["rows"].as_i64().unwrap_or(0) > 0 {
                        Read::Seen
                    } else {
                        Read::Stale
                    }
                }
                Ok(Ok(a)) => Read::Failed(error_code(&a.body, a.status)),
            };
            (Some(read), millis(started.elapsed()))
        } else {
            // A failed or unknown write: back off a little, as a client would.
            tokio::time::sleep(Duration::from_millis(50)).await;
            (None, 0.0)
        };
        ops.push(Op {
            token,
            told,
            write_ms,
            read,
            read_ms,
        });
    }
    ops
}

/// Writes a ledger row under `token` at `url`, sent again as
/// [`repeating`] allows. The token is the write's Idempotency-Key, as the
/// library asks of clients: a repeat after a lost answer writes nothing
/// twice.
async fn write_ledger(
    http: &Http,
    url: &str,
    token: &str,
    stop: &AtomicBool,
) -> Result<crate::demo::http::HttpResult<crate::demo::http::Answer>, tokio::time::error::Elapsed> {
    let key = [("idempotency-key", token)];
    repeating(stop, || {
        http.send_with(
            hyper::Method::POST,
            url,
            Some(json!({ "token": token })),
            &key,
        )
    })
    .await
}

/// Sends a request (each within the client timeout), and again while the
/// instance is restarting (a deploy): it refused the connection (nothing
/// was sent; Fly's proxy would pick another instance), or closed its
/// keep-alive connection as the request went out (at most twice). Only
/// for requests that are safe to repeat: a GET, or a write with an
/// Idempotency-Key.
async fn repeating<F, Fut>(
    stop: &AtomicBool,
    mut send: F,
) -> Result<crate::demo::http::HttpResult<crate::demo::http::Answer>, tokio::time::error::Elapsed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::demo::http::HttpResult<crate::demo::http::Answer>>,
{
    let mut tries = 0;
    loop {
        let answer = tokio::time::timeout(CLIENT_TIMEOUT, send()).await;
        tries += 1;
        match &answer {
            Ok(Err(e))
                if (is_connect_error(e.as_ref()) || tries < 3) && !stop.load(Ordering::Relaxed) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => return answer,
        }
    }
}

/// Whether the request failed to connect, before any byte was sent.
fn is_connect_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

fn error_code(body: &serde_json::Value, status: StatusCode) -> String {
    body["error"]
        .as_str()
        .map_or_else(|| format!("http_{}", status.as_u16()), str::to_owned)
}

/// What the bounded readers saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BoundedReads {
    pub(crate) reads: usize,
    /// Answered with `fly-read-from: primary` (the layer's fallback).
    pub(crate) from_primary: usize,
    /// Missed a row acknowledged more than the bound before the read.
    pub(crate) stale: usize,
    pub(crate) failed: usize,
}

impl BoundedReads {
    pub(crate) fn add(&mut self, other: BoundedReads) {
        self.reads += other.reads;
        self.from_primary += other.from_primary;
        self.stale += other.stale;
        self.failed += other.failed;
    }
}

/// The bound the readers ask for.
pub(crate) const BOUND: Duration = Duration::from_secs(1);

/// Until `stop`: writes a ledger row in the primary region (`syd`), lets
/// it grow older than [`BOUND`], then reads it in lax with
/// `fly-consistency: bounded=1s`: whatever lax's replica does, the read
/// must show it.
pub(crate) async fn bounded_reader(
    http: Http,
    syd: String,
    lax: String,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> BoundedReads {
    let mut seen = BoundedReads::default();
    let mut n = 0u64;
    let write_url = format!("{syd}/ledger");
    while !stop.load(Ordering::Relaxed) {
        let token = format!("{prefix}-{n}");
        n += 1;
        let written = write_ledger(&http, &write_url, &token, &stop).await;
        if !matches!(&written, Ok(Ok(a)) if a.status == StatusCode::CREATED) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        tokio::time::sleep(BOUND + Duration::from_millis(50)).await;
        let url = format!("{lax}/ledger/{token}");
        let headers = [("fly-consistency", "bounded=1s")];
        let answer = tokio::time::timeout(
            CLIENT_TIMEOUT,
            http.send_with(hyper::Method::GET, &url, None, &headers),
        )
        .await;
        seen.reads += 1;
        match answer {
            Ok(Ok(a)) if a.status == StatusCode::OK => {
                if a.body["rows"].as_i64().unwrap_or(0) == 0 {
                    seen.stale += 1;
                } else if a.from_primary {
                    seen.from_primary += 1;
                }
            }
            _ => seen.failed += 1,
        }
    }
    seen
}
