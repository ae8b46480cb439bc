//! Running the `helm` binary: private temporary files for values and
//! credentials, and errors with secrets masked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::foundation::files::TempFile;
use crate::providers::ProviderError;
use crate::providers::kubernetes::connect::Target;
use crate::timings;
use crate::value::MASK;

/// A private temporary file (foundation::files), as a provider error when it cannot be made.
pub struct PrivateFile(TempFile);

impl PrivateFile {
    /// Writes `content` to a new 0600 file, removed when dropped or when a signal ends the process.
    pub fn new(tag: &str, content: &[u8]) -> Result<PrivateFile, ProviderError> {
        TempFile::new(tag, content)
            .map(PrivateFile)
            .map_err(|e| ProviderError::Permanent(format!("creating a temporary file: {e}")))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// How to run helm against one cluster.
pub struct Helm {
    /// The binary.
    pub program: PathBuf,
    kube_args: Vec<String>,
    /// Keeps a synthetic kubeconfig alive while this exists.
    _kubeconfig: Option<PrivateFile>,
}

impl Helm {
    /// For `target`. A cluster reached through an endpoint and a token gets a
    /// synthetic kubeconfig in a private file (the token is never an argument,
    /// so it does not show in `ps`).
    pub fn new(program: PathBuf, target: &Target) -> Result<Helm, ProviderError> {
        match target {
            Target::Kubeconfig { path, context } => {
                let mut kube_args = vec!["--kubeconfig".to_string(), path.display().to_string()];
                if let Some(c) = context {
                    kube_args.extend(["--kube-context".to_string(), c.clone()]);
                }
                Ok(Helm { program, kube_args, _kubeconfig: None })
            }
            Target::Direct { .. } => {
                let (kc, _) = target.kubeconfig()?;
                let text = serde_yaml::to_string(&kc)
                    .map_err(|e| ProviderError::Permanent(format!("kubeconfig for helm: {e}")))?;
                let file = PrivateFile::new("kubeconfig", text.as_bytes())?;
                let kube_args = vec!["--kubeconfig".to_string(), file.path().display().to_string()];
                Ok(Helm { program, kube_args, _kubeconfig: Some(file) })
            }
        }
    }

    /// Runs `helm <args> <connection args> -- <positionals>`; stdout on
    /// success. `args` are the subcommand and its flags; `positionals` (release
    /// names, charts: values from the spec) come after `--`, so that a value
    /// such as `--kubeconfig=/etc/passwd` is always a name and never a flag.
    /// Failures carry helm's stderr with every string of `secrets` masked.
    pub async fn run(
        &self,
        args: &[String],
        positionals: &[String],
        secrets: &[String],
        timeout: Duration,
    ) -> Result<String, ProviderError> {
        let _t = timings::span("helm", || {
            format!("helm {}", args.iter().take_while(|a| !a.starts_with('-')).cloned().collect::<Vec<_>>().join(" "))
        });
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args).args(&self.kube_args).arg("--").args(positionals).kill_on_drop(true);
        cmd.stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| ProviderError::Timeout(timeout))?
            .map_err(|e| ProviderError::Config(format!("running {}: {e}", self.program.display())))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let verb = args.first().map(String::as_str).unwrap_or("helm");
        let err = mask(String::from_utf8_lossy(&out.stderr).trim(), secrets);
        let transient = ["connection refused", "i/o timeout", "TLS handshake timeout", "etcdserver"]
            .iter()
            .any(|t| err.contains(t));
        let msg = format!("helm {verb}: {err}");
        Err(if transient { ProviderError::Transient(msg) } else { ProviderError::Permanent(msg) })
    }
}

/// `text` with every occurrence of each secret replaced by the mask.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), MASK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn private_files_are_0600_and_removed() {
        let f = PrivateFile::new("t", b"secret: x").unwrap();
        let p = f.path().to_path_buf();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        drop(f);
        assert!(!p.exists());
    }

    #[test]
    fn secrets_are_masked_in_errors() {
        assert_eq!(mask("bad value hunter22 in x", &["hunter22".into()]), format!("bad value {MASK} in x"));
    }
}
