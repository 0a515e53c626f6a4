//! Finding the PostgreSQL server binaries on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, TestkitError};

/// The directory holding `postgres`, `initdb` and friends.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: `PG_BIN`, then `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/*/bin`. A `PG_BIN` that is set must be
    /// right: it is an error, not a hint, when it holds no server.
    pub fn locate() -> Result<Self> {
        let mut searched = Vec::new();
        if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            if has_server(&dir) {
                return Ok(PgBinaries { dir });
            }
            return Err(TestkitError::NoPostgres {
                searched: format!(
                    "PG_BIN={} (set, but it has no `postgres` and `initdb`)",
                    dir.display()
                ),
            });
        }
        searched.push("pg_config --bindir".to_owned());
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && has_server(&dir) {
                return Ok(PgBinaries { dir });
            }
        }
        searched.push("/usr/lib/postgresql/*/bin".to_owned());
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let dir = entry.path().join("bin");
                has_server(&dir).then_some((version, dir))
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, dir)) => Ok(PgBinaries { dir }),
            None => Err(TestkitError::NoPostgres {
                searched: searched.join(", "),
            }),
        }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one program in it.
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The server's `--version` line, used to key the cached template.
    pub(crate) fn version(&self) -> Result<String> {
        let out = Command::new(self.program("postgres"))
            .arg("--version")
            .output()
            .map_err(|e| TestkitError::io("running postgres --version", e))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}
