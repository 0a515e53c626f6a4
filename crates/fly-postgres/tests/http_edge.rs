//! The `axum` feature: every error as the status and body of its outcome
//! class, the `Idempotency-Key` extractor, and `Written` as a response.
//! Database errors are real ones, raised by a real primary.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use fly_postgres::{Error, IdempotencyKey, WriteOutcome, Written, sqlx};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn answer(response: Response) -> (StatusCode, Value, axum::http::HeaderMap) {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap(), headers)
}

/// The status, code and `committed` of `error`, after checking what every
/// answer must hold.
async fn check(error: Error) -> (StatusCode, String, Value, Value) {
    let outcome = error.outcome();
    let request_id = error.request_id().map(str::to_owned);
    let (status, body, headers) = answer(error.into_response()).await;
    assert_ne!(status, StatusCode::OK, "a failure is never a 200: {body}");
    assert_eq!(body["committed"], outcome.as_json(), "{body}");
    if outcome == WriteOutcome::Committed {
        assert!(
            !status.is_server_error() && !status.is_client_error(),
            "{body}"
        );
    }
    if outcome == WriteOutcome::Unknown {
        assert_eq!(body["request_id"].as_str(), request_id.as_deref(), "{body}");
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(headers["retry-after"], "1");
    }
    assert!(body["message"].is_string(), "{body}");
    let code = body["error"].as_str().unwrap().to_owned();
    (status, code, body["committed"].clone(), body)
}

