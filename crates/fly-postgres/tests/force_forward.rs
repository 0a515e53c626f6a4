//! Force-forward mode and registration checks: second-region bugs caught
//! in one region.

mod common;

use common::*;
use fly_postgres::sqlx::{self, PgConnection};
use fly_postgres::{Error, Mutation, Repo, WriteOutcome};
use fly_postgres_testkit::PgCluster;
use fly_rpc::{Node, Regions};
use serde::{Deserialize, Serialize};

/// An output that does not survive JSON: the field is never serialized but
/// is required to deserialize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: i64,
    #[serde(skip_serializing)]
    title: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CreateWithReceipt {
    title: String,
}

impl Mutation for CreateWithReceipt {
    const NAME: &'static str = "create_with_receipt";
    type Output = Receipt;
    async fn run(self, tx: &mut PgConnection) -> Result<Receipt, Error> {
        let id: i64 = sqlx::query_scalar("insert into todos (title) values ($1) returning id")
            .bind(&self.title)
            .fetch_one(&mut *tx)
            .await?;
        Ok(Receipt {
            id,
            title: self.title,
        })
    }
}

/// Never registered anywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Forgotten;

impl Mutation for Forgotten {
    const NAME: &'static str = "forgotten";
    type Output = ();
    async fn run(self, tx: &mut PgConnection) -> Result<(), Error> {
        sqlx::query("insert into todos (title) values ('forgotten')")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A one-region repo on `cluster`'s primary.
async fn one_region(cluster: &PgCluster, force_forward: bool) -> Repo {
    let repo = registered(Repo::builder())
        .mutation::<CreateWithReceipt>()
        .force_forward(force_forward)
        .pool(pool(cluster.primary().connect_options()).await)
        .node(Node::builder().regions(Regions::new("syd", "syd")))
        .start()
        .await
        .unwrap();
    repo.migrate().await.unwrap();
    sqlx::raw_sql(
        "create table if not exists todos (id bigserial primary key, title text not null unique)",
    )
    .execute(repo.local())
    .await
    .unwrap();
    repo
}

#[tokio::test]
async fn force_forward_catches_an_output_that_does_not_round_trip() {
    let cluster = PgCluster::start().await.unwrap();
    // Without it the bug is invisible in the primary region.
    let plain = one_region(&cluster, false).await;
    let receipt = plain
        .write(CreateWithReceipt {
            title: "plain".into(),
        })
        .await
        .unwrap();
    assert_eq!(receipt.title, "plain");
    assert_eq!(plain.stats().local_writes, 1);

    // With it, the write takes the forwarded path in this process and the
    // output's trip through JSON fails, clearly and as committed.
    let forced = one_region(&cluster, true).await;
    let err = forced
        .write(CreateWithReceipt {
            title: "forced".into(),
        })
        .await
        .unwrap_err();
    // The output's trip through JSON failed after the commit: exactly
    // CommittedButUnreadable, without an output (it did not decode).
    assert!(
        matches!(err, Error::CommittedButUnreadable { output: None, .. }),
        "{err:?}"
    );
    assert_eq!(err.outcome(), WriteOutcome::Committed, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("create_with_receipt") && text.contains("JSON"),
        "{text}"
    );
    assert_eq!(forced.stats().forwarded_writes, 1);
    assert_eq!(forced.stats().local_writes, 0);
    let rows: i64 = sqlx::query_scalar("select count(*) from todos where title = 'forced'")
        .fetch_one(forced.local())
        .await
        .unwrap();
    assert_eq!(rows, 1, "committed exactly once");

    // A mutation whose types do round-trip works the same forced, exactly
    // once under its request id.
    let first = forced
        .write(CreateTodo {
            title: "round trip".into(),
        })
        .request_id("force-forward-1")
        .await
        .unwrap();
    let again = forced
        .write(CreateTodo {
            title: "round trip".into(),
        })
        .request_id("force-forward-1")
        .await
        .unwrap();
    assert_eq!(first, again);
}

#[tokio::test]
async fn an_unregistered_mutation_fails_in_the_primary_region_too() {
    let cluster = PgCluster::start().await.unwrap();
    for force_forward in [false, true] {
        let repo = one_region(&cluster, force_forward).await;
        let started = std::time::Instant::now();
        let err = repo.write(Forgotten).await.unwrap_err();
        assert!(
            matches!(&err, Error::UnknownProcedure { name, .. } if name == "forgotten"),
            "{err}"
        );
        assert!(err.to_string().contains("RepoBuilder::mutation"), "{err}");
        assert_eq!(err.outcome(), WriteOutcome::NotCommitted);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from todos where title = 'forgotten'")
        .fetch_one(&pool(cluster.primary().connect_options()).await)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}
