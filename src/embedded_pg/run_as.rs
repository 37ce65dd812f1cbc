//! Running the server's tools (`initdb`, `pg_ctl`, `pg_basebackup`) as
//! the unprivileged `postgres` OS user when the service runs as root —
//! PostgreSQL refuses to run as root — through `runuser` (or `su`), and
//! checking that user can reach the data directory. Every tool the cluster
//! runs, as that user or as ourselves, goes through [`Invocation`] here, so
//! each gets the same clean environment and its failures read the same.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use super::binaries::{find_on_path, is_executable};
use super::PG_USER;

/// The unprivileged OS user the server tools run as when we are root.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    user: String,
    uid: u32,
    gid: u32,
    switch: SwitchUser,
}

impl RunAs {
    /// Make `path` this user's (the server writes there).
    pub(super) fn give(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).with_context(|| {
            format!(
                "failed to chown {} to the `{}` user",
                path.display(),
                self.user
            )
        })
    }
}

/// The tool used to run a command as [`RunAs::user`].
#[derive(Debug, Clone)]
enum SwitchUser {
    /// `runuser -u USER -- PROGRAM ARGS…` (util-linux; no PAM password prompt, no shell).
    Runuser(PathBuf),
    /// `su -s /bin/sh -c 'PROGRAM ARGS…' USER` (fallback where runuser is missing).
    Su(PathBuf),
}

/// A program and its arguments, already wrapped for the target OS user.
pub(super) struct Invocation {
    program: OsString,
    args: Vec<OsString>,
}

impl Invocation {
    /// Wraps `program args` so that it runs as `run_as` (or as ourselves when `None`).
    pub(super) fn new(run_as: Option<&RunAs>, program: &Path, args: &[OsString]) -> Self {
        match run_as {
            None => Invocation {
                program: program.as_os_str().to_owned(),
                args: args.to_vec(),
            },
            Some(RunAs {
                user,
                switch: SwitchUser::Runuser(runuser),
                ..
            }) => {
                let mut wrapped: Vec<OsString> = vec!["-u".into(), user.into(), "--".into()];
                wrapped.push(program.as_os_str().to_owned());
                wrapped.extend(args.iter().cloned());
                Invocation {
                    program: runuser.as_os_str().to_owned(),
                    args: wrapped,
                }
            }
            Some(RunAs {
                user,
                switch: SwitchUser::Su(su),
                ..
            }) => {
                let mut line = shell_quote(program.as_os_str());
                for arg in args {
                    line.push(b' ');
                    line.extend(shell_quote(arg));
                }
                Invocation {
                    program: su.as_os_str().to_owned(),
                    args: vec![
                        "-s".into(),
                        "/bin/sh".into(),
                        "-c".into(),
                        OsString::from_vec(line),
                        user.into(),
                    ],
                }
            }
        }
    }

    /// A std command with a neutral cwd, no stdin and no inherited libpq settings.
    pub(super) fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            // The postgres user must be able to resolve its cwd (initdb/pg_ctl call getcwd).
            .current_dir("/")
            .stdin(Stdio::null());
        // PGHOST/PGPORT/PGSSLMODE/PGOPTIONS… from the caller's environment must not redirect
        // or break our tools: everything they need is passed explicitly.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PG") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    pub(super) async fn output(&self) -> Result<Output> {
        tokio::process::Command::from(self.std_command())
            .output()
            .await
            .with_context(|| format!("failed to run {}", self.display()))
    }

    /// A client tool's run, authenticating with `password` (through the
    /// environment, never the command line other users can read).
    pub(super) async fn output_with_password(&self, password: &str) -> Result<Output> {
        let mut command = self.std_command();
        command.env("PGPASSWORD", password);
        tokio::process::Command::from(command)
            .output()
            .await
            .with_context(|| format!("failed to run {}", self.display()))
    }

    pub(super) fn output_blocking(&self) -> Result<Output> {
        self.std_command()
            .output()
            .with_context(|| format!("failed to run {}", self.display()))
    }

    pub(super) fn display(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for arg in &self.args {
            s.push(' ');
            s.push_str(&arg.to_string_lossy());
        }
        s
    }
}

/// A tool's stderr and stdout for an error message, or "(no output)".
pub(super) fn describe_output(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = format!("{}\n{}", stderr.trim(), stdout.trim());
    let text = text.trim();
    if text.is_empty() {
        "(no output)".to_owned()
    } else {
        text.to_owned()
    }
}

