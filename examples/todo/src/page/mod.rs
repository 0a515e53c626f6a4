//! The todo list as a web page for browsers: server-rendered HTML, plain
//! forms, POST-redirect-GET, no JavaScript. API clients keep the JSON
//! routes; a browser asking `/` for `text/html` gets this page.

mod last_write;
mod view;

use axum::Router;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use fly_postgres::{Mutation, Repo, sqlx};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::mutations::{CreateTodo, DeleteTodo, Todo, UpdateTodo};
use last_write::LastWrite;
use view::PageData;

/// Todos the page shows at most (the oldest first).
const PAGE_ROWS: usize = 500;

/// The form routes (the page itself is `GET /`).
pub(crate) fn routes() -> Router<Repo> {
    Router::new()
        .route("/ui/todos", post(add))
        .route("/ui/todos/{id}/toggle", post(toggle))
        .route("/ui/todos/{id}/delete", post(delete))
}

/// Whether the client asked for HTML (a browser), not JSON.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// `GET /` for a browser.
pub(crate) async fn show(repo: &Repo, headers: &HeaderMap) -> Response {
    render(repo, headers, StatusCode::OK, None, None).await
}

async fn render(
    repo: &Repo,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    title: Option<&str>,
) -> Response {
    // One more than shown tells whether there are more; a page (and every
    // refused form, which shows the page again) costs a bounded read.
    let todos: Result<Vec<Todo>, _> =
        sqlx::query_as("select id, title, done from todos order by id limit $1")
            .bind(i64::try_from(PAGE_ROWS + 1).unwrap_or(i64::MAX))
            .fetch_all(repo.reader())
            .await;
    let (status, error, mut todos) = match todos {
        Ok(todos) => (status, error, todos),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!(
                "This region's database cannot be read right now ({}). Try again in a moment.",
                fly_postgres::Error::from(e)
            )),
            Vec::new(),
        ),
    };
    let more = todos.len() > PAGE_ROWS;
    todos.truncate(PAGE_ROWS);
    let data = PageData {
        region: repo.regions().my_region(),
        instance: crate::instance::id(),
        primary_region: repo.primary_region(),
        is_primary: repo.is_primary().await,
        todos: &todos,
        more,
        last_write: LastWrite::from_headers(headers),
        error,
        title,
    };
    let mut response = (status, Html(view::page(&data).into_string())).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// After a write: back to the page (303, so a reload does not post again),
/// with the write's timing for the page to show.
fn redirect(last: &LastWrite) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&last.set_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The page again, with a failed form's message and status.
async fn refused(
    repo: &Repo,
    headers: &HeaderMap,
    error: &ApiError,
    title: Option<&str>,
) -> Response {
    let message = match error.code() {
        "conflict" => match title {
            Some(title) => format!("There is already a todo called “{title}”."),
            None => "That conflicts with another todo.".to_owned(),
        },
        "not_found" => "That todo is gone (someone deleted it).".to_owned(),
        "maybe_committed" => format!(
            "The write may or may not have gone through: the primary region did not answer \
             in time. Reload to see. ({})",
            error.message()
        ),
        _ => error.message().to_owned(),
    };
    render(repo, headers, error.status(), Some(message), title).await
}

/// Runs `mutation` for the page, timed; `skip_wait` skips the replica
/// wait and keeps the write's LSN from the browser, so the next page
/// shows what a read without the wait looks like. A write that committed
/// but was not replayed here in time is a success (sending it again would
/// write it twice); its output is `None` when it could not be read.
async fn page_write<M: Mutation>(
    repo: &Repo,
    mutation: M,
    skip_wait: bool,
) -> Result<(Option<M::Output>, LastWrite), ApiError> {
    let started = std::time::Instant::now();
    let call = repo.write(mutation);
    let call = if skip_wait { call.no_wait() } else { call };
    match call.timed().await {
        Ok((output, timings)) => {
            if skip_wait {
                fly_postgres::forget_written_lsn();
            }
            Ok((Some(output), LastWrite::of(&timings)))
        }
        Err(e) if e.is_committed() => {
            tracing::warn!(error = %e, "a page's write committed but is not visible here yet");
            // The page says so; with the write's LSN the browser's next page
            // would wait for the same lagging replica and fail.
            fly_postgres::forget_written_lsn();
            // `None` when the output could not be read: still committed.
            let output = e.committed_output().ok().flatten();
            Ok((output, LastWrite::late(started.elapsed())))
        }
        Err(e) => Err(ApiError::from(e)),
    }
}

