//! Finding the PostgreSQL programs to run.
//!
//! Why its own file: the server tools (`initdb`, `pg_ctl`) are not on PATH in
//! Debian's packages but under `/usr/lib/postgresql/<version>/bin`, several
//! versions may be installed side by side, and an existing cluster must be run
//! by the version that made it. Client tools (`createdb`, `psql`,
//! `pg_basebackup`) are taken from the same directory as the server, so they
//! match its version.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use super::EmbeddedPostgres;

/// Where Debian (and the official apt repository) installs each version's binaries.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

const NOT_FOUND_MSG: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
     /usr/lib/postgresql/*/bin; install them, e.g. `apt-get install postgresql`, or set DATABASE_URL \
     to use an existing server";

/// Finds the directory with `initdb` and `pg_ctl`: the cluster's own version under
/// /usr/lib/postgresql if it exists, else PATH, else the highest /usr/lib/postgresql/*/bin.
pub(super) fn find_bin_dir(cluster_version: Option<&str>) -> Result<PathBuf> {
    let versioned_root = Path::new(VERSIONED_ROOT);
    if let Some(version) = cluster_version {
        let dir = versioned_root.join(version).join("bin");
        if has_server_bins(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.as_os_str().is_empty() || !has_server_bins(&dir) {
                continue;
            }
            // /usr/local/bin/pg_ctl may be a symlink into the real install; use the real
            // dir so that createdb/psql of the same version are found next to it.
            if let Ok(real) = std::fs::canonicalize(dir.join("pg_ctl")) {
                if let Some(real_dir) = real.parent() {
                    if has_server_bins(real_dir) {
                        return Ok(real_dir.to_path_buf());
                    }
                }
            }
            return Ok(dir);
        }
    }
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(versioned_root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_version) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_server_bins(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, dir)| dir)
        .ok_or_else(|| anyhow!(NOT_FOUND_MSG))
}

impl EmbeddedPostgres {
    /// A client tool (`createdb`, `psql`) from the cluster's bin dir, else from PATH.
    pub(super) fn client_tool(&self, name: &str) -> Result<PathBuf> {
        let local = self.bin_dir.join(name);
        if is_executable(&local) {
            return Ok(local);
        }
        find_on_path(name).ok_or_else(|| {
            anyhow!(
                "`{name}` not found in {} or on PATH; install the PostgreSQL client tools \
                 (e.g. `apt-get install postgresql-client`)",
                self.bin_dir.display()
            )
        })
    }
}

/// A version directory's name as comparable numbers (`"9.6"` → `[9, 6]`).
fn parse_version(s: &str) -> Option<Vec<u64>> {
    s.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

fn has_server_bins(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

pub(super) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_directories_compare_by_number() {
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("x"), None);
        // Numerically, not as text: 10 is newer than 9.6.
        assert!(parse_version("10") > parse_version("9.6"));
    }
}
