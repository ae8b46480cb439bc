//! Running tools (kubectl, helm, gcloud) against the testbed.

use std::ffi::OsStr;
use std::path::Path;
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

    /// One request to the testbed emulator's admin API (`/_emulator/...`, docs/emulator.md), over a
    /// plain socket (HTTP/1.1, no client library needed): the answer's body.
    ///
    /// # Panics
    /// When the emulator cannot be reached or does not answer 200.
    pub fn emulator_admin(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let host = self.gcp_endpoint.trim_start_matches("http://").trim_end_matches('/');
        let mut s = std::net::TcpStream::connect(host).expect("connect to the testbed's emulator");
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{method} {path}: {response}");
        response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }
}

/// Runs the real gcloud (`/usr/bin/gcloud`) with `args` against an emulator a test started itself at
/// `endpoint`: its configuration and an access-token file under `home`, `project` as the default, no
/// prompts, no update checks, no usage reports; killed after 3 minutes. (success, stdout + stderr).
///
/// # Panics
/// When gcloud is not installed (the tests need google-cloud-cli), cannot run, or times out.
pub async fn gcloud_against(endpoint: &str, home: &Path, project: &str, args: &[&str]) -> (bool, String) {
    let gcloud = "/usr/bin/gcloud";
    assert!(Path::new(gcloud).exists(), "the gcloud CLI is required for this test (install google-cloud-cli)");
    std::fs::create_dir_all(home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    let token = home.join("token");
    std::fs::write(&token, "test-token").unwrap_or_else(|e| panic!("{}: {e}", token.display()));
    let mut cmd = tokio::process::Command::new(gcloud);
    cmd.args(args)
        .env("CLOUDSDK_CONFIG", home.join("config"))
        .env("CLOUDSDK_CORE_PROJECT", project)
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", &token)
        .kill_on_drop(true);
    for api in ["SQL", "IAM", "CLOUDRESOURCEMANAGER", "CONTAINER", "SERVICEUSAGE"] {
        cmd.env(format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"), endpoint);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("gcloud {args:?} timed out"))
        .expect("run gcloud");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Copies what directory `from` holds into `to` (made when missing), subdirectories included: a
/// test's own copy of a spec and its modules.
///
/// # Panics
/// When a file cannot be read or written.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", from.display())).path();
        let dest = to.join(path.file_name().expect("a directory entry has a name"));
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap_or_else(|e| panic!("{} -> {}: {e}", path.display(), dest.display()));
        }
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
