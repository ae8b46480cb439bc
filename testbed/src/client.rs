//! kube-rs clients for the testbed's kube-apiserver, directly or through a GKE cluster's endpoint.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use kube::{Api, Client, Config};

use crate::{Testbed, unique_name};

/// A kube-rs client for `server` (an `https://` URL) trusting `ca_pem` and sending `token` as the
/// bearer token: the way a GKE cluster is reached from its `endpoint`, `clusterCaCertificate` and a
/// Google access token, with no kubeconfig.
pub async fn kube_client_for(server: &str, ca_pem: &str, token: &str) -> Result<Client, kube::Error> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "c".into(),
            cluster: Some(Cluster {
                server: Some(server.to_owned()),
                certificate_authority_data: Some(ca),
                ..Cluster::default()
            }),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "u".into(),
            auth_info: Some(AuthInfo { token: Some(token.to_owned().into()), ..AuthInfo::default() }),
        }],
        contexts: vec![NamedContext {
            name: "x".into(),
            context: Some(Context { cluster: "c".into(), user: Some("u".into()), ..Context::default() }),
        }],
        current_context: Some("x".into()),
        ..Kubeconfig::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kube::Error::InferKubeconfig)?;
    Client::try_from(config)
}

impl Testbed {
    /// A kube-rs client for the kube-apiserver as the admin user.
    ///
    /// # Panics
    /// When the client cannot be built (the testbed's files are broken).
    pub async fn kube_client(&self) -> Client {
        kube_client_for(&self.kube_api, &self.kube_ca_pem, &self.token)
            .await
            .unwrap_or_else(|e| panic!("kube client for {}: {e}", self.kube_api))
    }

    /// Creates a fresh namespace `<prefix>-<unique>` labelled `skyform.dev/testbed=true`, and returns
    /// its name. Namespaces are not deleted afterwards: `scripts/testbed down` wipes etcd.
    ///
    /// # Panics
    /// When the namespace cannot be created.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("skyform.dev/testbed".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.kube_client().await)
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        name
    }

    /// A fresh GCP project id `<prefix>-<unique>` for one test (created by the test, in the emulator).
    pub fn unique_project(&self, prefix: &str) -> String {
        unique_name(prefix)
    }
}
