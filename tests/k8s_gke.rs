//! A Kubernetes provider built from a GKE cluster created in the same apply
//! (in the testbed's GCP emulator, whose clusters report the testbed's
//! kube-apiserver as endpoint and accept the GCP access token), through the
//! real `skyform` binary, with no kubeconfig anywhere.

use std::process::{Command, Output, Stdio};

use skyform_testbed::Testbed;

fn skyform(tb: &Testbed, dir: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skyform"));
    c.args(args).current_dir(dir).envs(&tb.env).env_remove("KUBECONFIG").env("HOME", home).stdin(Stdio::null());
    c.output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_from_a_gke_cluster_created_in_the_same_apply() {
    let tb = Testbed::get();
    let project = tb.unique_project("skyform-gke");
    let ns = skyform_testbed::unique_name("skyform-gke");
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let spec = format!(
        r#"
[provider.gcp]
project = "{project}"

[resource.gcp_project_service.container]
service = "container.googleapis.com"

[resource.gcp_container_cluster.main]
name = "sky"
location = "us-central1"
workload_identity = true
initial_node_count = 1
depends_on = ["gcp_project_service.container"]

[provider.kubernetes]
cluster = "${{gcp_container_cluster.main}}"

[resource.k8s_namespace.sky]
name = "{ns}"

[resource.k8s_service_account.api]
name = "skypilot-api-sa"
namespace = "${{k8s_namespace.sky.name}}"
annotations = {{ "iam.gke.io/gcp-service-account" = "sky@{project}.iam.gserviceaccount.com" }}

[provider.helm]
cluster = "${{gcp_container_cluster.main}}"

[resource.helm_release.hello]
name = "hello"
namespace = "${{k8s_namespace.sky.name}}"
chart = {chart}
"#,
        chart = toml::Value::String(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charts/hello").display().to_string()
        ),
    );
    std::fs::write(dir.path().join("main.toml"), spec).unwrap();
    assert!(!home.path().join(".kube/config").exists());

    let plan = ok(&skyform(tb, dir.path(), home.path(), &["plan"]));
    assert!(plan.contains("k8s_namespace.sky will be created"), "{plan}");
    assert!(plan.contains("gcp_container_cluster.main"), "{plan}");
    ok(&skyform(tb, dir.path(), home.path(), &["apply", "--auto-approve"]));
    let got = skyform_testbed::run_ok(tb.kubectl().args([
        "get",
        "sa",
        "skypilot-api-sa",
        "-n",
        &ns,
        "-o",
        r"jsonpath={.metadata.annotations.iam\.gke\.io/gcp-service-account}",
    ]));
    assert_eq!(got, format!("sky@{project}.iam.gserviceaccount.com"));
    // helm reached the cluster the same way (a private kubeconfig made from the
    // endpoint, CA and token, removed afterwards).
    skyform_testbed::run_ok(tb.helm().args(["status", "hello", "-n", &ns]));
    // Configured at plan time now (the cluster exists), read, and unchanged.
    let again = skyform(tb, dir.path(), home.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));
    // Engine limitation (docs/providers-k8s.md): deleting objects of a provider
    // configured from a resource runs before that resource's node sets its
    // values, so the provider cannot be configured for the deletes. The
    // Kubernetes objects are therefore forgotten and deleted with kubectl, and
    // skyform destroys the GCP resources.
    for a in ["helm_release.hello", "k8s_service_account.api", "k8s_namespace.sky"] {
        ok(&skyform(tb, dir.path(), home.path(), &["state", "rm", a]));
    }
    skyform_testbed::run_ok(tb.kubectl().args(["delete", "ns", &ns, "--wait=true"]));
    assert!(!tb.kubectl().args(["get", "ns", &ns]).output().unwrap().status.success());
    ok(&skyform(tb, dir.path(), home.path(), &["destroy", "--auto-approve"]));
    assert!(!tb.kubectl().args(["get", "ns", &ns]).output().unwrap().status.success());
    // (helm keeps a discovery cache in ~/.kube/cache; no kubeconfig is written.)
    assert!(!home.path().join(".kube/config").exists(), "no kubeconfig was written");
}
