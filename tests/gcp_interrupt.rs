//! Interrupted operations of the GCP provider on the emulator: Ctrl-C during a
//! long create leaves it running and recorded as pending; the next plan reads
//! it, plans its resumption, and makes whatever is built from it (a provider
//! configured from a cluster still being created) known only after apply;
//! the next apply resumes it without a second create.

mod gcp_common;

use std::time::{Duration, Instant};

use gcp_common::{Env, assert_empty, change};
use skyform::engine::{Cancel, PlanOptions};
use skyform::ops;
use skyform::plan::{Action, Reason};
use skyform::state::ResourceStatus;

const SPEC: &str = r#"
[resource.gcp_container_cluster.main]
name = "sky"
location = "us-central1"
initial_node_count = 1

[resource.gcp_sql_instance.db]
name = "sky-db"
region = "us-central1"
database_version = "POSTGRES_15"
tier = "db-custom-1-3840"
deletion_protection = false

# A provider built from an object of this run: a database of the instance.
[resource.gcp_sql_database.app]
instance = "${gcp_sql_instance.db.name}"
name = "app"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_leaves_long_operations_pending_and_the_next_apply_resumes_them() {
    let env = Env::start(4_000).await;
    env.spec(SPEC);
    let loaded = env.load();
    let cancel = Cancel::new();
    let ctx = loaded.context(std::sync::Arc::new(skyform::engine::events::Recorder::default()), 10, cancel.clone());
    let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &PlanOptions::default()).await.unwrap();
    // Ctrl-C one second in, while both 4-second creates run.
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        c2.cancel();
    });
    let started = Instant::now();
    let report = s.apply(&ctx, &planned.plan).await.unwrap();
    drop(s);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3_500), "apply waited for the operations: {took:?}");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let mut interrupted: Vec<String> = report.cancelled.iter().map(|a| a.to_string()).collect();
    interrupted.sort();
    assert_eq!(interrupted, ["gcp_container_cluster.main", "gcp_sql_database.app", "gcp_sql_instance.db"]);

    // State records both operations as pending.
    let state = ops::apply::open(&env.load(), None, Duration::ZERO).unwrap().state.clone();
    for a in ["gcp_container_cluster.main", "gcp_sql_instance.db"] {
        let r = &state.resources[&a.parse().unwrap()];
        assert_eq!(r.status, ResourceStatus::Pending, "{a}");
        assert!(r.private.get("operation").is_some(), "{a}: {:?}", r.private);
    }

    // The next plan resumes them; what depends on them is known after apply.
    let plan = env.plan().await;
    for a in ["gcp_container_cluster.main", "gcp_sql_instance.db"] {
        let c = change(&plan, a);
        assert_eq!((c.action, c.reason.clone()), (Action::Create, Some(Reason::ResumePendingOperation)), "{a}");
    }
    let endpoint = &change(&plan, "gcp_container_cluster.main").after.as_ref().unwrap()["endpoint"];
    assert!(endpoint.has_unknown(), "a cluster still being created has no endpoint yet: {endpoint:?}");
    assert_eq!(change(&plan, "gcp_sql_database.app").action, Action::Create);

    env.emu.reset_stats();
    env.apply().await;
    let creates: Vec<_> = env
        .mutating_calls()
        .into_iter()
        .filter(|(m, _)| m == "sql.instances.insert" || m == "container.clusters.create")
        .collect();
    assert!(creates.is_empty(), "resumed operations were created again: {creates:?}");
    assert_empty(&env.plan().await, "after the resumed apply");
    let report = env.destroy().await;
    assert!(report.ok(), "{:?}", report.failures);
}
