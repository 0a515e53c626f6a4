//! Mutations reach app state registered on the builder, in the region that
//! runs them.

mod common;

use common::*;
use fly_postgres::sqlx::{self, PgConnection};
use fly_postgres::{Error, Mutation};
use serde::{Deserialize, Serialize};

/// The primary region's limit on titles.
struct Limits {
    max_title: usize,
    region: &'static str,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CreateLimited {
    title: String,
}

impl Mutation for CreateLimited {
    const NAME: &'static str = "create_limited";
    type Output = String;
    async fn run(self, tx: &mut PgConnection) -> Result<String, Error> {
        let limits = fly_postgres::state::<Limits>()?;
        if self.title.len() > limits.max_title {
            return Err(Error::app(format!("longer than {}", limits.max_title)));
        }
        sqlx::query("insert into todos (title) values ($1)")
            .bind(&self.title)
            .execute(&mut *tx)
            .await?;
        Ok(limits.region.to_owned())
    }
}

/// Asks for state nobody registered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NeedsMissingState;

impl Mutation for NeedsMissingState {
    const NAME: &'static str = "needs_missing_state";
    type Output = ();
    async fn run(self, _tx: &mut PgConnection) -> Result<(), Error> {
        fly_postgres::state::<String>().map(drop)
    }
}

#[tokio::test]
async fn mutations_reach_the_state_of_the_instance_that_runs_them() {
    let app = two_regions_with(
        |syd| {
            syd.mutation::<CreateLimited>()
                .mutation::<NeedsMissingState>()
                .state(Limits {
                    max_title: 5,
                    region: "syd",
                })
        },
        |lax| {
            lax.mutation::<CreateLimited>()
                .mutation::<NeedsMissingState>()
                .state(Limits {
                    max_title: 500,
                    region: "lax",
                })
        },
    )
    .await;
    // Local in syd, forwarded from lax: both run in syd, with syd's state.
    for (repo, title) in [(&app.syd, "abc"), (&app.lax, "defg")] {
        let ran_in = repo
            .write(CreateLimited {
                title: title.into(),
            })
            .await
            .unwrap();
        assert_eq!(ran_in, "syd");
    }
    let err = app
        .lax
        .write(CreateLimited {
            title: "far too long".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.app_error::<String>().as_deref(), Some("longer than 5"));
    let err = app.syd.write(NeedsMissingState).await.unwrap_err();
    assert!(
        matches!(err, Error::Config(ref message) if message.contains("RepoBuilder::state")),
        "{err:?}"
    );
    // Outside a mutation there is no state to reach.
    assert!(fly_postgres::state::<Limits>().is_err());
}
