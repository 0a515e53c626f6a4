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
        match newest_distro_bin(has_server) {
            Some(dir) => Ok(PgBinaries { dir }),
            None => Err(TestkitError::NoPostgres {
                searched: searched.join(", "),
            }),
        }
    }

    /// `name` (a client program such as `pgbench`) from the distribution's
    /// newest PostgreSQL that has it (`/usr/lib/postgresql/*/bin`), for
    /// server builds that ship without it.
    pub fn distro_program(name: &str) -> Option<PathBuf> {
        newest_distro_bin(|dir| dir.join(name).exists()).map(|dir| dir.join(name))
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

    /// The server's major version (13 to 18 are supported: the testkit's
    /// settings, such as `wal_keep_size`, exist from 13 on).
    pub fn major_version(&self) -> Result<u32> {
        let line = self.version()?;
        major_of(&line).ok_or(TestkitError::UnsupportedVersion { found: line })
    }

    /// Refuses a server the testkit's settings do not fit, by name.
    pub(crate) fn check_supported(&self) -> Result<u32> {
        let major = self.major_version()?;
        if !(MIN_MAJOR..=MAX_MAJOR).contains(&major) {
            return Err(TestkitError::UnsupportedVersion {
                found: self.version()?,
            });
        }
        Ok(major)
    }
}

const MIN_MAJOR: u32 = 13;
const MAX_MAJOR: u32 = 18;

/// `postgres (PostgreSQL) 15.18 (Debian ...)` -> 15.
fn major_of(line: &str) -> Option<u32> {
    let number = line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    number
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The newest `/usr/lib/postgresql/<major>/bin` that `accept` takes.
fn newest_distro_bin(accept: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = entry.path().join("bin");
            accept(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

#[cfg(test)]
mod tests {
    use super::major_of;

    #[test]
    fn reads_the_major_version() {
        assert_eq!(
            major_of("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(major_of("postgres (PostgreSQL) 18.6"), Some(18));
        assert_eq!(major_of("postgres (PostgreSQL) 19devel"), Some(19));
        assert_eq!(major_of("garbage"), None);
    }
}
