//! GCP provider under faults: 20% injected 429/503 and non-zero operation
//! durations converge with no duplicates, and a second apply makes zero
//! mutating calls; a long-running operation interrupted mid-wait is resumed by
//! the next run instead of being started twice.

mod gcp_common;

use std::sync::Mutex;
use std::time::Duration;

use gcp_common::{Env, P, assert_empty};
use gcp_emulator::{FaultRule, FaultSpec};
use skyform::address::Address;
use skyform::providers::{ApplyAction, ApplyRequest, Checkpoint, ProviderError, ProviderFactory, ReadRequest};
use skyform::value::Value;

/// Every resource type, the seed's shape.
pub const ALL_TYPES: &str = r#"
[resource.gcp_project_service.sqladmin]
service = "sqladmin.googleapis.com"

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"
display_name = "SkyPilot Cloud SQL access"

[resource.gcp_project_iam_member.client]
role = "roles/cloudsql.client"
member = "${gcp_service_account.sa.member}"

[resource.gcp_project_iam_member.instance_user]
role = "roles/cloudsql.instanceUser"
member = "${gcp_service_account.sa.member}"

[resource.gcp_container_cluster.main]
name = "sky"
location = "us-central1"
workload_identity = true
initial_node_count = 1

[resource.gcp_service_account_iam_member.wi]
service_account = "${gcp_service_account.sa.email}"
role = "roles/iam.workloadIdentityUser"
member = "serviceAccount:skyform-test.svc.id.goog[skypilot/skypilot-api-sa]"
depends_on = ["gcp_container_cluster.main"]

[resource.gcp_service_account_key.key]
service_account = "${gcp_service_account.sa.email}"

[resource.gcp_sql_instance.db]
name = "sky-db"
database_version = "POSTGRES_15"
tier = "db-f1-micro"
database_flags = { "cloudsql.iam_authentication" = "on" }
deletion_protection = false
root_password = "root-Secret-9"
depends_on = ["gcp_project_service.sqladmin"]

[resource.gcp_sql_database.db]
instance = "${gcp_sql_instance.db.name}"
name = "skypilot-db"

[resource.gcp_sql_user.builtin]
instance = "${gcp_sql_instance.db.name}"
name = "skypilot"
password = "user-Secret-9"

[resource.gcp_sql_user.iam]
instance = "${gcp_sql_instance.db.name}"
name = "${gcp_service_account.sa.email}"
type = "CLOUD_IAM_SERVICE_ACCOUNT"
depends_on = ["gcp_project_iam_member.instance_user"]
"#;

