//! The last round trip of a write: its exactly-once record, COMMIT and the
//! commit LSN, sent as one simple-protocol query.
//!
//! Each round trip to the primary costs ~0.1-0.2 ms even on loopback, and a
//! forwarded write used to pay six besides its own statements (claim,
//! output update, COMMIT, LSN...). The record is now inserted once, with its
//! output, right before COMMIT: a second attempt with the same request id
//! that runs concurrently blocks on the first one's uncommitted key and then
//! fails on it, so it rolls back and answers from the record; the mutation
//! never commits twice.

use futures_util::TryStreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Either};

use crate::commit_lsn::{COMMIT_POSITION_SQL, position_of_row};
use crate::request_key::RequestKey;
use crate::wal_position::WalPosition;

/// The record to insert with the commit.
pub(crate) struct Record<'a> {
    pub(crate) key: &'a RequestKey,
    pub(crate) mutation: &'a str,
    pub(crate) output: &'a str,
}

/// How the round trip ended.
#[derive(Debug)]
pub(crate) enum Finished {
    /// Committed; readers wait for this LSN.
    Committed(WalPosition),
    /// Committed, but the LSN did not come back.
    CommittedLsnUnknown(sqlx::Error),
    /// The server answered with an error before COMMIT completed (the record
    /// exists already, a deferred constraint, a read-only database): nothing
    /// was committed. `transaction_open` tells whether a ROLLBACK is due.
    Refused {
        error: sqlx::Error,
        transaction_open: bool,
    },
    /// The connection failed, or COMMIT failed in a way that can follow a
    /// durable commit (see `fails_after_commit`): it may or may not have
    /// committed.
    Unknown(sqlx::Error),
}

/// Sends `[INSERT record;] [SET LOCAL ...;] COMMIT; SELECT flush LSN; BEGIN`
/// on `conn`, which is inside the write's transaction (`probed`: the
/// transaction answered a statement since its mutation ran).
///
/// The trailing `BEGIN` leaves the connection in an empty transaction, so
/// the ROLLBACK sqlx queues when its `Transaction` guard drops ends that one
/// (flushed with the pool's release ping, off the caller's path) instead of
/// drawing a "no transaction in progress" warning into the server's log.
pub(crate) async fn commit_with_record(
    conn: &mut PgConnection,
    record: Option<Record<'_>>,
    force_local_flush: bool,
    probed: bool,
) -> Finished {
    let (sql, before_commit) = round_trip_sql(record.as_ref(), force_local_flush, probed);
    let mut completed = 0usize;
    let mut lsn: Option<Result<WalPosition, sqlx::Error>> = None;
    let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(&mut *conn);
    loop {
        match results.try_next().await {
            Ok(Some(Either::Left(_done))) => completed += 1,
            // Only the row of the SELECT right after COMMIT is the LSN.
            Ok(Some(Either::Right(row))) if completed == before_commit + 1 => {
                lsn = Some(position_of_row(&row, 0));
            }
            Ok(Some(Either::Right(_))) => {}
            Ok(None) => break,
            Err(error) => return failed_at(error, completed, before_commit),
        }
    }
    match lsn {
        Some(Ok(lsn)) => Finished::Committed(lsn),
        Some(Err(e)) => Finished::CommittedLsnUnknown(e),
        None => Finished::CommittedLsnUnknown(sqlx::Error::RowNotFound),
    }
}

/// The round trip's SQL, and how many of its statements complete before
/// COMMIT's own completion.
fn round_trip_sql(
    record: Option<&Record<'_>>,
    force_local_flush: bool,
    probed: bool,
) -> (String, usize) {
    let mut sql = String::new();
    if let Some(r) = record {
        sql.push_str(&format!(
            "insert into fly_postgres_requests (id, mutation, args_digest, output, keep_until) \
             values ({}, {}, {}, {}, now() + make_interval(secs => {}));\n",
            literal(&r.key.id),
            literal(r.mutation),
            literal(&r.key.digest),
            literal(r.output),
            r.key.keep.as_secs()
        ));
    }
    if force_local_flush {
        // Last before COMMIT, so a mutation's own SET cannot undo it: with
        // synchronous_commit = off the flush LSN read after COMMIT might
        // not cover the commit yet.
        sql.push_str("set local synchronous_commit to local;\n");
    }
    // A mutation that swallowed an error leaves the transaction aborted,
    // and COMMIT then answers "ROLLBACK" without an error (sqlx does not
    // show the tag). Some statement before COMMIT must fail in that case:
    // the record, the SET or the transaction's probe (`probed`, a round
    // trip before) does; otherwise this one.
    let guard = record.is_none() && !force_local_flush && !probed;
    if guard {
        sql.push_str("select 1;\n");
    }
    let before_commit =
        usize::from(record.is_some()) + usize::from(force_local_flush) + usize::from(guard);
    sql.push_str("commit;\n");
    sql.push_str(COMMIT_POSITION_SQL);
    sql.push_str(";\nbegin");
    (sql, before_commit)
}

