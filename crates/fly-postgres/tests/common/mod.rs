//! A two-region app over a real primary and streaming replica: `syd` holds
//! the primary, `lax` reads its replica.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use fly_postgres::sqlx::{self, PgPool, postgres::PgPoolOptions};
use fly_postgres::{Error, Mutation, Repo, RepoBuilder};
use fly_postgres_testkit::PgCluster;
use fly_rpc::{Node, NodeBuilder, Regions, StaticPeers};
use serde::{Deserialize, Serialize};

pub const SECRET: &str = "repo test secret 0123456789abcdef";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Todo {
    pub id: i64,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTodo {
    pub title: String,
}

impl Mutation for CreateTodo {
    const NAME: &'static str = "create_todo";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        Ok(
            sqlx::query_as("insert into todos (title) values ($1) returning id, title")
                .bind(self.title)
                .fetch_one(&mut *tx)
                .await?,
        )
    }
}

/// The app's own error type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum TodoError {
    #[error("title must not be empty")]
    EmptyTitle,
}

/// Inserts, then refuses with the app's error: the insert must roll back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateChecked {
    pub title: String,
}

impl Mutation for CreateChecked {
    const NAME: &'static str = "create_checked";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        let todo: Todo =
            sqlx::query_as("insert into todos (title) values ($1) returning id, title")
                .bind(&self.title)
                .fetch_one(&mut *tx)
                .await?;
        if self.title.trim().is_empty() {
            return Err(Error::app(TodoError::EmptyTitle));
        }
        Ok(todo)
    }
}

/// Three statements as one business operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub from: i64,
    pub to: i64,
    pub amount: i64,
}

impl Mutation for Transfer {
    const NAME: &'static str = "transfer";
    type Output = i64;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<i64, Error> {
        sqlx::query("update accounts set balance = balance - $1 where id = $2")
            .bind(self.amount)
            .bind(self.from)
            .execute(&mut *tx)
            .await?;
        sqlx::query("update accounts set balance = balance + $1 where id = $2")
            .bind(self.amount)
            .bind(self.to)
            .execute(&mut *tx)
            .await?;
        Ok(sqlx::query_scalar(
            "insert into transfers (from_id, to_id, amount) values ($1, $2, $3) returning id",
        )
        .bind(self.from)
        .bind(self.to)
        .bind(self.amount)
        .fetch_one(&mut *tx)
        .await?)
    }
}

pub const SCHEMA: &str = "
create table todos (id bigserial primary key, title text not null unique);
create table accounts (id bigint primary key, balance bigint not null);
create table transfers (id bigserial primary key, from_id bigint, to_id bigint, amount bigint);
insert into accounts values (1, 1000000), (2, 0);
";

pub fn registered(builder: RepoBuilder) -> RepoBuilder {
    builder
        .mutation::<CreateTodo>()
        .mutation::<CreateChecked>()
        .mutation::<Transfer>()
}

pub fn node(region: &str, peers: StaticPeers) -> NodeBuilder {
    Node::builder()
        .regions(Regions::new(region, "syd"))
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .secret(SECRET)
        .discovery(peers)
}

pub async fn pool(url_options: sqlx::postgres::PgConnectOptions) -> PgPool {
    // Generous: the first connection is made here, while the binary's
    // other tests start their own servers on the same two cores.
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(url_options)
        .await
        .unwrap()
}

pub struct TwoRegions {
    pub lax: Repo,
    pub syd: Repo,
    pub cluster: PgCluster,
}

/// `syd` (primary region, pool on the primary) and `lax` (pool on the
/// replica, forwarding to `syd`), both with the test mutations.
pub async fn two_regions() -> TwoRegions {
    two_regions_with(|b| b, |b| b).await
}

pub async fn two_regions_with(
    syd_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
    lax_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> TwoRegions {
    two_regions_in(PgCluster::start().await.unwrap(), syd_extra, lax_extra).await
}

pub async fn two_regions_in(
    cluster: PgCluster,
    syd_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
    lax_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> TwoRegions {
    let (syd, lax) = syd_and_lax(
        pool(cluster.primary().connect_options()).await,
        pool(cluster.replica().connect_options()).await,
        syd_extra,
        lax_extra,
    )
    .await;
    cluster
        .wait_for_catch_up(Duration::from_secs(10))
        .await
        .unwrap();
    TwoRegions { lax, syd, cluster }
}

/// The syd repo on `syd_pool` (migrated, with the todo schema) and the lax
/// repo on `lax_pool` sending its writes to it, each with its extras.
pub async fn syd_and_lax(
    syd_pool: PgPool,
    lax_pool: PgPool,
    syd_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
    lax_extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> (Repo, Repo) {
    let syd = syd_extra(registered(Repo::builder()))
        .pool(syd_pool)
        .node(node("syd", StaticPeers::new()))
        .start()
        .await
        .unwrap();
    syd.migrate().await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(syd.local()).await.unwrap();
    let lax = lax_for(&syd, lax_pool, lax_extra).await;
    (syd, lax)
}

/// A lax repo on `lax_pool` (with the test mutations and `extra`) that
/// sends its writes to `syd`.
pub async fn lax_for(
    syd: &Repo,
    lax_pool: PgPool,
    extra: impl FnOnce(RepoBuilder) -> RepoBuilder,
) -> Repo {
    extra(registered(Repo::builder()))
        .pool(lax_pool)
        .node(node(
            "lax",
            StaticPeers::new().with("syd", syd.node().local_addr().expect("rpc listener")),
        ))
        .start()
        .await
        .unwrap()
}

pub async fn count_todos(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from todos")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The todo with this id as `pool` sees it right now.
pub async fn find_todo(pool: &PgPool, id: i64) -> Option<Todo> {
    sqlx::query_as("select id, title from todos where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}
