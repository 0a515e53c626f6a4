//! The app's writes: each runs next to the primary in one transaction.

use fly_postgres::{Error, Mutation};
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTodo {
    /// The title.
    pub title: String,
}

impl Mutation for CreateTodo {
    const NAME: &'static str = "todo.create";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        Ok(
            sqlx::query_as(returning_todo!("insert into todos (title) values ($1)"))
                .bind(self.title)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

/// Adds several todos at once: one mutation, one round trip, however many
/// statements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateBatch {
    /// The titles, in order.
    pub titles: Vec<String>,
}

impl Mutation for CreateBatch {
    const NAME: &'static str = "todo.create_batch";
    type Output = Vec<Todo>;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Vec<Todo>, Error> {
        let mut created = Vec::with_capacity(self.titles.len());
        for title in self.titles {
            created.push(
                sqlx::query_as(returning_todo!("insert into todos (title) values ($1)"))
                    .bind(title)
                    .fetch_one(&mut *tx)
                    .await?,
            );
        }
        Ok(created)
    }
}

/// Changes a todo's title and/or done flag; `None` if there is no such todo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateTodo {
    /// Which todo.
    pub id: i64,
    /// New title, if any.
    pub title: Option<String>,
    /// New done flag, if any.
    pub done: Option<bool>,
}

impl Mutation for UpdateTodo {
    const NAME: &'static str = "todo.update";
    type Output = Option<Todo>;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Option<Todo>, Error> {
        Ok(sqlx::query_as(returning_todo!(
            "update todos set title = coalesce($2, title), done = coalesce($3, done) \
             where id = $1"
        ))
        .bind(self.id)
        .bind(self.title)
        .bind(self.done)
        .fetch_optional(&mut *tx)
        .await?)
    }
}

/// Deletes a todo; whether it existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteTodo {
    /// Which todo.
    pub id: i64,
}

impl Mutation for DeleteTodo {
    const NAME: &'static str = "todo.delete";
    type Output = bool;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<bool, Error> {
        let done = sqlx::query("delete from todos where id = $1")
            .bind(self.id)
            .execute(&mut *tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
