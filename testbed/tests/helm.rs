//! The real helm installs a chart of ours into the testbed, and the controller-manager reconciles it.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::ListParams;
use skyform_testbed::{Testbed, run_ok};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/charts/hello");

#[tokio::test]
async fn helm_install_succeeds_and_helm_list_shows_the_release() {
    let tb = Testbed::get();
    let ns = tb.namespace("helm").await;

    run_ok(tb.helm().args([
        "install",
        "greeter",
        CHART,
        "--namespace",
        &ns,
        "--set",
        "message=installed by the testbed test",
    ]));

    let out = run_ok(tb.helm().args(["list", "--namespace", &ns, "--output", "json"]));
    let releases: serde_json::Value = serde_json::from_str(&out).expect("helm list json");
    let releases = releases.as_array().expect("helm list gives an array");
    assert_eq!(releases.len(), 1, "{out}");
    assert_eq!(releases[0]["name"], "greeter");
    assert_eq!(releases[0]["status"], "deployed");
    assert_eq!(releases[0]["chart"], "hello-0.1.0");

    let client = tb.kube_client().await;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("greeter-greeting")
        .await
        .expect("the chart's ConfigMap exists");
    assert_eq!(cm.data.unwrap_or_default().get("message").map(String::as_str), Some("installed by the testbed test"));

    // The deployment controller turns the chart's Deployment into a ReplicaSet (pods never run: no kubelet).
    let rs = Api::<ReplicaSet>::namespaced(client, &ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = rs
            .list(&ListParams::default().labels("app.kubernetes.io/instance=greeter"))
            .await
            .expect("list ReplicaSets");
        if let Some(r) = list.items.first() {
            assert_eq!(r.spec.as_ref().and_then(|s| s.replicas), Some(1));
            break;
        }
        assert!(Instant::now() < deadline, "no ReplicaSet for the Deployment after 60s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    run_ok(tb.helm().args(["uninstall", "greeter", "--namespace", &ns, "--wait"]));
    let out = run_ok(tb.helm().args(["list", "--namespace", &ns, "--output", "json"]));
    assert_eq!(out.trim(), "[]");
}
