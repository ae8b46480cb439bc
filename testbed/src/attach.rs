//! Finding the testbed: attach to a running one, or start it once through `scripts/testbed up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Why the testbed could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `scripts/testbed up` failed (a part is missing or did not start); its output says why.
    #[error("`scripts/testbed up` failed ({status}); its output:\n{output}")]
    Up {
        /// The script's exit status.
        status: std::process::ExitStatus,
        /// The script's stderr and stdout.
        output: String,
    },
    /// The script could not be run at all.
    #[error("could not run {}", script.display())]
    Spawn {
        /// The script's path.
        script: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the run directory could not be read.
    #[error("could not read {}", path.display())]
    Read {
        /// The file's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// This process runs outside the testbed's network namespace, where none of its addresses exist.
    #[error(
        "this process is not inside the testbed's network namespace {netns}, where its servers listen: run \
         the tests through `scripts/test-all`, or `scripts/testbed exec cargo test ...`"
    )]
    OutsideNamespace {
        /// The namespace's name.
        netns: String,
    },
    /// The run directory's `testbed.env` lacks a variable.
    #[error("{} has no {key}", path.display())]
    Missing {
        /// The file's path.
        path: PathBuf,
        /// The missing variable.
        key: &'static str,
    },
}

/// The running testbed: where its parts listen and how to authenticate to them.
///
/// Obtain it with [`Testbed::get`]; every field comes from the run directory's `testbed.env`, written by
/// `scripts/testbed up`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Testbed {
    /// The run directory (pids, certificates, logs, `testbed.env`).
    pub dir: PathBuf,
    /// The kube-apiserver's URL, `https://<node address>:<port>` (inside the testbed's network namespace).
    pub kube_api: String,
    /// The CA that signed the kube-apiserver's serving certificate, PEM.
    pub kube_ca_pem: String,
    /// The path of that CA.
    pub kube_ca_file: PathBuf,
    /// The static admin bearer token (group `system:masters`). It is also the GCP access token the
    /// emulator accepts, as on GKE, where the Google access token authenticates to the cluster.
    pub token: String,
    /// A kubeconfig with the admin token, for kubectl and helm.
    pub kubeconfig: PathBuf,
    /// The kubectl built with the kube-apiserver.
    pub kubectl: PathBuf,
    /// The helm binary.
    pub helm: PathBuf,
    /// The GCP emulator's base URL, `http://<node address>:<port>/`.
    pub gcp_endpoint: String,
    /// The default GCP project (`CLOUDSDK_CORE_PROJECT`).
    pub gcp_project: String,
    /// Every variable of `scripts/testbed env` (with `PATH` already extended), for child processes.
    pub env: BTreeMap<String, String>,
}

static TESTBED: OnceLock<Result<Testbed, String>> = OnceLock::new();

impl Testbed {
    /// The testbed, attached or started once per process.
    ///
    /// # Panics
    /// When the testbed cannot be brought up: tests that need it must fail, never skip.
    pub fn get() -> &'static Testbed {
        let result = TESTBED.get_or_init(|| Self::try_start().map_err(|e| format!("{e}")));
        match result {
            Ok(testbed) => testbed,
            Err(e) => panic!("the local testbed is not available: {e}\n(see docs/testbed.md)"),
        }
    }

    /// Attaches to the running testbed, or runs `scripts/testbed up` (idempotent, and serialized by a
    /// file lock so that several test binaries starting at once bring up one testbed).
    pub fn try_start() -> Result<Testbed, Error> {
        let script = repo_root().join("scripts/testbed");
        let status = Command::new(&script).arg("status").output();
        let healthy = matches!(&status, Ok(out) if out.status.success());
        if !healthy {
            let out = Command::new(&script)
                .arg("up")
                // `cargo test` holds the workspace target dir's lock while tests run, so building the
                // emulator there would wait forever: use a target dir of its own.
                .env("SKYFORM_TESTBED_CARGO_TARGET_DIR", repo_root().join("target/testbed-autostart"))
                .output()
                .map_err(|source| Error::Spawn { script: script.clone(), source })?;
            if !out.status.success() {
                return Err(Error::Up {
                    status: out.status,
                    output: format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)),
                });
            }
        }
        let testbed = Self::attach(&run_dir())?;
        if let Some(netns) = testbed.env.get("SKYFORM_TESTBED_NETNS") {
            let here = std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            let there =
                std::fs::metadata(format!("/run/netns/{netns}")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if !matches!((here, there), (Ok(a), Ok(b)) if a == b) {
                return Err(Error::OutsideNamespace { netns: netns.clone() });
            }
        }
        Ok(testbed)
    }

    /// Reads a run directory's `testbed.env` without checking that the testbed runs.
    pub fn attach(dir: &Path) -> Result<Testbed, Error> {
        let path = dir.join("testbed.env");
        let text = read(&path)?;
        let mut env: BTreeMap<String, String> =
            text.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let get = |key: &'static str| env.get(key).cloned().ok_or_else(|| Error::Missing { path: path.clone(), key });
        let kube_ca_file = PathBuf::from(get("SKYFORM_KUBE_CA_FILE")?);
        let testbed_path = get("SKYFORM_TESTBED_PATH")?;
        let testbed = Testbed {
            dir: PathBuf::from(get("SKYFORM_TESTBED_DIR")?),
            kube_api: get("SKYFORM_KUBE_API")?,
            kube_ca_pem: read(&kube_ca_file)?,
            kube_ca_file,
            token: get("SKYFORM_GCP_ACCESS_TOKEN")?,
            kubeconfig: PathBuf::from(get("KUBECONFIG")?),
            kubectl: PathBuf::from(get("SKYFORM_KUBECTL")?),
            helm: PathBuf::from(get("SKYFORM_HELM")?),
            gcp_endpoint: get("SKYFORM_GCP_ENDPOINT")?,
            gcp_project: get("CLOUDSDK_CORE_PROJECT")?,
            env: BTreeMap::new(),
        };
        env.remove("SKYFORM_TESTBED_PATH");
        let path_var = match std::env::var("PATH") {
            Ok(p) if !p.is_empty() => format!("{testbed_path}:{p}"),
            _ => testbed_path,
        };
        env.insert("PATH".to_owned(), path_var);
        Ok(Testbed { env, ..testbed })
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })
}

/// The workspace root (this crate lives in `<root>/testbed`).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testbed crate has a parent directory").to_owned()
}

/// The run directory, as `scripts/testbed` computes it.
fn run_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SKYFORM_TESTBED_RUN") {
        return dir.into();
    }
    let cache = match std::env::var_os("SKYFORM_TESTBED_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/skyform/testbed")
        }
    };
    cache.join("run")
}
