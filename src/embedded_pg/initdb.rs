//! Creating a new cluster with `initdb`.
//!
//! Why its own file: it runs once per data directory, the first time, and
//! fixes what cannot be changed later without a new cluster — the superuser,
//! password authentication from the first connection on, UTF8 and no
//! locale (so sorting never depends on the machine).

use std::ffi::OsString;
use std::time::Instant;

use anyhow::{bail, Result};

use super::auth::{write_private_file, PASSWORD_FILE};
use super::run_as::{describe_output, Invocation};
use super::{EmbeddedPostgres, PG_USER};

impl EmbeddedPostgres {
    /// `initdb` of `pgdata/` with the superuser's password; `--no-sync` when ephemeral.
    pub(super) async fn initdb(&self, ephemeral: bool) -> Result<()> {
        let began = Instant::now();
        // initdb reads the password from a file it can read (it may run as
        // the `postgres` user): a private copy, removed right after.
        let pwfile = self.data_dir.join(format!("{PASSWORD_FILE}.initdb"));
        write_private_file(&pwfile, &self.password)?;
        if let Some(ra) = &self.run_as {
            ra.give(&pwfile)?;
        }
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            self.pgdata.clone().into(),
            "-U".into(),
            PG_USER.into(),
            "--auth=scram-sha-256".into(),
            "--pwfile".into(),
            pwfile.clone().into(),
            "-E".into(),
            "UTF8".into(),
            "--no-locale".into(),
        ];
        if ephemeral {
            args.push("--no-sync".into());
        }
        let out = Invocation::new(self.run_as.as_ref(), &self.bin_dir.join("initdb"), &args)
            .output()
            .await;
        let _ = std::fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            bail!(
                "initdb of {} failed ({}): {}",
                self.pgdata.display(),
                out.status,
                describe_output(&out)
            );
        }
        tracing::info!(
            pgdata = %self.pgdata.display(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "initialized new PostgreSQL cluster"
        );
        Ok(())
    }
}
