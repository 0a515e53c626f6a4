//! The primary's position, asked once for every request waiting at that
//! moment. A strong read needs a position read *after* it began; any
//! client may ask for one (`fly-consistency`), so a flood of them must cost
//! the primary one question at a time, not one each.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;

use crate::commit_lsn::commit_position;
use crate::error::Error;
use crate::wal_position::WalPosition;

/// One question in flight at a time; an answer serves every caller that
/// arrived before its question was asked.
#[derive(Default)]
pub(crate) struct PositionFlight {
    /// Questions asked so far; a caller notes it on arrival.
    asked: AtomicU64,
    /// The last answer, with the number of its question. Held while a
    /// question is in flight, so callers queue behind it.
    last: tokio::sync::Mutex<Option<(u64, Result<WalPosition, String>)>>,
}

impl PositionFlight {
    /// The answer of a question asked after this call began: the one in
    /// flight when it started later than the call, else a new one.
    pub(crate) async fn get<F, Fut>(&self, ask: F) -> Result<WalPosition, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<WalPosition, Error>>,
    {
        let arrived = self.asked.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if let Some((number, answer)) = last.as_ref()
            && *number > arrived
        {
            return answer.clone().map_err(|message| Error::Primary {
                message: format!("the primary's position could not be read: {message}"),
            });
        }
        let number = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = ask().await;
        *last = Some((
            number,
            answer.as_ref().map(|p| *p).map_err(ToString::to_string),
        ));
        answer
    }

    /// Questions asked so far.
    pub(crate) fn asked(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }
}

/// How long one question for the database's position may take.
const QUESTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The primary's position read on the database itself, one query at a
/// time, on a connection of its own: a flood of strong reads never takes
/// a connection the writes need.
pub(crate) struct PrimaryPositions {
    pool: PgPool,
    flight: PositionFlight,
}

impl PrimaryPositions {
    /// Reads through one connection to the database `writes` reaches,
    /// opened on first use.
    pub(crate) fn new(writes: &PgPool) -> Self {
        // No ping before each question: across an ocean it would double
        // the question's cost; a broken connection fails one question and
        // is not returned to the pool.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(writes.connect_options().as_ref().clone());
        PrimaryPositions {
            pool,
            flight: PositionFlight::default(),
        }
    }

    /// The database's current flush position (and timeline), or an error
    /// after [`QUESTION_LIMIT`]: a primary behind a silent link must not
    /// hold every reader queued behind the question.
    pub(crate) async fn current(&self) -> Result<WalPosition, Error> {
        self.flight
            .get(|| async {
                let asked = async {
                    let mut conn = self.pool.acquire().await?;
                    commit_position(&mut conn).await
                };
                tokio::time::timeout(QUESTION_LIMIT, asked)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Primary {
                            message: format!(
                                "the primary did not tell its position within {QUESTION_LIMIT:?}"
                            ),
                        })
                    })
            })
            .await
    }

    /// Queries asked so far.
    pub(crate) fn queries(&self) -> u64 {
        self.flight.asked()
    }
}
