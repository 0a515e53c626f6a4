//! The writes the repo benchmark measures.

use fly_postgres::{Error, Mutation, sqlx};
use serde::{Deserialize, Serialize};

/// The benchmark's schema (created on the primary).
pub(crate) const SCHEMA: &str = "
create table items (id bigserial primary key, payload text not null);
create table accounts (id bigint primary key, balance bigint not null);
create table transfers (id bigserial primary key, from_id bigint, to_id bigint, amount bigint);
insert into accounts values (1, 1000000000), (2, 0);
";

/// One statement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InsertItem {
    pub(crate) payload: String,
}

impl Mutation for InsertItem {
    const NAME: &'static str = "bench.insert_item";
    type Output = i64;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<i64, Error> {
        Ok(
            sqlx::query_scalar("insert into items (payload) values ($1) returning id")
                .bind(self.payload)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

/// Three statements: a business operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Transfer {
    pub(crate) amount: i64,
}

/// The three statements of [`Transfer`], shared with the direct baseline.
pub(crate) const TRANSFER_SQL: [&str; 3] = [
    "update accounts set balance = balance - $1 where id = 1",
    "update accounts set balance = balance + $1 where id = 2",
    "insert into transfers (from_id, to_id, amount) values (1, 2, $1)",
];

impl Mutation for Transfer {
    const NAME: &'static str = "bench.transfer";
    type Output = ();
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<(), Error> {
        for sql in TRANSFER_SQL {
            sqlx::query(sql).bind(self.amount).execute(&mut *tx).await?;
        }
        Ok(())
    }
}
