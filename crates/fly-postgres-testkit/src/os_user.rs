//! Which OS user the servers run as.

use std::path::Path;

use nix::unistd::{Gid, Uid, User, chown};

use crate::error::{Result, TestkitError};

/// The unprivileged identity the servers run under: PostgreSQL refuses to run
/// as root, so when we are root we switch to the `postgres` OS user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    ids: Option<(Uid, Gid)>,
}

impl RunAs {
    pub(crate) fn detect() -> Result<Self> {
        if !Uid::effective().is_root() {
            return Ok(RunAs { ids: None });
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(TestkitError::NoPostgresUser)?;
        Ok(RunAs {
            ids: Some((user.uid, user.gid)),
        })
    }

    /// Makes `path` owned by the server user.
    pub(crate) fn give(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid))
                .map_err(|e| TestkitError::io(format!("chown {}", path.display()), e.into()))?;
        }
        Ok(())
    }

    /// The server user's uid, for keys of cached files.
    pub(crate) fn uid_text(&self) -> String {
        self.ids
            .map_or_else(|| Uid::effective().to_string(), |(uid, _)| uid.to_string())
    }

    pub(crate) fn apply(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
    }
}