fn count(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => m.len(),
        serde_json::Value::Array(a) => a.len(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_types_converge_under_injected_faults_without_duplicates() {
    let env = Env::start(200).await;
    env.emu
        .set_faults(FaultSpec {
            seed: Some(7),
            latency_ms: 0,
            rules: vec![
                FaultRule {
                    method: "*".into(),
                    code: 429,
                    rate: 0.10,
                    latency_ms: 0,
                    retry_delay: Some("30ms".into()),
                },
                FaultRule { method: "*".into(), code: 503, rate: 0.11, latency_ms: 0, retry_delay: None },
            ],
        })
        .unwrap();
    // And eventual consistency: a new account is invisible for a while.
    env.emu.set_sa_visibility_delay(Duration::from_millis(700));
    env.spec(ALL_TYPES);
    let (plan, report) = env.apply_with(&[], Default::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(plan.summary().add, 11);
    let faults: u64 = env.emu.stats().faults_injected.values().sum();
    assert!(faults > 5, "faults were injected: {faults}");

    // No duplicates: one of each (checked without faults).
    env.emu.clear_faults();
    let keys = reqwest::get(format!(
        "{}v1/projects/-/serviceAccounts/skypilot-sql@{P}.iam.gserviceaccount.com/keys?keyTypes=USER_MANAGED",
        env.emu.base_url()
    ))
    .await
    .unwrap()
    .json::<serde_json::Value>()
    .await
    .unwrap();
    assert_eq!(count(&keys["keys"]), 1, "exactly one key: {keys}");
    let sas = reqwest::get(format!("{}v1/projects/{P}/serviceAccounts", env.emu.base_url()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(count(&sas["accounts"]), 1, "{sas}");
    let insts = reqwest::get(format!("{}v1/projects/{P}/instances", env.emu.base_url()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(count(&insts["items"]), 1, "{insts}");
    let users = reqwest::get(format!("{}v1/projects/{P}/instances/sky-db/users", env.emu.base_url()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(count(&users["items"]), 3, "postgres + 2: {users}");

    // Converged: an empty plan, and a second apply makes zero mutating calls
    // (faults still on).
    env.emu
        .set_faults(FaultSpec {
            seed: Some(8),
            latency_ms: 0,
            rules: vec![
                FaultRule {
                    method: "*".into(),
                    code: 429,
                    rate: 0.10,
                    latency_ms: 0,
                    retry_delay: Some("30ms".into()),
                },
                FaultRule { method: "*".into(), code: 503, rate: 0.10, latency_ms: 0, retry_delay: None },
            ],
        })
        .unwrap();
    assert_empty(&env.plan().await, "after apply under faults");
    env.emu.reset_stats();
    let (_, report) = env.apply_with(&[], Default::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert!(env.mutating_calls().is_empty(), "second apply mutated: {:?}", env.mutating_calls());
}

#[derive(Default)]
struct Recorded(Mutex<Vec<Value>>);
impl Checkpoint for Recorded {
    fn pending(&self, _identity: &Value, private: &Value) {
        self.0.lock().unwrap().push(private.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_operation_is_resumed_not_repeated() {
    let env = Env::start(0).await;
    env.emu.set_op_durations(gcp_emulator::OpDurations::uniform(Duration::from_millis(1500)));
    let config = Value::map([
        ("project", Value::str(P)),
        ("endpoint", Value::str(env.emu.base_url())),
        ("anonymous", Value::Bool(true)),
    ]);
    let provider = env.factory.configure(&config, &skyform::foundation::net::Net::new()).await.unwrap();
    let desired = Value::map([
        ("name", Value::str("resumed")),
        ("database_version", Value::str("POSTGRES_15")),
        ("tier", Value::str("db-f1-micro")),
        ("deletion_protection", Value::Bool(false)),
    ]);
    let req = |private: Value, timeout: Duration| ApplyRequest {
        address: "gcp_sql_instance.r".parse::<Address>().unwrap(),
        type_name: "gcp_sql_instance".into(),
        action: ApplyAction::Create,
        identity: None,
        config: desired.clone(),
        prior: None,
        changed: vec![],
        private,
        timeout,
    };
    // The first run gives up (as a crash would) while the operation runs.
    let cp = Recorded::default();
    let err = provider.apply(&req(Value::Null, Duration::from_millis(300)), &cp).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout(_)), "{err:?}");
    let private = cp.0.lock().unwrap().last().cloned().expect("operation recorded before waiting");
    assert!(private.get("operation").is_some(), "{private:?}");
    // The next run reads the pending object with the operation in `private`,
    // and the apply resumes the operation instead of creating again.
    let read = ReadRequest {
        address: "gcp_sql_instance.r".parse().unwrap(),
        type_name: "gcp_sql_instance".into(),
        identity: Some(Value::str(format!("{P}/resumed"))),
        config: desired.clone(),
        private: private.clone(),
    };
    assert!(provider.read(&read).await.unwrap().is_some());
    let resp = provider.apply(&req(private, Duration::from_secs(60)), &Recorded::default()).await.unwrap();
    assert_eq!(resp.identity, Value::str(format!("{P}/resumed")));
    assert_eq!(env.emu.stats().requests.get("sql.instances.insert"), Some(&1), "created once");
    assert!(env.emu.postgres_port(P, "resumed").is_some());
}
