//! The app's schema, migrated at start in the primary region only.

use fly_postgres::{Repo, sqlx};

/// The app's tables (idempotent).
pub const SCHEMA: &str = "
create table if not exists todos (
    id bigserial primary key,
    title text not null unique,
    done boolean not null default false,
    created_at timestamptz not null default now()
);
-- Append-only, no unique key: `flypg chaos` counts rows per token to find
-- lost and duplicated writes.
create table if not exists ledger (
    id bigserial primary key,
    token text not null,
    created_at timestamptz not null default now()
);
create index if not exists ledger_token on ledger (token);
";

/// Runs the library's and the app's migrations on the primary. Replica
/// regions skip this: their database is read-only and follows the primary.
pub async fn migrate(repo: &Repo) -> Result<(), fly_postgres::Error> {
    if !repo.regions().is_primary() {
        return Ok(());
    }
    repo.migrate().await?;
    sqlx::raw_sql(SCHEMA).execute(repo.local()).await?;
    Ok(())
}
