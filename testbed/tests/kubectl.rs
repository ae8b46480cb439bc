//! The real kubectl and kube-rs see the same kube-apiserver: objects written by one are read by the other.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use skyform_testbed::{Testbed, run_ok};

#[tokio::test]
async fn object_created_with_kube_rs_is_seen_by_kubectl() {
    let tb = Testbed::get();
    let ns = tb.namespace("kube-to-kubectl").await;
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some("from-kube-rs".into()), ..ObjectMeta::default() },
        data: Some([("greeting".to_owned(), "hello kubectl".to_owned())].into()),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(tb.kube_client().await, &ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap with kube-rs");

    let out =
        run_ok(tb.kubectl().args(["get", "configmap", "from-kube-rs", "-n", &ns, "-o", "jsonpath={.data.greeting}"]));
    assert_eq!(out, "hello kubectl");
}

#[tokio::test]
async fn object_created_with_kubectl_is_seen_by_kube_rs() {
    let tb = Testbed::get();
    let ns = tb.namespace("kubectl-to-kube").await;
    run_ok(tb.kubectl().args([
        "create",
        "configmap",
        "from-kubectl",
        "-n",
        &ns,
        "--from-literal=greeting=hello kube-rs",
    ]));

    let cm = Api::<ConfigMap>::namespaced(tb.kube_client().await, &ns)
        .get("from-kubectl")
        .await
        .expect("get ConfigMap with kube-rs");
    assert_eq!(cm.data.unwrap_or_default().get("greeting").map(String::as_str), Some("hello kube-rs"));
}

#[tokio::test]
async fn server_reports_the_pinned_kubernetes_version() {
    let tb = Testbed::get();
    let pinned = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testbed-versions.env"))
        .expect("read scripts/testbed-versions.env");
    let pinned = pinned.lines().find_map(|l| l.strip_prefix("KUBERNETES_VERSION=")).expect("KUBERNETES_VERSION pinned");

    let info = tb.kube_client().await.apiserver_version().await.expect("GET /version");
    assert_eq!(info.git_version, pinned);
    assert_eq!(format!("v{}.{}", info.major, info.minor), pinned.rsplit_once('.').unwrap().0);

    let out = run_ok(tb.kubectl().args(["version", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("kubectl version json");
    assert_eq!(v["serverVersion"]["gitVersion"], pinned);
    assert_eq!(v["clientVersion"]["gitVersion"], pinned, "kubectl is the one built with the server");
}
