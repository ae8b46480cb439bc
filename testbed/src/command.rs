//! Running tools (kubectl, helm, gcloud) against the testbed.

use std::ffi::OsStr;
use std::process::Command;

use crate::Testbed;

impl Testbed {
    /// `program` with the testbed's environment: `KUBECONFIG`, the gcloud endpoint overrides and access
    /// token, helm's directories, and `PATH` with the built kube binaries and helm first.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(&self.env);
        cmd
    }

    /// The built kubectl, with the testbed's environment.
    pub fn kubectl(&self) -> Command {
        self.command(&self.kubectl)
    }

    /// helm, with the testbed's environment.
    pub fn helm(&self) -> Command {
        self.command(&self.helm)
    }

    /// gcloud, with its API endpoints pointed at the emulator and the testbed's access token.
    pub fn gcloud(&self) -> Command {
        self.command("gcloud")
    }
}

/// Runs `cmd` and returns its stdout.
///
/// # Panics
/// When it cannot start or exits non-zero, with the command line, stdout and stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run {shown}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
