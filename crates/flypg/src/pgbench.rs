//! pgbench's TPC-B-like load on a primary, for `flypg chaos` and
//! `flypg bench tracker --load`.

use std::path::PathBuf;

use fly_postgres_testkit::PgBinaries;

/// Failures as text, which converts into either runner's error type.
type PgbenchResult<T> = Result<T, String>;

/// The pgbench next to the PostgreSQL server binaries, if there is one.
pub(crate) fn locate() -> PgbenchResult<Option<PathBuf>> {
    let path = PgBinaries::locate()
        .map_err(|e| e.to_string())?
        .program("pgbench");
    Ok(path.exists().then_some(path))
}

/// Creates pgbench's tables (scale 1) in the database at `url`.
pub(crate) async fn init(pgbench: &PathBuf, url: &str) -> PgbenchResult<()> {
    let init = tokio::process::Command::new(pgbench)
        .args(["-i", "-q", "-s", "1", url])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("pgbench -i could not run: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        ));
    }
    Ok(())
}

/// Starts `clients` pgbench clients on `url` until the returned child is
/// dropped (it is killed then).
pub(crate) fn spawn(
    pgbench: &PathBuf,
    url: &str,
    clients: usize,
) -> PgbenchResult<tokio::process::Child> {
    let clients = clients.max(1).to_string();
    tokio::process::Command::new(pgbench)
        .args(["-n", "-c", &clients, "-j", "2", "-T", "86400", url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("pgbench could not start: {e}"))
}
