//! A GKE cluster created in the GCP emulator with the real gcloud points at the testbed's kube-apiserver:
//! kube-rs reaches it from the cluster's `endpoint` and `clusterCaCertificate` alone, authenticating with
//! the GCP access token, as skyform does on real GKE.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use skyform_testbed::{Testbed, kube_client_for, run_ok};

const ZONE: &str = "us-central1-a";

#[tokio::test]
async fn gke_cluster_endpoint_reaches_the_testbed_with_the_gcp_token() {
    let tb = Testbed::get();
    let project = tb.unique_project("gke");
    let cluster = "testbed-cluster";
    // gcloud writes credentials for a new cluster into $KUBECONFIG: give it a scratch file, not ours.
    let scratch = tb.dir.join(format!("gcloud-kubeconfig-{project}"));
    let gcloud = || {
        let mut cmd = tb.gcloud();
        cmd.env("KUBECONFIG", &scratch);
        cmd
    };

    // Projects need not be created in the emulator; the API is enabled as on a real project.
    run_ok(gcloud().args(["services", "enable", "container.googleapis.com", "--project", &project]));
    run_ok(gcloud().args([
        "container",
        "clusters",
        "create",
        cluster,
        "--project",
        &project,
        "--zone",
        ZONE,
        "--num-nodes",
        "1",
    ]));
    let out = run_ok(gcloud().args([
        "container",
        "clusters",
        "describe",
        cluster,
        "--project",
        &project,
        "--zone",
        ZONE,
        "--format",
        "json",
    ]));
    let described: serde_json::Value = serde_json::from_str(&out).expect("describe json");
    assert_eq!(described["status"], "RUNNING", "{out}");
    let endpoint = described["endpoint"].as_str().expect("endpoint");
    let ca_b64 = described["masterAuth"]["clusterCaCertificate"].as_str().expect("CA");
    let ca_pem = base64::engine::general_purpose::STANDARD.decode(ca_b64).expect("CA is base64");
    let ca_pem = String::from_utf8(ca_pem).expect("CA is PEM text");
    assert_eq!(ca_pem.trim(), tb.kube_ca_pem.trim(), "the cluster reports the testbed's CA");

    // The namespace is created directly; the GKE client must see it, so both reach one API server.
    let ns = tb.namespace("via-gke").await;
    let gke = kube_client_for(&format!("https://{endpoint}"), &ca_pem, &tb.token)
        .await
        .expect("kube client from the GKE endpoint");
    let names: Vec<String> = Api::<Namespace>::all(gke)
        .list(&ListParams::default())
        .await
        .expect("list namespaces through the GKE endpoint with the GCP access token")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");
    assert!(names.contains(&ns), "{ns} not in {names:?}");

    run_ok(gcloud().args([
        "container",
        "clusters",
        "delete",
        cluster,
        "--project",
        &project,
        "--zone",
        ZONE,
        "--quiet",
    ]));
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_the_kube_apiserver() {
    let tb = Testbed::get();
    let client = kube_client_for(&tb.kube_api, &tb.kube_ca_pem, "ya29.not-the-testbed-token").await.expect("client");
    let err =
        Api::<Namespace>::all(client).list(&ListParams::default()).await.expect_err("an unknown token must be refused");
    assert!(matches!(&err, kube::Error::Api(e) if e.code == 401), "{err:?}");
}
