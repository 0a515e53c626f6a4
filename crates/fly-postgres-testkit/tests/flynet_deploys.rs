//! What the Fly world's `fly deploy` does with fly.toml, on programs that
//! need nothing but a shell: a machine that never passes its check, or
//! exits at start, fails the deploy naming it; a stop sends
//! `kill_signal` and SIGKILL after `kill_timeout`.

use std::time::{Duration, Instant};

use fly_postgres_testkit::flynet::{FlyApp, Image, Stopped};
use fly_postgres_testkit::{FlyNet, TestkitError};

const FLY_TOML: &str = r#"
app = "shell"
primary_region = "syd"
kill_signal = "SIGTERM"
kill_timeout = 1

[http_service]
  internal_port = 8080
  [[http_service.checks]]
    grace_period = "1s"
    interval = "1s"
    timeout = "1s"
    method = "GET"
    path = "/healthz"
"#;

fn shell(tag: &str, script: &str) -> Image {
    Image::new(tag, "/bin/sh").args(["-c", script])
}

#[tokio::test]
async fn failed_checks_fail_the_deploy_and_stops_escalate_to_sigkill() {
    let Some(net) =
        FlyNet::start_or_skip("failed_checks_fail_the_deploy_and_stops_escalate_to_sigkill")
    else {
        return;
    };
    // Serves nothing and ignores SIGTERM.
    let stubborn = shell("v1", "trap '' TERM; while true; do sleep 0.1; done");
    let mut app = FlyApp::new(FLY_TOML, stubborn).unwrap();
    let started = Instant::now();
    let error = app.launch(&net, "syd", Vec::new()).await.unwrap_err();
    let took = started.elapsed();
    match &error {
        TestkitError::FailedDeploy { machine, why, .. } => {
            assert_eq!(machine, app.machines()[0].machine().id());
            assert!(
                why.contains("GET /healthz did not answer 200 within 3s"),
                "{why}"
            );
        }
        other => panic!("expected FailedDeploy, got {other:?}"),
    }
    // grace_period + 2 intervals.
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        app.routes().all().is_empty(),
        "an unhealthy machine gets no traffic"
    );
    let stopping = Instant::now();
    assert_eq!(app.destroy(0).await.unwrap(), Stopped::Killed);
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // One that exits at start fails at once, its output in the error.
    let mut app = FlyApp::new(FLY_TOML, shell("v1", "echo no DATABASE_URL >&2; exit 3")).unwrap();
    let error = app.launch(&net, "syd", Vec::new()).await.unwrap_err();
    match &error {
        TestkitError::FailedDeploy { why, tail, .. } => {
            assert!(why.contains("exited"), "{why}");
            assert!(tail.contains("no DATABASE_URL"), "{tail}");
        }
        other => panic!("expected FailedDeploy, got {other:?}"),
    }
    // One that exits on SIGTERM stops cleanly, well before kill_timeout.
    let mut app = FlyApp::new(
        FLY_TOML,
        shell("v1", "trap 'exit 0' TERM; while true; do sleep 0.1; done"),
    )
    .unwrap();
    let _ = app.launch(&net, "syd", Vec::new()).await;
    assert_eq!(
        app.destroy(0).await.unwrap(),
        Stopped::Exited { success: true }
    );
}
