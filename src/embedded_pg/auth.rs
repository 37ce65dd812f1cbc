//! The superuser's password, and a server that accepts nothing else.
//!
//! Why its own file: the cluster listens on loopback, where every local account
//! can connect, so it requires a password for TCP and the unix socket alike. The
//! password is generated once and kept owner-readable in the data directory;
//! wherever it must be handed to a tool it goes through a private file or the
//! environment, never a command line other users can read. Clusters made by an
//! older version with `trust` authentication are converted on their next start.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::run_as::{describe_output, Invocation};
use super::{EmbeddedPostgres, PG_USER};

/// The file holding the superuser's password, in the data directory.
pub(super) const PASSWORD_FILE: &str = "postgres-password";

/// The superuser's password: read from the data directory, or generated
/// and saved there (0600). `true` with it when the cluster exists but has no
/// password yet — made with `trust` by an older version.
pub(super) fn load_or_create_password(
    data_dir: &Path,
    cluster_exists: bool,
) -> Result<(String, bool)> {
    let path = data_dir.join(PASSWORD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a password: {e}"))?;
    let password = hex::encode(bytes);
    write_private_file(&path, &password)?;
    Ok((password, cluster_exists))
}

/// Write a file readable by its owner only, from its creation on.
pub(super) fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

impl EmbeddedPostgres {
    /// A cluster made with `trust` authentication (by an older version) gets the
    /// generated password and is switched to `scram-sha-256` for every connection.
    pub(super) async fn require_password(&self) -> Result<()> {
        let psql = self.client_tool("psql")?;
        // The statement goes through a private file, not the command line.
        let script = self.data_dir.join(format!("{PASSWORD_FILE}.sql"));
        write_private_file(
            &script,
            &format!(
                "alter role {PG_USER} password '{}';\n",
                self.password.replace('\'', "''")
            ),
        )?;
        let port = self.port.to_string();
        let args: Vec<OsString> = [
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-f",
        ]
        .iter()
        .map(OsString::from)
        .chain([script.clone().into_os_string()])
        .collect();
        let out = Invocation::new(None, &psql, &args)
            .output_with_password(&self.password)
            .await;
        let _ = std::fs::remove_file(&script);
        let out = out?;
        if !out.status.success() {
            bail!(
                "setting the superuser's password failed ({}): {}",
                out.status,
                describe_output(&out)
            );
        }
        let hba = self.pgdata.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)
            .with_context(|| format!("failed to read {}", hba.display()))?;
        std::fs::write(&hba, require_scram(&rules))
            .with_context(|| format!("failed to write {}", hba.display()))?;
        let args: Vec<OsString> = vec!["reload".into(), "-D".into(), self.pgdata.clone().into()];
        let out = Invocation::new(self.run_as.as_ref(), &self.bin_dir.join("pg_ctl"), &args)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "pg_ctl reload of {} failed ({}): {}",
                self.pgdata.display(),
                out.status,
                describe_output(&out)
            );
        }
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL now requires a password");
        Ok(())
    }
}

/// pg_hba.conf with every `trust` rule turned into `scram-sha-256`.
fn require_scram(rules: &str) -> String {
    rules
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_rule = fields
                .first()
                .is_some_and(|kind| matches!(*kind, "local" | "host" | "hostssl" | "hostnossl"));
            if is_rule && fields.last() == Some(&"trust") {
                let cut = line.rfind("trust").unwrap_or(line.len());
                format!("{}scram-sha-256", &line[..cut])
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn trust_rules_become_password_rules_and_nothing_else_changes() {
        let rules = "# TYPE DATABASE USER ADDRESS METHOD\n\
                     # a comment ending in trust\n\
                     local   all all                trust\n\
                     host    all all 127.0.0.1/32   trust\n\
                     host    all all ::1/128        scram-sha-256\n";
        let changed = require_scram(rules);
        assert_eq!(
            changed,
            "# TYPE DATABASE USER ADDRESS METHOD\n\
             # a comment ending in trust\n\
             local   all all                scram-sha-256\n\
             host    all all 127.0.0.1/32   scram-sha-256\n\
             host    all all ::1/128        scram-sha-256\n"
        );
    }

    #[test]
    fn the_password_is_made_once_kept_private_and_flags_an_old_trust_cluster() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (made, legacy) = load_or_create_password(dir.path(), false)?;
        assert!(!legacy, "a new cluster is made with the password");
        assert_eq!(made.len(), 48);
        let mode = std::fs::metadata(dir.path().join(PASSWORD_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_password(dir.path(), true)?, (made, false));

        let old = tempfile::tempdir()?;
        let (_, legacy) = load_or_create_password(old.path(), true)?;
        assert!(
            legacy,
            "an existing cluster without a password file was made with trust"
        );
        Ok(())
    }
}
