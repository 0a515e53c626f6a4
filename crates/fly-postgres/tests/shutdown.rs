//! A deploy's SIGTERM to a primary-region instance while a forwarded write
//! runs there: `Repo::serve` stops both ports at once, the write finishes
//! and its caller gets the output, nothing is lost or doubled. Alone in its
//! binary: it sends SIGTERM to this very process.

mod common;

use std::time::Duration;

use common::*;
use fly_postgres::{Error, Mutation, Repo, sqlx};
use serde::{Deserialize, Serialize};

/// Inserts, then holds its transaction open for a while.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SlowCreate {
    title: String,
}

impl Mutation for SlowCreate {
    const NAME: &'static str = "slow_create";
    type Output = Todo;
    async fn run(self, tx: &mut sqlx::PgConnection) -> Result<Todo, Error> {
        let todo = sqlx::query_as("insert into todos (title) values ($1) returning id, title")
            .bind(self.title)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("select pg_sleep(0.8)")
            .execute(&mut *tx)
            .await?;
        Ok(todo)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_forwarded_write_in_flight_finish() {
    let app = two_regions_with(|syd| syd.mutation::<SlowCreate>(), |lax| lax).await;
    let syd: Repo = app.syd.clone();
    let lax = lax_for(&syd, app.lax.local().clone(), |b| {
        b.mutation::<SlowCreate>()
            .rpc_timeout(Duration::from_secs(3))
    })
    .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = listener.local_addr().unwrap();
    let serving = tokio::spawn({
        let syd = syd.clone();
        async move { syd.serve(listener, axum::Router::new()).await }
    });
    // Once the app port answers, `serve` is running and its SIGTERM handler
    // is installed: the signal below cannot kill the test process.
    tokio::time::timeout(Duration::from_secs(5), async {
        while tokio::net::TcpStream::connect(http_addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let write = tokio::spawn({
        let lax = lax.clone();
        async move {
            lax.write(SlowCreate {
                title: "in flight".into(),
            })
            .await
        }
    });
    // The write is running in syd's transaction now.
    tokio::time::timeout(Duration::from_secs(5), async {
        while syd.stats().served_writes == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM).unwrap();

    let todo = write.await.unwrap().expect("the write in flight completes");
    assert_eq!(todo.title, "in flight");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns once what was in flight finished")
        .unwrap()
        .unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from todos where title = 'in flight'")
        .fetch_one(app.syd.local())
        .await
        .unwrap();
    assert_eq!(rows, 1, "written once");
    // Both ports are closed: a new write from lax has nowhere to go, and
    // says so without having written anything.
    assert!(tokio::net::TcpStream::connect(http_addr).await.is_err());
    let err = lax
        .write(CreateTodo {
            title: "after".into(),
        })
        .rpc_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoPrimaryNode { .. }), "{err:?}");
    assert_eq!(count_todos(app.syd.local()).await, 1);
}
