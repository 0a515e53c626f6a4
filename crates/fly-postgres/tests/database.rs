//! Read-only dev connections against a real server.

use fly_postgres::sqlx::{self, postgres::PgPoolOptions};
use fly_postgres_testkit::PgCluster;

#[tokio::test]
async fn read_only_connections_refuse_writes_like_a_replica() {
    let cluster = PgCluster::start().await.unwrap();
    let rw = PgPoolOptions::new()
        .connect_with(cluster.primary().connect_options())
        .await
        .unwrap();
    sqlx::query("create table t (id int)")
        .execute(&rw)
        .await
        .unwrap();

    let ro = PgPoolOptions::new()
        .connect_with(fly_postgres::read_only(cluster.primary().connect_options()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from t")
        .fetch_one(&ro)
        .await
        .unwrap();
    assert_eq!(n, 0, "reads work");
    let err = sqlx::query("insert into t values (1)")
        .execute(&ro)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "{err}");
    sqlx::query("insert into t values (1)")
        .execute(&rw)
        .await
        .unwrap();
}
