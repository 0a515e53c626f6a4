//! `#[fly_postgres::mutation]`: a write as one async fn, registered by
//! itself, named by the function or pinned, used from both regions.

mod common;

use common::*;
use fly_postgres::sqlx::{self, PgConnection};
use fly_postgres::{Error, Mutation, Repo};
use fly_postgres_testkit::PgCluster;
use fly_rpc::{Node, Regions};
use serde::{Deserialize, Serialize};

/// Adds a todo; its wire name is the function's.
#[fly_postgres::mutation]
async fn add_todo(tx: &mut PgConnection, title: String) -> Result<Todo, Error> {
    Ok(
        sqlx::query_as("insert into todos (title) values ($1) returning id, title")
            .bind(title)
            .fetch_one(&mut *tx)
            .await?,
    )
}

/// Renames; the wire name is pinned, so renaming the function is safe.
#[fly_postgres::mutation(name = "todo.rename.v1")]
pub async fn rename_todo(
    tx: &mut PgConnection,
    id: i64,
    title: String,
) -> Result<Option<Todo>, Error> {
    Ok(
        sqlx::query_as("update todos set title = $2 where id = $1 returning id, title")
            .bind(id)
            .bind(title)
            .fetch_optional(&mut *tx)
            .await?,
    )
}

/// The app's own error type converts into the library's.
#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("no empty titles")]
struct EmptyTitle;

impl From<EmptyTitle> for Error {
    fn from(e: EmptyTitle) -> Self {
        Error::app(e)
    }
}

#[fly_postgres::mutation]
async fn add_checked(tx: &mut PgConnection, title: String) -> Result<i64, EmptyTitle> {
    if title.is_empty() {
        return Err(EmptyTitle);
    }
    sqlx::query_scalar("insert into todos (title) values ($1) returning id")
        .bind(title)
        .fetch_one(&mut *tx)
        .await
        .map_err(|_| EmptyTitle)
}

#[tokio::test]
async fn macro_mutations_register_themselves_and_run_in_both_regions() {
    // Neither repo names them on its builder.
    let app = two_regions().await;
    let a = app
        .lax
        .write(add_todo::args("from lax".into()))
        .await
        .unwrap();
    let b = app
        .syd
        .write(add_todo::args("from syd".into()))
        .await
        .unwrap();
    assert_eq!(
        (a.title.as_str(), b.title.as_str()),
        ("from lax", "from syd")
    );
    // Visible in lax at once: the write waited for the replica.
    assert_eq!(find_todo(app.lax.local(), a.id).await, Some(a.clone()));

    let renamed = app
        .lax
        .write(rename_todo::args(a.id, "renamed".into()))
        .await
        .unwrap();
    assert_eq!(renamed.map(|t| t.title), Some("renamed".to_owned()));
    assert_eq!(<rename_todo::Args as Mutation>::NAME, "todo.rename.v1");
    assert_eq!(<add_todo::Args as Mutation>::NAME, "add_todo");
    // The args are a plain struct too.
    let args = add_todo::Args {
        title: "literal".into(),
    };
    app.lax.write(args).await.unwrap();

    let err = app
        .lax
        .write(add_checked::args(String::new()))
        .await
        .unwrap_err();
    assert_eq!(
        err.app_error::<EmptyTitle>()
            .map(|e| e.to_string())
            .as_deref(),
        Some("no empty titles")
    );
    // The function itself is still an ordinary function.
    let mut conn = app.syd.local().acquire().await.unwrap();
    let direct = add_todo(&mut conn, "called directly".into()).await.unwrap();
    assert_eq!(direct.title, "called directly");
}

/// A trait mutation that claims a macro mutation's name.
#[derive(Debug, Serialize, Deserialize)]
struct Impostor;

impl Mutation for Impostor {
    const NAME: &'static str = "add_todo";
    type Output = ();
    async fn run(self, _tx: &mut PgConnection) -> Result<(), Error> {
        Ok(())
    }
}

#[tokio::test]
async fn two_mutations_under_one_name_stop_the_start_naming_both() {
    let cluster = PgCluster::start().await.unwrap();
    let started = Repo::builder()
        .mutation::<Impostor>()
        .pool(pool(cluster.primary().connect_options()).await)
        .node(Node::builder().regions(Regions::new("syd", "syd")))
        .start()
        .await;
    let err = started.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("add_todo") && text.contains("Impostor") && text.contains("add_todo::Args"),
        "{text}"
    );
    // Without auto-registration only the builder's count: no conflict, and
    // the macro mutation is refused as unregistered.
    let repo = Repo::builder()
        .auto_register(false)
        .mutation::<Impostor>()
        .pool(pool(cluster.primary().connect_options()).await)
        .node(Node::builder().regions(Regions::new("syd", "syd")))
        .start()
        .await
        .unwrap();
    let err = repo
        .write(rename_todo::args(1, "x".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownProcedure { .. }), "{err}");
}
