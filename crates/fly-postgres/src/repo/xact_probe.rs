//! What a write without a request record keeps to settle a COMMIT whose
//! answer was lost: its transaction id and the WAL position it had reached
//! before COMMIT, read in one small round trip right before COMMIT.
//!
//! A lost answer leaves the write's output in the caller's memory; only
//! COMMIT's outcome is unknown, and PostgreSQL keeps that itself
//! (`pg_xact_status`), also on a promoted synchronous standby, where commit
//! records arrive in the WAL. See [`super::xact_settle`].

use sqlx::{PgConnection, Row};

use crate::commit_lsn::position_of_row;
use crate::lsn::Lsn;
use crate::wal_position::WalPosition;

/// Read inside the write's transaction, after its mutation and before
/// COMMIT: the transaction id if the mutation wrote anything (no id is
/// assigned for it here, so a read-only mutation costs none), this
/// backend's pid, and the position every WAL record of the transaction so
/// far lies before. A transaction the mutation left aborted fails here, so
/// COMMIT is never sent for it.
const PROBE_SQL: &str = "select pg_current_xact_id_if_assigned()::text, pg_backend_pid(), \
     pg_current_wal_insert_lsn()::text, pg_walfile_name(pg_current_wal_insert_lsn())";

/// A transaction as the database names it, and where its WAL stood before
/// COMMIT: enough for any node of the cluster to settle its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XactRef {
    /// The cluster's system identifier.
    pub(crate) system_id: u64,
    /// The full (epoch-qualified) transaction id, `xid8`.
    pub(crate) xid: u64,
    /// The insert position before COMMIT: the commit record comes after it.
    pub(crate) before_commit: WalPosition,
}

/// [`XactRef`] as probed, with the backend that runs it. `xid` is `None`
/// when the mutation wrote nothing: then COMMIT changes nothing either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XactProbe {
    pub(crate) xid: Option<u64>,
    pub(crate) pid: i32,
    pub(crate) before_commit: WalPosition,
}

impl XactProbe {
    /// The transaction on cluster `system_id`, if it has an id.
    pub(crate) fn xact(&self, system_id: u64) -> Option<XactRef> {
        Some(XactRef {
            system_id,
            xid: self.xid?,
            before_commit: self.before_commit,
        })
    }
}

/// Runs [`PROBE_SQL`] on the write's connection.
pub(crate) async fn probe(conn: &mut PgConnection) -> Result<XactProbe, sqlx::Error> {
    let row = sqlx::query(PROBE_SQL).fetch_one(conn).await?;
    let decode = |e: String| sqlx::Error::Decode(e.into());
    let xid = row
        .try_get::<Option<String>, _>(0)?
        .map(|xid| {
            xid.parse::<u64>()
                .map_err(|e| decode(format!("xid {xid:?}: {e}")))
        })
        .transpose()?;
    Ok(XactProbe {
        xid,
        pid: row.try_get(1)?,
        before_commit: position_of_row(&row, 2)?,
    })
}

/// Marks a settle id: `<request id>:x<xid>:<system id>:<timeline>:<lsn>`,
/// every number in lowercase hexadecimal but the xid.
const MARK: &str = ":x";

impl XactRef {
    /// The request id a caller settles this write with on any node: the
    /// write's own id with the transaction appended. Only characters a
    /// request id may hold (`A-Z a-z 0-9 - _ . :`).
    pub(crate) fn settle_id(&self, request_id: &str) -> String {
        format!(
            "{request_id}{MARK}{}:{:x}:{:x}:{:x}",
            self.xid,
            self.system_id,
            self.before_commit.timeline.unwrap_or(0),
            u64::from(self.before_commit.lsn)
        )
    }

    /// Splits a settle id into the write's request id and its transaction;
    /// `None` for any other id, a caller's own included.
    pub(crate) fn parse_settle_id(id: &str) -> Option<(&str, XactRef)> {
        let at = id.rfind(MARK)?;
        let (base, rest) = (&id[..at], &id[at + MARK.len()..]);
        let mut fields = rest.split(':');
        let xid = fields.next()?.parse::<u64>().ok()?;
        let system_id = u64::from_str_radix(fields.next()?, 16).ok()?;
        let timeline = u32::from_str_radix(fields.next()?, 16).ok()?;
        let lsn = u64::from_str_radix(fields.next()?, 16).ok()?;
        if fields.next().is_some() || base.is_empty() {
            return None;
        }
        Some((
            base,
            XactRef {
                system_id,
                xid,
                before_commit: WalPosition::new((timeline > 0).then_some(timeline), Lsn::new(lsn)),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_ids_round_trip_and_stay_valid_request_ids() {
        let xact = XactRef {
            system_id: u64::MAX,
            xid: u64::MAX,
            before_commit: WalPosition::new(Some(u32::MAX), Lsn::new(u64::MAX)),
        };
        let base = "0123456789abcdef0123456789abcdef";
        let id = xact.settle_id(base);
        crate::request_key::validate(&id).expect("a valid request id");
        assert_eq!(XactRef::parse_settle_id(&id), Some((base, xact)));
        let plain = XactRef {
            before_commit: WalPosition::new(None, Lsn::new(0x16b3748)),
            ..xact
        };
        assert_eq!(
            XactRef::parse_settle_id(&plain.settle_id(base)),
            Some((base, plain))
        );
    }

    #[test]
    fn other_ids_are_not_settle_ids() {
        for id in [
            "order:42",
            "a:x1:2:3",
            "a:x1:2:3:4:5",
            ":x1:2:3:4",
            "a:xz:2:3:4",
            "a:x1:2:3:g",
            "0b6e4a4e-9c1f-4a8e-8f4e-2f4c1b0f9a77",
        ] {
            assert_eq!(XactRef::parse_settle_id(id), None, "{id}");
        }
    }
}
