//! The data directory: making it usable, and telling whether it already holds a cluster.
//!
//! Why its own file: the directory is the only state the embedded cluster keeps
//! between runs, and it is named by the operator (`LEDGER_DATA_DIR`), so it is
//! checked before anything is run on it — its path must survive pg_ctl's shell,
//! and a half-made cluster (an interrupted `initdb`) must be reported, not
//! built over.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Creates `data_dir` if missing and returns its canonical absolute path, refusing
/// paths pg_ctl cannot pass through its shell.
pub(super) fn resolve(data_dir: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(data_dir)
        .with_context(|| format!("invalid data directory {}", data_dir.display()))?;
    check_shell_safe(&absolute)?;
    std::fs::create_dir_all(&absolute)
        .with_context(|| format!("failed to create data directory {}", absolute.display()))?;
    let canonical = std::fs::canonicalize(&absolute)
        .with_context(|| format!("failed to resolve data directory {}", absolute.display()))?;
    // Resolving symlinks may have brought in such a character.
    check_shell_safe(&canonical)?;
    Ok(canonical)
}

/// pg_ctl pastes -D and -l into a /bin/sh command line inside double quotes, so these
/// characters would be expanded by the shell and break the paths.
pub(super) fn check_shell_safe(data_dir: &Path) -> Result<()> {
    if data_dir
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'"' | b'$' | b'`' | b'\\'))
    {
        bail!(
            "data directory {} contains a character pg_ctl cannot handle (\", $, ` or \\); \
             choose another path with LEDGER_DATA_DIR",
            data_dir.display()
        );
    }
    Ok(())
}

/// The PostgreSQL version of the cluster in `pgdata` (its `PG_VERSION`), `None` when
/// there is no cluster yet; an error when `pgdata` holds something else.
pub(super) fn cluster_version(pgdata: &Path) -> Result<Option<String>> {
    let version_file = pgdata.join("PG_VERSION");
    let version = match std::fs::read_to_string(&version_file) {
        Ok(v) => Some(v.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read {}", version_file.display()))
        }
    };
    if version.is_none() && dir_is_non_empty(pgdata)? {
        bail!(
            "{} exists but is not a PostgreSQL cluster (no PG_VERSION; maybe an interrupted initdb); \
             remove it to let the service create a fresh cluster",
            pgdata.display()
        );
    }
    Ok(version)
}

/// Creates the server's unix socket directory, reachable by its owner only.
pub(super) fn create_socket_dir(socket_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(socket_dir)
        .with_context(|| format!("failed to create {}", socket_dir.display()))?;
    // Only the server's own user may reach its socket.
    std::fs::set_permissions(socket_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to chmod {}", socket_dir.display()))
}

fn dir_is_non_empty(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_the_shell_would_expand_are_refused() {
        assert!(check_shell_safe(Path::new("/var/lib/ledger data")).is_ok());
        for bad in ["/tmp/a\"b", "/tmp/$HOME", "/tmp/`id`", "/tmp/a\\b"] {
            assert!(check_shell_safe(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cluster_is_told_from_nothing_and_from_something_else() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let pgdata = dir.path().join("pgdata");
        assert_eq!(cluster_version(&pgdata)?, None, "missing");
        std::fs::create_dir(&pgdata)?;
        assert_eq!(cluster_version(&pgdata)?, None, "empty");
        std::fs::write(pgdata.join("postgresql.conf"), "")?;
        assert!(cluster_version(&pgdata).is_err(), "files but no PG_VERSION");
        std::fs::write(pgdata.join("PG_VERSION"), "16\n")?;
        assert_eq!(cluster_version(&pgdata)?, Some("16".to_owned()));
        Ok(())
    }
}
