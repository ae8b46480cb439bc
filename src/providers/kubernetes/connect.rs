//! How skyform reaches a cluster: a kubeconfig (and context), or a GKE cluster
//! object (`cluster = "${gcp_container_cluster.main}"`: its endpoint, its CA and
//! the GCP access token as bearer token, with no kubeconfig and no gcloud
//! plugin). Shared by the Kubernetes and Helm providers.

use std::path::PathBuf;

use base64::Engine as _;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

use crate::foundation::net::Net;
use crate::foundation::schema::{AttrType, Attribute};
use crate::foundation::trust;
use crate::providers::ProviderError;
use crate::value::Value;

/// The configuration attributes shared by `[provider.kubernetes]` and `[provider.helm]`.
pub fn config_attributes() -> Vec<Attribute> {
    vec![
        Attribute::optional(
            "kubeconfig",
            AttrType::String,
            "Path of a kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`). Not used with `cluster`.",
        ),
        Attribute::optional(
            "context",
            AttrType::String,
            "The kubeconfig context to use (default: its current context).",
        ),
        Attribute::optional(
            "cluster",
            AttrType::Any,
            "A GKE cluster object (`\"${gcp_container_cluster.main}\"` or the data source): skyform connects to its `endpoint`, trusts its `ca_certificate` and sends the GCP access token as bearer token.",
        ),
        Attribute::optional(
            "token",
            AttrType::String,
            "Bearer token to use with `cluster` instead of the GCP access token.",
        )
        .sensitive(),
    ]
}

/// Where the cluster is.
#[derive(Clone)]
pub enum Target {
    /// A kubeconfig file and an optional context.
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The context (else the file's current one).
        context: Option<String>,
    },
    /// An API server URL, its CA (PEM) and a bearer token.
    Direct {
        /// `https://host[:port]`.
        server: String,
        /// PEM.
        ca_pem: String,
        /// Never printed.
        token: String,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Kubeconfig { path, context } => {
                write!(f, "Kubeconfig({}, {context:?})", path.display())
            }
            Target::Direct { server, .. } => write!(f, "Direct({server}, token: <hidden>)"),
        }
    }
}

impl Target {
    /// From a provider configuration.
    pub async fn from_config(config: &Value, net: &Net) -> Result<Target, ProviderError> {
        let config = config.unmarked();
        if let Some(cluster) = config.get("cluster").filter(|c| !matches!(c, Value::Null)) {
            let endpoint = cluster
                .get("endpoint")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ProviderError::Config("`cluster` has no `endpoint`".into()))?;
            let server = if endpoint.contains("://") { endpoint.to_string() } else { format!("https://{endpoint}") };
            let ca = cluster
                .get("ca_certificate")
                .or_else(|| cluster.get("cluster_ca_certificate"))
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::Config("`cluster` has no `ca_certificate`".into()))?;
            let ca_pem = if ca.contains("-----BEGIN") {
                ca.to_string()
            } else {
                let bytes = base64::engine::general_purpose::STANDARD.decode(ca.trim()).map_err(|_| {
                    ProviderError::Config("`cluster.ca_certificate` is neither PEM nor base64 PEM".into())
                })?;
                String::from_utf8(bytes)
                    .map_err(|_| ProviderError::Config("`cluster.ca_certificate` is not PEM".into()))?
            };
            // Refused before any token is fetched or sent (kube-rs would send it in clear).
            trust::credential_may_go_to(&server)?;
            let token = match config.get("token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => t.to_string(),
                _ => gcp_access_token(net).await?,
            };
            return Ok(Target::Direct { server, ca_pem, token });
        }
        let path = match config.get("kubeconfig").and_then(Value::as_str) {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("KUBECONFIG") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".kube/config"))
                    .ok_or_else(|| ProviderError::Config("no `kubeconfig`, `cluster`, KUBECONFIG or HOME".into()))?,
            },
        };
        if config.get("kubeconfig").and_then(Value::as_str).is_some() {
            refuse_spec_programs(&path)?;
        }
        let context = config.get("context").and_then(Value::as_str).map(str::to_string);
        Ok(Target::Kubeconfig { path, context })
    }

    /// A kubeconfig describing this target (for `Direct`, a synthetic one with
    /// the token inline: write it only to a 0600 file).
    pub fn kubeconfig(&self) -> Result<(Kubeconfig, Option<String>), ProviderError> {
        match self {
            Target::Kubeconfig { path, context } => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| ProviderError::Config(format!("reading kubeconfig {}: {e}", path.display())))?;
                Ok((kc, context.clone()))
            }
            Target::Direct { server, ca_pem, token } => {
                let kc = Kubeconfig {
                    clusters: vec![NamedCluster {
                        name: "skyform".into(),
                        cluster: Some(Cluster {
                            server: Some(server.clone()),
                            certificate_authority_data: Some(base64::engine::general_purpose::STANDARD.encode(ca_pem)),
                            ..Cluster::default()
                        }),
                    }],
                    auth_infos: vec![NamedAuthInfo {
                        name: "skyform".into(),
                        auth_info: Some(AuthInfo { token: Some(token.clone().into()), ..AuthInfo::default() }),
                    }],
                    contexts: vec![NamedContext {
                        name: "skyform".into(),
                        context: Some(Context {
                            cluster: "skyform".into(),
                            user: Some("skyform".into()),
                            ..Context::default()
                        }),
                    }],
                    current_context: Some("skyform".into()),
                    ..Kubeconfig::default()
                };
                Ok((kc, None))
            }
        }
    }

    /// A kube-rs client.
    pub async fn client(&self) -> Result<kube::Client, ProviderError> {
        let (kc, context) = self.kubeconfig()?;
        let opts = KubeConfigOptions { context, ..KubeConfigOptions::default() };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| ProviderError::Config(format!("kubeconfig: {e}")))?;
        kube::Client::try_from(config).map_err(|e| ProviderError::Config(format!("kube client: {e}")))
    }
}

/// A kubeconfig named by the spec (not by `KUBECONFIG` or the default path) may not run programs:
/// an `exec` credential plugin or an `auth-provider` would let whoever edits the spec run any
/// command at `plan` ([`trust`]). The operator's own kubeconfig, from the environment, may.
fn refuse_spec_programs(path: &std::path::Path) -> Result<(), ProviderError> {
    let Ok(kc) = Kubeconfig::read_from(path) else {
        // Unreadable: the client reports it when it reads it.
        return Ok(());
    };
    let runs = kc
        .auth_infos
        .iter()
        .filter_map(|a| a.auth_info.as_ref().map(|i| (a, i)))
        .find_map(|(a, i)| (i.exec.is_some() || i.auth_provider.is_some()).then(|| a.name.clone()));
    match runs {
        Some(user) => Err(ProviderError::Config(format!(
            "the kubeconfig `{}` named in the spec runs a program for user `{user}` (an `exec` plugin or an \
             `auth-provider`): a spec may not choose a program to run. Pass that kubeconfig with the KUBECONFIG \
             environment variable instead",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// The GCP access token used as the cluster's bearer token: the one the GCP
/// provider uses (`SKYFORM_GCP_ACCESS_TOKEN`, else Application Default
/// Credentials), as on GKE where the Google token authenticates to the cluster.
async fn gcp_access_token(net: &Net) -> Result<String, ProviderError> {
    let t = net.default_tokens().token().await?.unwrap_or_default();
    if t.is_empty() {
        return Err(ProviderError::Config("no GCP access token for the cluster: set the provider's `token`".into()));
    }
    Ok(t)
}
