//! What a spec may not decide on its own: where credentials go, which files it reads, which programs
//! run. The threat model (docs/user-guide.md, "A spec is untrusted input to `plan`"): a job that plans
//! every pull request runs a spec anyone may have edited, with the operator's credentials. So:
//!
//! - a credential (a bearer token) is sent over plain `http://` only to a loopback address, or to a
//!   host the operator names in [`INSECURE_HTTP_HOSTS_ENV`] (a test network of their own);
//! - an endpoint written in a spec that would receive the operator's credentials (`[provider.gcp]
//!   endpoint`, a `cluster` table that is not a GKE cluster read from Google) is refused unless the
//!   operator sets [`ALLOW_SPEC_ENDPOINTS_ENV`];
//! - `file()` and module `source` stay inside the root spec's directory unless the operator sets
//!   [`ALLOW_SPEC_FILES_ENV`];
//! - no program path comes from a spec (the helm binary is `$SKYFORM_HELM` or `helm` on `PATH`; a
//!   kubeconfig named by a spec may not run an `exec` credential plugin).
//!
//! Each switch is an environment variable: the operator's, never the spec's (a spec cannot set one).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Hosts (`host` or `host:port`, comma-separated) that may receive a credential over plain HTTP.
pub const INSECURE_HTTP_HOSTS_ENV: &str = "SKYFORM_INSECURE_HTTP_HOSTS";
/// `1`: endpoints written in the spec may receive the operator's credentials.
pub const ALLOW_SPEC_ENDPOINTS_ENV: &str = "SKYFORM_ALLOW_SPEC_ENDPOINTS";
/// `1`: `file()` and module `source` may reach outside the root spec's directory.
pub const ALLOW_SPEC_FILES_ENV: &str = "SKYFORM_ALLOW_SPEC_FILES";

/// Why a credential was not sent. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialRefused {
    /// Plain HTTP to a host that is neither loopback nor named by the operator.
    #[error(
        "refusing to send a credential over plain HTTP to `{host}`: without TLS it would cross the network in \
         clear. Use https://, or, for a test network you control, name the host in {INSECURE_HTTP_HOSTS_ENV}={host}"
    )]
    PlainHttp {
        /// `host` or `host:port`.
        host: String,
    },
    /// A URL that cannot be parsed, or of another scheme.
    #[error("refusing to send a credential to an endpoint that is not an http(s) URL")]
    NotHttp,
}

/// Whether a bearer token may be sent to `url`.
pub fn credential_may_go_to(url: &str) -> Result<(), CredentialRefused> {
    may_go_to(url, &insecure_hosts())
}

fn may_go_to(url: &str, insecure_hosts: &[String]) -> Result<(), CredentialRefused> {
    let parsed = reqwest::Url::parse(url).map_err(|_| CredentialRefused::NotHttp)?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            // IPv6 hosts come bracketed (`[::1]`), as in the URL.
            let host = parsed.host_str().ok_or(CredentialRefused::NotHttp)?.to_ascii_lowercase();
            let with_port = match parsed.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            if is_loopback(&host) || insecure_hosts.iter().any(|h| *h == host || *h == with_port) {
                Ok(())
            } else {
                Err(CredentialRefused::PlainHttp { host: with_port })
            }
        }
        _ => Err(CredentialRefused::NotHttp),
    }
}

/// `localhost`, 127.0.0.0/8 and ::1 (the host as a URL shows it).
fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The operator's list of hosts that may receive a credential over plain HTTP.
fn insecure_hosts() -> Vec<String> {
    std::env::var(INSECURE_HTTP_HOSTS_ENV)
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

fn env_is_set(name: &str) -> bool {
    matches!(std::env::var(name).as_deref().map(str::trim), Ok("1" | "true" | "yes"))
}

/// Whether the operator lets spec-written endpoints receive credentials.
pub fn spec_endpoints_allowed() -> bool {
    env_is_set(ALLOW_SPEC_ENDPOINTS_ENV)
}

/// Whether the operator lets the spec read files outside its root directory.
pub fn spec_files_allowed() -> bool {
    env_is_set(ALLOW_SPEC_FILES_ENV)
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutsideRoot {
    /// The path (symbolic links resolved) is not under the root.
    #[error("`{path}` is outside the spec's directory `{root}`")]
    Outside {
        /// The path as resolved.
        path: PathBuf,
        /// The root spec's directory, resolved.
        root: PathBuf,
    },
}

impl OutsideRoot {
    /// The hint every caller gives.
    pub fn hint() -> String {
        format!(
            "a spec is untrusted input: it reads only files under its own directory (symbolic links followed). \
             If you trust this spec, set {ALLOW_SPEC_FILES_ENV}=1"
        )
    }
}

/// Checks that `path` (which exists) resolves inside `root`, unless the operator allowed files
/// anywhere. Returns the resolved path.
pub fn confine(root: &Path, path: &Path) -> Result<PathBuf, OutsideRoot> {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if spec_files_allowed() {
        return Ok(resolved);
    }
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if resolved.starts_with(&root) { Ok(resolved) } else { Err(OutsideRoot::Outside { path: resolved, root }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_over_tls_or_to_loopback_only() {
        let credential_may_go_to = |url: &str| may_go_to(url, &[]);
        assert!(credential_may_go_to("https://sqladmin.googleapis.com/").is_ok());
        assert!(credential_may_go_to("https://10.0.0.1:443/").is_ok());
        for ok in ["http://127.0.0.1:8080/", "http://127.9.9.9/", "http://localhost:1/", "http://[::1]:80/"] {
            assert!(credential_may_go_to(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.77.0.2:28085/", "http://example.com/", "http://[fe80::1]/", "http://1.2.3.4"] {
            let e = credential_may_go_to(bad).unwrap_err();
            assert!(matches!(e, CredentialRefused::PlainHttp { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains(INSECURE_HTTP_HOSTS_ENV), "{e}");
        }
        assert_eq!(credential_may_go_to("ftp://x/"), Err(CredentialRefused::NotHttp));
        assert_eq!(credential_may_go_to("not a url"), Err(CredentialRefused::NotHttp));
        // A host that only looks like loopback is not.
        assert!(credential_may_go_to("http://127.0.0.1.evil.example/").is_err());
        // Named by the operator: that host (and port, when given) only.
        let named = ["10.77.0.2:28085".to_string(), "emulator.test".to_string()];
        assert!(may_go_to("http://10.77.0.2:28085/", &named).is_ok());
        assert!(may_go_to("http://10.77.0.2:28086/", &named).is_err());
        assert!(may_go_to("http://emulator.test:1/", &named).is_ok());
        assert!(may_go_to("http://10.77.0.3:28085/", &named).is_err());
    }

    #[test]
    fn a_path_outside_the_root_is_refused_symlinks_included() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("in.txt"), "x").unwrap();
        std::fs::write(outside.path().join("out.txt"), "x").unwrap();
        assert!(confine(root.path(), &root.path().join("in.txt")).is_ok());
        assert!(confine(root.path(), &root.path().join("../").join(outside.path().join("out.txt"))).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path().join("out.txt"), root.path().join("link.txt")).unwrap();
            let e = confine(root.path(), &root.path().join("link.txt")).unwrap_err();
            assert!(e.to_string().contains("outside the spec's directory"), "{e}");
        }
    }
}
