//! A cached, freshly initialized data directory that clusters copy.
//!
//! `initdb` takes most of a second; copying its result takes a few
//! milliseconds, so each test machine runs it once per PostgreSQL version.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binaries::PgBinaries;
use crate::error::{Result, TestkitError};
use crate::os_user::RunAs;

pub(crate) fn template_dir(bins: &PgBinaries, run_as: RunAs) -> Result<PathBuf> {
    let version = bins.version()?;
    let key: String = format!("{version} {} {}", bins.dir().display(), run_as.uid_text())
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    let root = std::env::temp_dir().join(format!(
        "fly-postgres-testkit-{}",
        nix::unistd::Uid::effective()
    ));
    std::fs::create_dir_all(&root)
        .map_err(|e| TestkitError::io(format!("creating {}", root.display()), e))?;
    // The server user must be able to traverse it, whatever the umask.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| TestkitError::io(format!("chmod {}", root.display()), e))?;
    }
    let template = root.join(key);
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    // Build beside the final place, then rename: concurrent test processes
    // either see the complete template or none.
    let building = tempfile::Builder::new()
        .prefix("building-")
        .tempdir_in(&root)
        .map_err(|e| TestkitError::io("creating template build dir", e))?;
    run_as.give(building.path())?;
    let data = building.path().join("data");
    initdb(bins, run_as, &data, building.path())?;
    match std::fs::rename(&data, &template) {
        Ok(()) => Ok(template),
        Err(_) if template.join("PG_VERSION").is_file() => Ok(template),
        Err(e) => Err(TestkitError::io(
            format!("moving template into {}", template.display()),
            e,
        )),
    }
}

fn initdb(bins: &PgBinaries, run_as: RunAs, data: &Path, cwd: &Path) -> Result<()> {
    let mut cmd = Command::new(bins.program("initdb"));
    cmd.arg("-D")
        .arg(data)
        .args(["--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        .arg("--locale=C")
        .current_dir(cwd);
    run_as.apply(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| TestkitError::io("running initdb", e))?;
    if !out.status.success() {
        return Err(TestkitError::Command {
            program: "initdb".into(),
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}
