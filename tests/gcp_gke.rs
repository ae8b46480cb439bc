//! GCP provider on the emulator: GKE clusters and the data sources.

mod gcp_common;

use gcp_common::{Env, P, actions, assert_empty, change};
use skyform::engine::drift::DriftClass;
use skyform::plan::Action;
use skyform::value::Value;

const SPEC: &str = r#"
[resource.gcp_container_cluster.main]
name = "sky"
location = "us-central1"
workload_identity = true
initial_node_count = 1
machine_type = "e2-standard-4"
release_channel = "REGULAR"
workload_metadata_mode = "GKE_METADATA"

[output.endpoint]
value = "${gcp_container_cluster.main.endpoint}"

[output.ca]
value = "${gcp_container_cluster.main.ca_certificate}"

[output.pool]
value = "${gcp_container_cluster.main.workload_pool}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_converges_detects_gcloud_drift_repairs_and_is_destroyed() {
    let env = Env::start(50).await;
    env.spec(SPEC);
    let (_, report) = env.apply_with(&[], Default::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.outputs["pool"], Value::str(format!("{P}.svc.id.goog")));
    assert!(report.outputs["ca"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!report.outputs["endpoint"].as_str().unwrap().is_empty());
    assert_empty(&env.plan().await, "after create");

    env.gcloud(&["container", "clusters", "update", "sky", "--location=us-central1", "--release-channel=rapid"]).await;
    env.gcloud(&[
        "container",
        "node-pools",
        "update",
        "default-pool",
        "--cluster=sky",
        "--location=us-central1",
        "--workload-metadata=GCE_METADATA",
    ])
    .await;
    let plan = env.plan().await;
    assert_eq!(actions(&plan), vec![("gcp_container_cluster.main".to_string(), Action::Update)]);
    let mut changed = change(&plan, "gcp_container_cluster.main").changed.clone();
    changed.sort();
    assert_eq!(changed, vec!["release_channel", "workload_metadata_mode"]);
    let drift = env.drift().await;
    assert_eq!(drift.findings.len(), 1);
    assert_eq!(drift.findings[0].class, DriftClass::ChangedOutside);
    env.apply().await;
    assert_empty(&env.plan().await, "after repair");

    // Turning Workload Identity on in place is refused by default.
    env.spec(&SPEC.replace("workload_identity = true", "workload_identity = false"));
    env.apply().await;
    let err = env.try_plan(&[], Default::default()).await.err();
    assert!(err.is_none(), "disabling is allowed");
    env.spec(SPEC);
    let err = env.try_plan(&[], Default::default()).await.unwrap_err();
    assert!(err.contains("enabling Workload Identity on an existing cluster is refused"), "{err}");
    env.spec(&SPEC.replace("workload_identity = true", "workload_identity = true\nworkload_identity_in_place = true"));
    env.apply().await;
    assert_empty(&env.plan().await, "after enabling in place");

    let report = env.destroy().await;
    assert!(report.ok(), "{:?}", report.failures);
    let list = env.gcloud(&["container", "clusters", "list", "--format=value(name)"]).await;
    assert!(!list.contains("sky"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_made_by_gcloud_is_adopted_and_data_sources_read() {
    let env = Env::start(0).await;
    env.gcloud(&[
        "container",
        "clusters",
        "create",
        "sky",
        "--location=us-central1",
        &format!("--workload-pool={P}.svc.id.goog"),
        "--num-nodes=1",
        "--machine-type=e2-standard-4",
    ])
    .await;
    env.gcloud(&[
        "sql",
        "instances",
        "create",
        "other-db",
        "--database-version=POSTGRES_15",
        "--tier=db-f1-micro",
        "--region=us-central1",
    ])
    .await;
    env.spec(
        r#"
[resource.gcp_container_cluster.main]
name = "sky"
location = "us-central1"
workload_identity = true
initial_node_count = 1
machine_type = "e2-standard-4"

[data.gcp_container_cluster.same]
name = "sky"
location = "us-central1"

[data.gcp_sql_instance.db]
name = "other-db"

[data.gcp_project.this]

[output.endpoint]
value = "${data.gcp_container_cluster.same.endpoint}"

[output.conn]
value = "${data.gcp_sql_instance.db.connection_name}"

[output.number]
value = "${data.gcp_project.this.number}"
"#,
    );
    let plan = env.plan().await;
    assert_eq!(change(&plan, "gcp_container_cluster.main").action, Action::Adopt);
    env.emu.reset_stats();
    let (_, report) = env.apply_with(&[], Default::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(env.emu.stats().requests.get("container.clusters.create"), None);
    // Data sources are read at plan time.
    let plan = env.plan().await;
    assert_empty(&plan, "after adoption");
    assert_eq!(plan.outputs["conn"], Value::str(format!("{P}:us-central1:other-db")));
    assert_eq!(plan.outputs["number"].as_str().map(|n| n.len()), Some(12));
    assert!(!plan.outputs["endpoint"].as_str().unwrap().is_empty());
}
