//! The todo app instances of the demo and the chaos drills: this binary's
//! hidden `todo-app` command, configured by env as on Fly.io.

use fly_postgres_testkit::AppProcess;

pub(crate) type SpawnResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The environment of a todo app instance in `region` (primary region
/// `primary`) on loopback, as on Fly.io but with static addresses.
pub(crate) fn todo_env(region: &str, primary: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FLY_REGION", region.to_owned()),
        ("PRIMARY_REGION", primary.to_owned()),
        ("FLY_RPC_SECRET", secret.to_owned()),
        ("FLY_RPC_LISTEN", "127.0.0.1:0".to_owned()),
        ("HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("FLY_POSTGRES_REWRITE_URL", "false".to_owned()),
    ]
}

/// Starts `flypg todo-app` with `env` (logs at `warn` unless `RUST_LOG`
/// says otherwise) and waits for it to serve.
pub(crate) async fn spawn_todo_app(env: Vec<(&'static str, String)>) -> SpawnResult<AppProcess> {
    let exe = std::env::current_exe()?;
    let mut env = env;
    if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
        env.push((
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ));
    }
    Ok(tokio::task::spawn_blocking(move || AppProcess::spawn(exe, &["todo-app"], &env)).await??)
}
