//! Deleting a namespace completes: the controller-manager's namespace controller empties and removes it.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use skyform_testbed::Testbed;

#[tokio::test]
async fn deleting_a_namespace_with_objects_completes() {
    let tb = Testbed::get();
    let client = tb.kube_client().await;
    let ns = tb.namespace("ns-delete").await;
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some("content".into()), ..ObjectMeta::default() },
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");

    let namespaces = Api::<Namespace>::all(client);
    namespaces.delete(&ns, &DeleteParams::default()).await.expect("delete namespace");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match namespaces.get_opt(&ns).await.expect("get namespace") {
            None => break,
            Some(n) => {
                let phase = n.status.and_then(|s| s.phase);
                assert!(Instant::now() < deadline, "namespace {ns} still there after 90s (phase {phase:?})");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
