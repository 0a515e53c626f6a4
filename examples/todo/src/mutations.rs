//! The app's writes: each runs next to the primary in one transaction.

use fly_postgres::Error;
use fly_postgres::sqlx::PgConnection;
use serde::{Deserialize, Serialize};

/// A todo, as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Todo {
    /// Its id.
    pub id: i64,
    /// Its title (unique).
    pub title: String,
    /// Whether it is done.
    pub done: bool,
}

/// A statement with the todo's columns in its `RETURNING` clause, as one
/// `&'static str` (sqlx only takes literal SQL without an audit).
macro_rules! returning_todo {
    ($sql:literal) => {
        concat!($sql, " returning id, title, done")
    };
}

/// Adds a todo.
#[fly_postgres::mutation(name = "todo.create")]
pub async fn create_todo(tx: &mut PgConnection, title: String) -> Result<Todo, Error> {
    Ok(
        sqlx::query_as(returning_todo!("insert into todos (title) values ($1)"))
            .bind(title)
            .fetch_one(&mut *tx)
            .await?,
    )
}

/// Adds several todos at once: one mutation, one round trip, however many
/// statements.
#[fly_postgres::mutation(name = "todo.create_batch")]
pub async fn create_batch(tx: &mut PgConnection, titles: Vec<String>) -> Result<Vec<Todo>, Error> {
    let mut created = Vec::with_capacity(titles.len());
    for title in titles {
        created.push(
            sqlx::query_as(returning_todo!("insert into todos (title) values ($1)"))
                .bind(title)
                .fetch_one(&mut *tx)
                .await?,
        );
    }
    Ok(created)
}

/// Changes a todo's title and/or done flag; `None` if there is no such todo.
#[fly_postgres::mutation(name = "todo.update")]
pub async fn update_todo(
    tx: &mut PgConnection,
    id: i64,
    title: Option<String>,
    done: Option<bool>,
) -> Result<Option<Todo>, Error> {
    Ok(sqlx::query_as(returning_todo!(
        "update todos set title = coalesce($2, title), done = coalesce($3, done) \
         where id = $1"
    ))
    .bind(id)
    .bind(title)
    .bind(done)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Deletes a todo; whether it existed.
#[fly_postgres::mutation(name = "todo.delete")]
pub async fn delete_todo(tx: &mut PgConnection, id: i64) -> Result<bool, Error> {
    let done = sqlx::query("delete from todos where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The writes under the names the app's routes, tests and drills use
/// (`CreateTodo { title }` and so on).
pub use create_batch::Args as CreateBatch;
pub use create_todo::Args as CreateTodo;
pub use delete_todo::Args as DeleteTodo;
pub use update_todo::Args as UpdateTodo;
