//! `FLY_POSTGRES_FORCE_FORWARD=1` (CI runs this crate's tests once more
//! with it) must really send the primary region's writes through the
//! forwarded path: the mode is checked here, not assumed.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fly_postgres_testkit::PgCluster;
use fly_postgres_todo::router;
use tower::ServiceExt;

mod common;
use common::*;

fn forced_by_env() -> bool {
    std::env::var("FLY_POSTGRES_FORCE_FORWARD")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

#[tokio::test]
async fn writes_in_the_primary_region_take_the_path_the_environment_asks_for() {
    let app = app_on(PgCluster::start().await.unwrap()).await;
    let before = app.syd.stats();
    let request = Request::post("/todos")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"title":"which path"}"#))
        .unwrap();
    let response = router(app.syd.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let after = app.syd.stats();
    let local = after.local_writes - before.local_writes;
    let forwarded = after.forwarded_writes - before.forwarded_writes;
    if forced_by_env() {
        assert_eq!(
            (local, forwarded),
            (0, 1),
            "forced: the write went through the wire"
        );
        // CI looks for this line: the mode took effect, not only the tests passed.
        println!("force-forward: on ({forwarded} write forwarded in-process, {local} local)");
    } else {
        assert_eq!(
            (local, forwarded),
            (1, 0),
            "a primary-region write runs locally"
        );
    }
}
