//! What the current request wrote, saw and spent on writes, kept in a
//! task-local record: the repo notes each write here, and the
//! [`ConsistencyLayer`](crate::ConsistencyLayer) turns the record into the
//! response's token and `Server-Timing`. A leaf both sides use, so the
//! write path never calls into the HTTP middleware.

use std::cell::Cell;

use crate::wal_position::WalPosition;
use crate::write_timings::WriteTimings;

/// What the current request left for its response.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RequestRecord {
    pub(crate) written: Option<WalPosition>,
    pub(crate) seen: Option<WalPosition>,
    pub(crate) timings: Option<WriteTimings>,
    pub(crate) from_primary: bool,
}

tokio::task_local! {
    static RECORD: Cell<RequestRecord>;
}

fn update(change: impl FnOnce(&mut RequestRecord)) {
    let _ = RECORD.try_with(|cell| {
        let mut record = cell.get();
        change(&mut record);
        cell.set(record);
    });
}

/// Notes that the current request committed a write at `position`. The
/// repo calls it after every write; outside a [`ConsistencyLayer`](crate::ConsistencyLayer) it does
/// nothing.
pub(crate) fn record_write(position: WalPosition) {
    update(|r| r.written = Some(WalPosition::latest(r.written, position)));
}

/// Notes that the current request's reads saw the database at `position`
/// (session and strong modes).
pub(crate) fn record_seen(position: WalPosition) {
    update(|r| r.seen = Some(WalPosition::latest(r.seen, position)));
}

/// Whether the current request reads from the primary.
pub(crate) fn reading_from_primary() -> bool {
    RECORD
        .try_with(|cell| cell.get().from_primary)
        .unwrap_or(false)
}

/// Keeps the writes made so far in this request from reaching the client:
/// the [`ConsistencyLayer`](crate::ConsistencyLayer) sends no token for them, so the client's next
/// request does not wait for them. For a page that shows what a read
/// without the wait looks like; everything else wants the token. Outside a
/// [`ConsistencyLayer`](crate::ConsistencyLayer) it does nothing.
pub fn forget_written_lsn() {
    update(|r| r.written = None);
}

/// Adds a write's phases to the current request's; outside a
/// [`ConsistencyLayer`](crate::ConsistencyLayer) it does nothing.
pub(crate) fn record_timings(timings: &WriteTimings) {
    update(|r| {
        let mut total = r.timings.unwrap_or_default();
        total.add(timings);
        r.timings = Some(total);
    });
}

/// Runs `future` with a fresh record (`seen` already noted), and returns
/// what it left.
pub(crate) async fn recording<F: Future>(
    seen: Option<WalPosition>,
    from_primary: bool,
    future: F,
) -> (F::Output, RequestRecord) {
    let start = RequestRecord {
        seen,
        from_primary,
        ..RequestRecord::default()
    };
    RECORD
        .scope(Cell::new(start), async {
            let output = future.await;
            (output, RECORD.with(Cell::get))
        })
        .await
}