/// What an error after `completed` statements means for the commit.
fn failed_at(error: sqlx::Error, completed: usize, before_commit: usize) -> Finished {
    let committed = completed > before_commit;
    match (committed, error.as_database_error().is_some()) {
        (true, _) => Finished::CommittedLsnUnknown(error),
        (false, true) if completed == before_commit && fails_after_commit(&error) => {
            Finished::Unknown(error)
        }
        (false, true) => Finished::Refused {
            // A failing COMMIT ends the transaction itself.
            transaction_open: completed < before_commit,
            error,
        },
        (false, false) => Finished::Unknown(error),
    }
}

/// Whether an error answering COMMIT may have come after the commit was
/// durable (see [`crate::db_error::may_follow_commit`]).
fn fails_after_commit(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| crate::db_error::may_follow_commit(&code))
}

/// `text` as a dollar-quoted literal, whose content PostgreSQL never
/// unescapes whatever `standard_conforming_strings` says. The tag
/// (`$fp$`, `$fp1$`, `$fp2$`, ...) is one that neither occurs in `text` nor
/// completes one at its end (`text` ending in `$fp1` would close on the
/// tag's last `$`). An output may echo client input made of tags, so the
/// tag is chosen in one pass over `text`, never by trying tags in turn.
fn literal(text: &str) -> String {
    // The digits of every `$fp<digits>$` in `text`, and of a `$fp<digits>`
    // it ends with.
    let mut taken: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("$fp") {
        let digits_start = from + at + 3;
        let digits_end = digits_start
            + bytes[digits_start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        if digits_end == bytes.len() || bytes[digits_end] == b'$' {
            taken.insert(&text[digits_start..digits_end]);
        }
        from = digits_start;
    }
    // At most `taken.len()` tags are out, so one of the first
    // `taken.len() + 1` is free.
    let tag = (0..=taken.len())
        .map(|n| if n == 0 { String::new() } else { n.to_string() })
        .find(|digits| !taken.contains(digits.as_str()))
        .map_or_else(|| "fp".to_owned(), |digits| format!("fp{digits}"));
    let mut quoted = String::with_capacity(text.len() + 2 * tag.len() + 4);
    for part in ["$", &tag, "$", text, "$", &tag, "$"] {
        quoted.push_str(part);
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_cannot_be_closed_early() {
        assert_eq!(literal("abc"), "$fp$abc$fp$");
        assert_eq!(literal("a$fp$b"), "$fp1$a$fp$b$fp1$");
        // A text ending in part of the tag would close on the tag itself.
        assert_eq!(literal("x$fp"), "$fp1$x$fp$fp1$");
        assert_eq!(literal("x$"), "$fp$x$$fp$");
        assert_eq!(literal("it's \\ \"ok\""), "$fp$it's \\ \"ok\"$fp$");
        assert_eq!(literal("$fp$$fp1$$fp3$"), "$fp2$$fp$$fp1$$fp3$$fp2$");
        assert_eq!(literal("$fp12"), "$fp$$fp12$fp$");
        assert_eq!(literal("a$fp"), "$fp1$a$fp$fp1$");
    }

    /// Whatever the text, its literal closes exactly at its end.
    #[test]
    fn the_chosen_tag_closes_only_at_the_end() {
        let runs: String = (0..300)
            .map(|n| {
                if n == 0 {
                    "$fp$".to_owned()
                } else {
                    format!("$fp{n}$")
                }
            })
            .collect();
        for text in [
            runs.as_str(),
            "$fp",
            "$fp$fp",
            "$$$",
            "$fp0$$fp00$",
            "x$fp299",
        ] {
            let quoted = literal(text);
            let tag_len = quoted[1..].find('$').unwrap() + 2;
            let tag = &quoted[..tag_len];
            assert_eq!(
                quoted[tag_len..].find(tag),
                Some(text.len()),
                "{text:?} quoted as {quoted:?}"
            );
            assert_eq!(&quoted[tag_len..tag_len + text.len()], text);
        }
        assert!(literal(&runs).starts_with("$fp300$"));
    }
}
