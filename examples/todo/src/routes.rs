//! The HTTP API: reads on the local database, writes through mutations.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fly_postgres::{Mutation, Repo, Written, sqlx};
use serde::Deserialize;
use serde_json::json;

use crate::api_error::ApiError;
use crate::mutations::{CreateBatch, CreateTodo, DeleteTodo, Todo, UpdateTodo};
use fly_postgres::IdempotencyKey;

pub(crate) const MAX_TITLE: usize = 500;

/// The app's routes over `repo`. The consistency layer hands each writer a
/// signed token (header and cookie), so its next request reads its write on
/// any instance.
pub fn router(repo: Repo) -> Router {
    router_with(fly_postgres::ConsistencyLayer::new(repo.clone()), repo)
}

/// [`router`] with a consistency layer of the caller's (its mode, its
/// bounded wait; see `ConsistencyLayer::from_env`).
pub fn router_with(consistency: fly_postgres::ConsistencyLayer, repo: Repo) -> Router {
    let region = repo.regions().my_region().to_owned();
    Router::new()
        .route("/", get(index))
        .route("/stats", get(stats))
        .route("/todos", get(list).post(create))
        .route("/todos/batch", axum::routing::post(create_batch))
        .route("/todos/{id}", get(show).patch(update).delete(remove))
        .route("/ledger", axum::routing::post(crate::ledger::append))
        .route("/ledger/{token}", get(crate::ledger::count))
        .merge(crate::page::routes())
        .with_state(repo)
        .layer(consistency)
        .layer(axum::middleware::from_fn(continue_trace))
        // Added after the layers, so no token wait and no database: Fly's
        // health check (fly.toml) must not fail because a replica lags.
        .route("/healthz", get(move || healthz(region.clone())))
}

/// `GET /healthz`: 200 once the app serves, with the region that answered.
async fn healthz(region: String) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "region": region}))
}

/// A request that arrives with a W3C `traceparent` (from a load balancer or
/// a browser's instrumentation) has its writes forwarded in the same trace.
async fn continue_trace(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match fly_rpc::TraceParent::from_headers(request.headers()) {
        Some(parent) => fly_rpc::with_trace_context(parent, next.run(request)).await,
        None => next.run(request).await,
    }
}

/// `/`: the page for a browser (`Accept: text/html`), this instance's
/// facts as JSON for everyone else.
async fn index(State(repo): State<Repo>, headers: axum::http::HeaderMap) -> Response {
    if crate::page::wants_html(&headers) {
        return crate::page::show(&repo, &headers).await;
    }
    let regions = repo.regions();
    Json(json!({
        "region": regions.my_region(),
        "primary_region": regions.primary_region(),
        "is_primary": regions.is_primary(),
    }))
    .into_response()
}

/// This instance and its write counters (since it started), for the demo's
/// and the chaos drills' reports.
async fn stats(State(repo): State<Repo>) -> Json<serde_json::Value> {
    let stats = repo.stats();
    let lag = repo.replica_lag();
    Json(json!({
        "replica": {
            "state": format!("{:?}", lag.state),
            "lag_seconds": lag.seconds.map(|d| d.as_secs_f64()),
            "lag_bytes": lag.bytes,
        },
        "region": repo.regions().my_region(),
        "instance": crate::instance::id(),
        "served_writes": stats.served_writes,
        "forwarded_writes": stats.forwarded_writes,
        "local_writes": stats.local_writes,
        "direct_writes": stats.direct_writes,
        "retries": stats.retries,
    }))
}

async fn list(State(repo): State<Repo>) -> Result<Json<Vec<Todo>>, ApiError> {
    let todos = sqlx::query_as("select id, title, done from todos order by id")
        .fetch_all(repo.reader())
        .await
        .map_err(fly_postgres::Error::from)?;
    Ok(Json(todos))
}

