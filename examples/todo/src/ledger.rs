//! An append-only ledger for fault drills (`flypg chaos`): one row per
//! accepted write and no unique key, so a write that ran twice shows up as
//! two rows and a write reported as failed but committed shows up at all.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fly_postgres::{Error, IdempotencyKey, Mutation, Repo, Written, sqlx};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::routes::{json_body, repo_write};

/// Longest token accepted.
const MAX_TOKEN: usize = 128;

/// Appends one row for `token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendLedger {
    /// The client's token for this write.
    pub token: String,
}

/// The appended row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LedgerEntry {
    /// The row's id.
    pub id: i64,
    /// The client's token.
    pub token: String,
}

impl Mutation for AppendLedger {
    const NAME: &'static str = "ledger.append";
    type Output = LedgerEntry;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<LedgerEntry, Error> {
        Ok(
            sqlx::query_as("insert into ledger (token) values ($1) returning id, token")
                .bind(self.token)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewEntry {
    token: String,
}

/// How many rows a token has on this instance's database.
#[derive(Debug, Serialize)]
pub(crate) struct TokenCount {
    token: String,
    rows: i64,
}

pub(crate) async fn append(
    State(repo): State<Repo>,
    key: Option<IdempotencyKey>,
    body: Result<Json<NewEntry>, JsonRejection>,
) -> Result<(StatusCode, Written<LedgerEntry>), ApiError> {
    let NewEntry { token } = json_body(body)?;
    let token = valid_token(token)?;
    let written = repo_write(&repo, AppendLedger { token }, None, key).await?;
    Ok((StatusCode::CREATED, written))
}

pub(crate) async fn count(
    State(repo): State<Repo>,
    token: Result<Path<String>, PathRejection>,
) -> Result<Json<TokenCount>, ApiError> {
    let Path(token) = token
        .map_err(|e| crate::api_error::bad_request(format!("bad token: {}", e.body_text())))?;
    let token = valid_token(token)?;
    let rows: i64 = sqlx::query_scalar("select count(*) from ledger where token = $1")
        .bind(&token)
        .fetch_one(repo.reader())
        .await
        .map_err(Error::from)?;
    Ok(Json(TokenCount { token, rows }))
}

fn valid_token(token: String) -> Result<String, ApiError> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(crate::api_error::bad_request(format!(
            "token must be 1 to {MAX_TOKEN} bytes"
        )));
    }
    Ok(token)
}
