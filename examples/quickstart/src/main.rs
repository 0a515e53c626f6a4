//! A todo list over fly-postgres. On a laptop it needs only DATABASE_URL.

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use fly_postgres::{Error, IdempotencyKey, Repo, Written};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

#[derive(Serialize, Deserialize, sqlx::FromRow)]
struct Todo {
    id: i64,
    title: String,
}

/// A write: runs next to the primary in one transaction, from any region.
/// Its wire name is the function's ("create_todo"): keep it across deploys.
#[fly_postgres::mutation]
async fn create_todo(tx: &mut PgConnection, title: String) -> Result<Todo, Error> {
    Ok(
        sqlx::query_as("insert into todos (title) values ($1) returning id, title")
            .bind(title)
            .fetch_one(&mut *tx)
            .await?,
    )
}

async fn list(State(repo): State<Repo>) -> Result<Json<Vec<Todo>>, Error> {
    // Reads: the local database, unchanged sqlx.
    let todos = sqlx::query_as("select id, title from todos order by id")
        .fetch_all(repo.local())
        .await?;
    Ok(Json(todos))
}

async fn create(
    State(repo): State<Repo>,
    key: Option<IdempotencyKey>,
    Json(new): Json<create_todo::Args>, // {"title": "..."}
) -> Result<(StatusCode, Written<Todo>), Error> {
    // Writes: one RPC to the primary region, then wait for the local replica.
    // An error answers with the status of its class: 409 for a duplicate,
    // 503 "maybe committed" with the request id to repeat it with, ...
    let todo = repo.write(new).request_id_opt(key).written().await?;
    Ok((StatusCode::CREATED, todo))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr, at `info` unless RUST_LOG says otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let repo = Repo::builder()
        .database_url(fly_postgres::database_url_from_env()?)
        .node(fly_rpc::Node::from_env()?) // one region: no secret, no RPC port
        .start()
        .await?;
    // Migrations (and job queues) run in the primary region, on the local pool.
    if repo.regions().is_primary() {
        repo.migrate().await?; // the library's exactly-once table
        sqlx::query("create table if not exists todos (id bigserial primary key, title text unique not null)")
            .execute(repo.local())
            .await?;
    }
    let app = Router::new()
        .route("/todos", get(list).post(create))
        .route("/healthz", get(|| async { "ok" })) // fly.toml's health check
        .with_state(repo.clone());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Until SIGTERM (a deploy) or Ctrl-C; then the writes in flight finish.
    repo.serve(listener, app).await?;
    Ok(())
}
