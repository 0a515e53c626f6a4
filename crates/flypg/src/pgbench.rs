//! pgbench's TPC-B-like load on a primary, for `flypg chaos` and
//! `flypg bench tracker --load`.

use std::path::PathBuf;

use fly_postgres_testkit::PgBinaries;

/// Failures as text, which converts into either runner's error type.
type PgbenchResult<T> = Result<T, String>;

/// A pgbench: next to the PostgreSQL server binaries, else on `PATH`, else
/// the distribution's newest (`/usr/lib/postgresql/*/bin`), for server
/// builds that ship without one (the embedded-postgres packages). pgbench
/// drives older and newer servers alike.
pub(crate) fn locate() -> PgbenchResult<Option<PathBuf>> {
    let beside = PgBinaries::locate()
        .map_err(|e| e.to_string())?
        .program("pgbench");
    if beside.exists() {
        return Ok(Some(beside));
    }
    if let Ok(on_path) = which::which("pgbench") {
        return Ok(Some(on_path));
    }
    Ok(PgBinaries::distro_program("pgbench"))
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
#[cfg(feature = "bench")]
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