#[tokio::test]
async fn every_error_class_answers_with_its_status_and_outcome() {
    let app = two_regions().await;
    let first = app
        .lax
        .write(CreateTodo {
            title: "milk".into(),
        })
        .await
        .unwrap();

    // A unique violation raised on the primary, seen in lax: 409 with the
    // constraint, nothing written.
    let dup = app
        .lax
        .write(CreateTodo {
            title: "milk".into(),
        })
        .await
        .unwrap_err();
    let (status, code, committed, body) = check(dup).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    assert_eq!(committed, json!(false));
    assert_eq!(body["constraint"], "todos_title_key");
    assert!(!body.to_string().contains("milk"), "no data echoed: {body}");

    // A not-null violation: 422.
    let null: Error = sqlx::query("insert into todos (title) values (null)")
        .execute(app.syd.local())
        .await
        .unwrap_err()
        .into();
    let (status, code, _, _) = check(null).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );

    // An SQL mistake is internal, and its text stays in the log.
    let typo: Error = sqlx::query("selec secret_column from secret_table")
        .execute(app.syd.local())
        .await
        .unwrap_err()
        .into();
    let (status, code, _, body) = check(typo).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    assert!(!body.to_string().contains("secret"), "{body}");

    // `fetch_one` of a read that found nothing: 404.
    let none: Error = sqlx::query("select 1 from todos where false")
        .fetch_one(app.syd.local())
        .await
        .unwrap_err()
        .into();
    let (status, code, _, _) = check(none).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );

    // The mutation's own error: 422 with its message.
    let refused = app
        .lax
        .write(CreateChecked { title: " ".into() })
        .await
        .unwrap_err();
    let (status, code, _, body) = check(refused).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "rejected")
    );
    assert_eq!(body["message"], "title must not be empty");

    // A committed write whose replica wait timed out: 202, committed.
    let late = Error::ReplicationTimeout {
        committed_lsn: "0/16B3748".parse().unwrap(),
        replayed: None,
        waited: Duration::from_secs(5),
        output: Some(serde_json::to_value(&first).unwrap()),
    };
    let (status, code, committed, _) = check(late).await;
    assert_eq!((status, code.as_str()), (StatusCode::ACCEPTED, "committed"));
    assert_eq!(committed, json!(true));
    let unreadable = Error::CommittedButUnreadable {
        reason: "its LSN could not be read".into(),
        output: None,
    };
    let (status, _, committed, _) = check(unreadable).await;
    assert_eq!((status, committed), (StatusCode::ACCEPTED, json!(true)));

    // Unknown outcomes carry the id to settle them with.
    let maybe = Error::MaybeCommitted {
        mutation: "create_todo".into(),
        request_id: Some("abc-123".into()),
        attempts: 3,
        reason: "connection reset by 10.0.0.7:7878".into(),
    };
    let (status, code, committed, body) = check(maybe).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "maybe_committed")
    );
    assert_eq!(committed, json!("unknown"));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key: abc-123")
    );
    assert!(!body.to_string().contains("10.0.0.7"), "{body}");
    let timeout = Error::RpcTimeout {
        mutation: "create_todo".into(),
        after: Duration::from_secs(5),
        request_id: "def-456".into(),
    };
    let (_, code, committed, _) = check(timeout).await;
    assert_eq!(
        (code.as_str(), committed),
        ("maybe_committed", json!("unknown"))
    );

    // Nothing written, the primary region out of reach: 503, false, and
    // no address of the cluster in the body.
    let nobody = Error::NoPrimaryNode {
        region: "syd".into(),
        tried: 4,
        last_error: "connection refused by [fdaa::3]:7878".into(),
    };
    let (status, code, committed, body) = check(nobody).await;
    assert_eq!(
        (status, code.as_str(), committed),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "primary_unreachable",
            json!(false)
        )
    );
    assert!(!body.to_string().contains("fdaa"), "{body}");

    // The pool out of connections: 503, without the pool's reason.
    let busy = Error::NoConnection {
        in_use: 10,
        max: 10,
        reason: "connection to db.internal:5432 refused".into(),
    };
    let (status, code, _, body) = check(busy).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
    );
    assert!(!body.to_string().contains("db.internal"), "{body}");

    // The rest, each with its status and never a 200.
    for (error, expected) in [
        (
            Error::RequestIdReused {
                request_id: "k1".into(),
                recorded_mutation: "other".into(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Error::InvalidRequestId {
                reason: "it is empty".into(),
            },
            StatusCode::BAD_REQUEST,
        ),
        (
            Error::Unauthorized {
                reason: "bad MAC".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Error::UnknownProcedure {
                name: "x".into(),
                peer_version: "1".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Error::Primary {
                message: "pool timed out".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            Error::AdHocStatementsDisabled { on_primary: true },
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (Error::Config("x".into()), StatusCode::INTERNAL_SERVER_ERROR),
        (Error::TrackerStopped, StatusCode::INTERNAL_SERVER_ERROR),
        (
            Error::Decode {
                message: "x".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ] {
        let name = format!("{error:?}");
        let (status, _, committed, _) = check(error).await;
        assert_eq!(status, expected, "{name}");
        assert_eq!(committed, json!(false), "{name}");
    }
}

/// A route that counts its runs and echoes the key it got.
fn keyed_router(runs: Arc<AtomicUsize>) -> Router {
    let optional = {
        let runs = Arc::clone(&runs);
        move |key: Option<IdempotencyKey>| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            key.map(IdempotencyKey::into_string).unwrap_or_default()
        }
    };
    let required = move |key: IdempotencyKey| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        key.to_string()
    };
    Router::new()
        .route("/optional", post(optional))
        .route("/required", post(required))
}

async fn send(router: &Router, path: &str, keys: &[&[u8]]) -> (StatusCode, Vec<u8>) {
    let mut request = Request::post(path);
    for key in keys {
        request = request.header("idempotency-key", *key);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

#[tokio::test]
async fn the_idempotency_key_extractor_takes_valid_keys_and_refuses_the_rest() {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = keyed_router(Arc::clone(&runs));
    let uuid = b"0b6e4a4e-9c1f-4a8e-8f4e-2f4c1b0f9a77";
    assert_eq!(
        send(&router, "/optional", &[uuid]).await,
        (StatusCode::OK, uuid.to_vec())
    );
    assert_eq!(
        send(&router, "/optional", &[]).await,
        (StatusCode::OK, Vec::new())
    );
    assert_eq!(send(&router, "/required", &[uuid]).await.0, StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    let long = vec![b'k'; 129];
    for (path, keys) in [
        ("/required", vec![]),
        ("/optional", vec![b"".as_slice()]),
        ("/optional", vec![long.as_slice()]),
        ("/optional", vec![b"has spaces".as_slice()]),
        ("/optional", vec![b"semi;colon".as_slice()]),
        ("/optional", vec![b"caf\xc3\xa9".as_slice()]),
        ("/optional", vec![b"one".as_slice(), b"two".as_slice()]),
    ] {
        let (status, body) = send(&router, path, &keys).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{keys:?}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "bad_request");
        assert_eq!(body["committed"], false);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{body}"
        );
    }
    let (_, body) = send(&router, "/optional", &[b"has spaces"]).await;
    let message = String::from_utf8(body).unwrap();
    assert!(
        message.contains("1 to 128 characters"),
        "the rule: {message}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3, "no refused request ran");
}

#[tokio::test]
async fn written_answers_with_its_output_and_whether_it_was_replicated() {
    for replicated in [true, false] {
        let response = (
            StatusCode::CREATED,
            Written::new(json!({"id": 7}), replicated),
        )
            .into_response();
        let (status, body, headers) = answer(response).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body, json!({"id": 7}));
        assert_eq!(
            headers[fly_postgres::REPLICATED_HEADER],
            if replicated { "true" } else { "false" }
        );
    }
}

#[tokio::test]
async fn a_write_that_outran_its_replica_is_written_not_failed() {
    let app = two_regions().await;
    // A replica that does not replay: the wait must time out.
    app.cluster.pause_replay().await.unwrap();
    let written = app
        .lax
        .write(CreateTodo {
            title: "late".into(),
        })
        .replication_timeout(Duration::from_millis(200))
        .written()
        .await
        .expect("committed is a success");
    assert!(!written.replicated);
    assert_eq!(written.output.title, "late");
    app.cluster.resume_replay().await.unwrap();
    let on_time = app
        .lax
        .write(CreateTodo {
            title: "on time".into(),
        })
        .written()
        .await
        .unwrap();
    assert!(on_time.replicated);
    let skipped = app
        .lax
        .write(CreateTodo {
            title: "skipped".into(),
        })
        .no_wait()
        .written()
        .await
        .unwrap();
    assert!(!skipped.replicated, "not waited for");
}
