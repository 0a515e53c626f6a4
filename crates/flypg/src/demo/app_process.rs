//! The todo app instances of the demo and the chaos drills: this binary's
//! hidden `todo-app` command, configured by env as on Fly.io.

use fly_postgres_testkit::AppProcess;

pub(crate) type SpawnResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

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