/// Form fields beyond these are refused: a forged form gets a 400 page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddForm {
    title: String,
    skip_wait: Option<String>,
}

async fn add(
    State(repo): State<Repo>,
    headers: HeaderMap,
    form: Result<Form<AddForm>, FormRejection>,
) -> Response {
    let AddForm { title, skip_wait } = match form {
        Ok(Form(form)) => form,
        Err(e) => return form_refused(&repo, &headers, &e).await,
    };
    // A 10,000-character title is not worth echoing back.
    let shown = (title.chars().count() <= crate::routes::MAX_TITLE).then_some(title.as_str());
    let skip_wait = match skip_wait.as_deref() {
        None => false,
        Some("on") => true,
        Some(_) => {
            let e = crate::api_error::bad_request("“skip the wait” is a checkbox: on or absent");
            return refused(&repo, &headers, &e, shown).await;
        }
    };
    let title = match crate::routes::valid_title(title.clone()) {
        Ok(title) => title,
        Err(e) => return refused(&repo, &headers, &e, shown).await,
    };
    match page_write(
        &repo,
        CreateTodo {
            title: title.clone(),
        },
        skip_wait,
    )
    .await
    {
        Ok((_, last)) => redirect(&last),
        Err(e) => refused(&repo, &headers, &e, Some(&title)).await,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToggleForm {
    done: bool,
}

async fn toggle(
    State(repo): State<Repo>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    form: Result<Form<ToggleForm>, FormRejection>,
) -> Response {
    let (id, ToggleForm { done }) = match item_form(&repo, &headers, id, form).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    let update = UpdateTodo {
        id,
        title: None,
        done: Some(done),
    };
    match page_write(&repo, update, false).await {
        Ok((Some(None), _)) => {
            refused(&repo, &headers, &crate::api_error::not_found(id), None).await
        }
        Ok((_, last)) => redirect(&last),
        Err(e) => refused(&repo, &headers, &e, None).await,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteForm {}

async fn delete(
    State(repo): State<Repo>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    form: Result<Form<DeleteForm>, FormRejection>,
) -> Response {
    let (id, DeleteForm {}) = match item_form(&repo, &headers, id, form).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    match page_write(&repo, DeleteTodo { id }, false).await {
        Ok((Some(false), _)) => {
            refused(&repo, &headers, &crate::api_error::not_found(id), None).await
        }
        Ok((_, last)) => redirect(&last),
        Err(e) => refused(&repo, &headers, &e, None).await,
    }
}

/// The todo id and form of a button on one item, or the page refusing
/// whichever of the two is bad.
async fn item_form<F>(
    repo: &Repo,
    headers: &HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    form: Result<Form<F>, FormRejection>,
) -> Result<(i64, F), Response> {
    // Unlike the JSON API, the page does not quote the client's path back.
    let Ok(Path(id)) = id else {
        let e = crate::api_error::bad_request("todo ids are integers");
        return Err(refused(repo, headers, &e, None).await);
    };
    match form {
        Ok(Form(form)) => Ok((id, form)),
        Err(e) => Err(form_refused(repo, headers, &e).await),
    }
}

/// A form that could not be read: too big (413), not a form (415), or
/// fields that are not this form's (400). The message names no field: the
/// client's own text is not echoed.
async fn form_refused(repo: &Repo, headers: &HeaderMap, rejection: &FormRejection) -> Response {
    let message = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "The form is too big.",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "That was not a form submission.",
        _ => "The form did not make sense to the server.",
    };
    let e = crate::api_error::unreadable_body(rejection.status(), message);
    refused(repo, headers, &e, None).await
}