async fn show(
    State(repo): State<Repo>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Todo>, ApiError> {
    let id = todo_id(id)?;
    let todo: Option<Todo> = sqlx::query_as("select id, title, done from todos where id = $1")
        .bind(id)
        .fetch_optional(repo.reader())
        .await
        .map_err(fly_postgres::Error::from)?;
    todo.map(Json).ok_or(crate::api_error::not_found(id))
}

/// `?wait=false` skips the replication wait (to show what it is for).
#[derive(Debug, Deserialize)]
struct WriteParams {
    wait: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct NewTodo {
    title: String,
}

#[derive(Debug, Deserialize)]
struct NewBatch {
    titles: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Patch {
    title: Option<String>,
    done: Option<bool>,
}

async fn create(
    State(repo): State<Repo>,
    params: Query<WriteParams>,
    key: Option<IdempotencyKey>,
    body: Result<Json<NewTodo>, JsonRejection>,
) -> Result<(StatusCode, Written<Todo>), ApiError> {
    let NewTodo { title } = json_body(body)?;
    let title = valid_title(title)?;
    let written = repo_write(&repo, CreateTodo { title }, params.wait, key).await?;
    Ok((StatusCode::CREATED, written))
}

async fn create_batch(
    State(repo): State<Repo>,
    params: Query<WriteParams>,
    key: Option<IdempotencyKey>,
    body: Result<Json<NewBatch>, JsonRejection>,
) -> Result<(StatusCode, Written<Vec<Todo>>), ApiError> {
    let NewBatch { titles } = json_body(body)?;
    if titles.is_empty() || titles.len() > 100 {
        return Err(crate::api_error::bad_request(
            "titles must hold 1 to 100 titles",
        ));
    }
    let titles = titles
        .into_iter()
        .map(valid_title)
        .collect::<Result<_, _>>()?;
    let written = repo_write(&repo, CreateBatch { titles }, params.wait, key).await?;
    Ok((StatusCode::CREATED, written))
}

async fn update(
    State(repo): State<Repo>,
    id: Result<Path<i64>, PathRejection>,
    params: Query<WriteParams>,
    key: Option<IdempotencyKey>,
    body: Result<Json<Patch>, JsonRejection>,
) -> Result<Written<Todo>, ApiError> {
    let id = todo_id(id)?;
    let Patch { title, done } = json_body(body)?;
    let title = title.map(valid_title).transpose()?;
    if title.is_none() && done.is_none() {
        return Err(crate::api_error::bad_request("give a title or done"));
    }
    let written = repo_write(&repo, UpdateTodo { id, title, done }, params.wait, key).await?;
    match written.output {
        Some(todo) => Ok(Written::new(todo, written.replicated)),
        None => Err(crate::api_error::not_found(id)),
    }
}

async fn remove(
    State(repo): State<Repo>,
    id: Result<Path<i64>, PathRejection>,
    params: Query<WriteParams>,
    key: Option<IdempotencyKey>,
) -> Result<Response, ApiError> {
    let id = todo_id(id)?;
    let written = repo_write(&repo, DeleteTodo { id }, params.wait, key).await?;
    if !written.output {
        return Err(crate::api_error::not_found(id));
    }
    let replicated = if written.replicated { "true" } else { "false" };
    Ok((
        StatusCode::NO_CONTENT,
        [(fly_postgres::REPLICATED_HEADER, replicated)],
    )
        .into_response())
}

/// Runs a write; `?wait=false` skips the replica wait. A write that
/// committed but is not yet replayed here is still a success
/// (`fly-replicated: false`): it must not be sent again. With an
/// `Idempotency-Key`, the key is the write's request id: a repeat returns
/// the first write's output.
pub(crate) async fn repo_write<M: Mutation>(
    repo: &Repo,
    mutation: M,
    wait: Option<bool>,
    key: Option<IdempotencyKey>,
) -> Result<Written<M::Output>, fly_postgres::Error> {
    let call = repo.write(mutation).request_id_opt(key);
    let call = if wait == Some(false) {
        call.no_wait()
    } else {
        call
    };
    call.written().await
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        // serde's text may quote the client's input: a long one is cut.
        let mut message = e.body_text();
        if let Some((cut, _)) = message.char_indices().nth(300) {
            message.truncate(cut);
            message.push('…');
        }
        crate::api_error::unreadable_body(e.status(), message)
    })
}

fn todo_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id).map_err(|e| {
        crate::api_error::bad_request(format!("todo ids are integers: {}", e.body_text()))
    })
}

pub(crate) fn valid_title(title: String) -> Result<String, ApiError> {
    let title = title.trim().to_owned();
    if title.is_empty() {
        return Err(crate::api_error::bad_request("title must not be empty"));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(crate::api_error::bad_request(format!(
            "title is over {MAX_TITLE} characters"
        )));
    }
    Ok(title)
}