/// `Some(postgres user)` when we are root (PostgreSQL refuses to run as root).
pub(super) fn run_as_user() -> Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let (uid, gid) = lookup_user(PG_USER)?.ok_or_else(|| {
        anyhow!(
            "running as root, but PostgreSQL refuses to run as root and there is no `{PG_USER}` OS user \
             to run it as; create one (e.g. `useradd --system --create-home {PG_USER}`, which \
             `apt-get install postgresql` does), run the service as a non-root user, or set DATABASE_URL"
        )
    })?;
    let sbin = [
        "/usr/sbin/runuser",
        "/sbin/runuser",
        "/usr/bin/runuser",
        "/bin/runuser",
    ];
    let switch = if let Some(p) = find_on_path("runuser").or_else(|| first_executable(&sbin)) {
        SwitchUser::Runuser(p)
    } else if let Some(p) =
        find_on_path("su").or_else(|| first_executable(&["/bin/su", "/usr/bin/su"]))
    {
        SwitchUser::Su(p)
    } else {
        bail!("running as root, but neither `runuser` nor `su` is available to run PostgreSQL as the `{PG_USER}` user");
    };
    Ok(Some(RunAs {
        user: PG_USER.to_owned(),
        uid,
        gid,
        switch,
    }))
}

fn first_executable(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| is_executable(p))
}

/// (uid, gid) of an OS user.
fn lookup_user(name: &str) -> Result<Option<(u32, u32)>> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("could not look up the OS user `{name}`"))?;
    Ok(user.map(|user| (user.uid.as_raw(), user.gid.as_raw())))
}

/// Fails with a helpful message unless the postgres user can enter `dir` (every
/// ancestor must be searchable by it).
pub(super) async fn check_reachable(run_as: &RunAs, dir: &Path) -> Result<()> {
    if can_enter(run_as, dir).await? {
        return Ok(());
    }
    let mut blocker = dir.to_path_buf();
    let ancestors: Vec<&Path> = dir.ancestors().collect();
    for ancestor in ancestors.into_iter().rev() {
        if !can_enter(run_as, ancestor).await? {
            blocker = ancestor.to_path_buf();
            break;
        }
    }
    bail!(
        "the `{user}` OS user (which runs PostgreSQL because this process is root) cannot access {blocker}, \
         so it cannot reach the data directory {dir}; make {blocker} traversable (e.g. `chmod o+x {blocker}`) \
         or point LEDGER_DATA_DIR at a directory under an accessible path (e.g. /var/lib/ledger)",
        user = run_as.user,
        blocker = blocker.display(),
        dir = dir.display()
    )
}

async fn can_enter(run_as: &RunAs, dir: &Path) -> Result<bool> {
    let args: Vec<OsString> = vec![
        "-c".into(),
        r#"cd -- "$1""#.into(),
        "sh".into(),
        dir.as_os_str().to_owned(),
    ];
    let out = Invocation::new(Some(run_as), Path::new("/bin/sh"), &args)
        .output()
        .await?;
    Ok(out.status.success())
}

/// POSIX shell single-quoting.
pub(super) fn shell_quote(s: &OsStr) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'\'');
    for &b in s.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_quotes_and_spaces_in_one_word() {
        assert_eq!(shell_quote(OsStr::new("a'b c")), b"'a'\\''b c'".to_vec());
        assert_eq!(shell_quote(OsStr::new("")), b"''".to_vec());
    }

    /// The `su` fallback must deliver arguments intact (quotes, spaces) and switch user.
    #[test]
    fn su_fallback_quotes_arguments() -> Result<()> {
        let (Ok(Some(mut run_as)), Some(su)) =
            (run_as_user(), first_executable(&["/bin/su", "/usr/bin/su"]))
        else {
            return Ok(()); // not root, or no su here
        };
        run_as.switch = SwitchUser::Su(su);
        let args: Vec<OsString> = vec![
            "-c".into(),
            r#"printf '%s|%s' "$(id -un)" "$1""#.into(),
            "sh".into(),
            "it's a $HOME `x`".into(),
        ];
        let out = Invocation::new(Some(&run_as), Path::new("/bin/sh"), &args).output_blocking()?;
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "postgres|it's a $HOME `x`"
        );
        Ok(())
    }
}
