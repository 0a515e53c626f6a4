//! The testing guide's two-region example, run as written; the last test
//! checks that the guide still shows exactly this code.

use fly_postgres::{
    Error, Repo,
    sqlx::{self, PgConnection},
};
use fly_postgres_testkit::PgCluster;
use fly_rpc::{Node, Regions, StaticPeers};

#[fly_postgres::mutation]
async fn add_todo(tx: &mut PgConnection, title: String) -> Result<i64, Error> {
    Ok(
        sqlx::query_scalar("insert into todos (title) values ($1) returning id")
            .bind(title)
            .fetch_one(&mut *tx)
            .await?,
    )
}

#[tokio::test]
async fn a_write_from_lax_is_read_back_in_lax() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = PgCluster::start().await?;
    let node = |region: &str| {
        Node::builder()
            .regions(Regions::new(region, "syd"))
            .listen("127.0.0.1:0".parse().unwrap())
            .secret("a test secret of 16+ bytes")
    };
    let syd = Repo::builder()
        .database_url(cluster.primary().url())
        .node(node("syd"))
        .start()
        .await?;
    syd.migrate().await?;
    sqlx::query("create table todos (id bigserial primary key, title text not null)")
        .execute(syd.local())
        .await?;
    let syd_addr = syd.node().local_addr().expect("a listener");
    let lax = Repo::builder()
        .database_url(cluster.replica().url())
        .node(node("lax").discovery(StaticPeers::new().with("syd", syd_addr)))
        .start()
        .await?;

    let id = lax.write(add_todo::args("milk".into())).await?;
    // The write waited for lax's replica: it is there.
    let title: String = sqlx::query_scalar("select title from todos where id = $1")
        .bind(id)
        .fetch_one(lax.local())
        .await?;
    assert_eq!(title, "milk");
    Ok(())
}

#[test]
fn the_testing_guide_shows_this_example() {
    let guide = include_str!("../src/guide/testing.md");
    let this = include_str!("guide_two_regions.rs");
    let start = this.find("use fly_postgres::{").unwrap();
    let end = this
        .find("#[test]\nfn the_testing_guide_shows_this_example")
        .unwrap();
    assert!(
        guide.contains(this[start..end].trim_end()),
        "the testing guide's example and tests/guide_two_regions.rs differ"
    );
}
