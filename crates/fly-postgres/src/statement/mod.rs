//! Ad-hoc single-statement writes: SQL text plus serializable parameters.

mod bind;
mod param;
mod row_json;

use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::Either;
use sqlx::PgConnection;
use sqlx::postgres::PgQueryResult;

pub use param::Param;

use crate::error::Error;
use crate::mutation::Mutation;

/// SQL with bound parameters, run like a [`Mutation`] by
/// [`crate::Repo::execute`] and friends: next to the primary, in its own
/// transaction, with `RETURNING` rows sent back.
///
/// ```
/// let stmt = fly_postgres::query("update todos set done = $1 where id = $2 returning *")
///     .bind(true)
///     .bind(42_i64);
/// assert_eq!(stmt.params().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    sql: String,
    params: Vec<Param>,
}

/// Starts an ad-hoc statement. As with `sqlx::query`, the text must be a
/// `&'static str` or wrapped in [`sqlx::AssertSqlSafe`] after an audit:
/// values go in with [`Statement::bind`], never into the text.
pub fn query(sql: impl sqlx::SqlSafeStr) -> Statement {
    Statement {
        sql: sql.into_sql_str().as_str().to_owned(),
        params: Vec::new(),
    }
}

impl Statement {
    /// Binds the next `$n` parameter.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The bound parameters, in order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// What an ad-hoc statement returned: its rows as JSON objects and the
/// number of rows it changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
    rows_affected: u64,
}

impl StatementResult {
    /// Rows inserted, updated or deleted.
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }

    /// The returned rows, as JSON objects keyed by column name.
    pub fn rows(&self) -> &[serde_json::Map<String, serde_json::Value>] {
        &self.rows
    }

    /// Decodes every returned row into `T`.
    pub fn decode_all<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        self.rows.iter().map(decode_row).collect()
    }

    /// Decodes the first returned row, if any.
    pub fn decode_optional<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.rows.first().map(decode_row).transpose()
    }

    /// The committed-class error for this committed result that did not
    /// decode as asked; it carries the result for
    /// [`Error::committed_output`].
    pub(crate) fn unreadable(&self, error: Error) -> Error {
        Error::CommittedButUnreadable {
            reason: error.to_string(),
            output: serde_json::to_value(self).ok(),
        }
    }
}

fn decode_row<T: DeserializeOwned>(
    row: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, Error> {
    T::deserialize(serde_json::Value::Object(row.clone())).map_err(|e| Error::Decode {
        message: format!("a returned row does not fit the requested type: {e}"),
    })
}

impl Mutation for Statement {
    const NAME: &'static str = "fly_postgres.execute";
    type Output = StatementResult;

    async fn run(self, tx: &mut PgConnection) -> Result<StatementResult, Error> {
        // The text came from `query()` on the calling node (a static string
        // or an audited one), over an authenticated RPC; values are bound.
        let query = bind::bind(sqlx::query(sqlx::AssertSqlSafe(self.sql)), &self.params)?;
        let mut result = StatementResult::default();
        #[allow(deprecated)]
        let mut stream = query.fetch_many(&mut *tx);
        while let Some(item) = stream.try_next().await? {
            match item {
                Either::Left(done) => result.rows_affected += PgQueryResult::rows_affected(&done),
                Either::Right(row) => result.rows.push(row_json::row_to_json(&row)?),
            }
        }
        Ok(result)
    }
}
