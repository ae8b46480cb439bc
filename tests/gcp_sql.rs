//! GCP provider on the emulator: Cloud SQL instance, database and users (real
//! PostgreSQL behind the instance), with gcloud making out-of-band changes,
//! adoption, and the plan-time checks and refusals.

mod gcp_common;

use gcp_common::{Env, P, actions, assert_empty, change};
use skyform::engine::PlanOptions;
use skyform::engine::drift::DriftClass;
use skyform::plan::Action;

const SPEC: &str = r#"
[variable.db_password]
type = "string"
sensitive = true

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"

[resource.gcp_project_iam_member.instance_user]
role = "roles/cloudsql.instanceUser"
member = "${gcp_service_account.sa.member}"

[resource.gcp_sql_instance.db]
name = "sky-db"
database_version = "POSTGRES_15"
tier = "db-f1-micro"
database_flags = { "cloudsql.iam_authentication" = "on" }
deletion_protection = false
root_password = "${var.db_password}"
# TLS only, and this machine's address may connect directly (psql below).
ip_configuration = { ssl_mode = "ENCRYPTED_ONLY", authorized_networks = [{ name = "test", value = "127.0.0.1/32" }] }

[resource.gcp_sql_database.skypilot]
instance = "${gcp_sql_instance.db.name}"
name = "skypilot-db"

[resource.gcp_sql_user.builtin]
instance = "${gcp_sql_instance.db.name}"
name = "skypilot"
password = "${var.db_password}"

[resource.gcp_sql_user.iam]
instance = "${gcp_sql_instance.db.name}"
name = "${gcp_service_account.sa.email}"
type = "CLOUD_IAM_SERVICE_ACCOUNT"
depends_on = ["gcp_project_iam_member.instance_user"]
"#;

fn var(pw: &str) -> Vec<String> {
    vec![format!("db_password={pw}")]
}

/// Logs in with psql at the instance's address (port 5432, as on Cloud SQL; TLS when offered, as
/// libpq's default `sslmode=prefer` does); whether it worked.
async fn psql_login(ip: std::net::Ipv4Addr, user: &str, password: &str, db: &str) -> bool {
    let out = tokio::process::Command::new("psql")
        .args(["-h", &ip.to_string(), "-U", user, "-d", db, "-tAc", "select 1"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .expect("psql runs");
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_resources_converge_detect_gcloud_drift_repair_and_destroy() {
    let env = Env::start(30).await;
    env.spec(SPEC);
    let pw = var("first-Secret-1");
    let (_, report) = env.apply_with(&pw, PlanOptions::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    let port = env.emu.instance_address(P, "sky-db").expect("instance runs PostgreSQL");
    assert!(psql_login(port, "skypilot", "first-Secret-1", "skypilot-db").await, "built-in user logs in");
    assert!(psql_login(port, "postgres", "first-Secret-1", "postgres").await, "root password set");
    // No secret in state.
    for e in std::fs::read_dir(env.state_dir()).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        assert!(!text.contains("first-Secret-1"), "state holds a password");
    }
    // The address and port are exported for a PostgreSQL provider.
    let plan = env.try_plan(&pw, PlanOptions::default()).await.unwrap();
    assert_empty(&plan, "after create");
    let db = change(&plan, "gcp_sql_instance.db");
    assert_eq!(db.after.as_ref().unwrap()["port"], skyform::value::Value::Int(5432));
    assert_eq!(db.after.as_ref().unwrap()["public_ip"], skyform::value::Value::str(port.to_string()));
    // The IAM user's name was trimmed as PostgreSQL needs.
    let users = env.gcloud(&["sql", "users", "list", "--instance=sky-db", "--format=value(name)"]).await;
    assert!(users.contains("skypilot-sql@skyform-test.iam\n"), "{users}");

    // A password change is seen through the fingerprint alone, and applied.
    let pw2 = var("second-Secret-2");
    let plan = env.try_plan(&pw2, PlanOptions::default()).await.unwrap();
    let mut got = actions(&plan);
    got.sort();
    assert_eq!(
        got,
        vec![("gcp_sql_instance.db".into(), Action::Update), ("gcp_sql_user.builtin".into(), Action::Update)]
    );
    let (_, report) = env.apply_with(&pw2, PlanOptions::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert!(psql_login(port, "skypilot", "second-Secret-2", "skypilot-db").await);

    // Out-of-band changes with gcloud: the tier, and who may connect directly, and how.
    env.gcloud(&[
        "sql",
        "instances",
        "patch",
        "sky-db",
        "--tier=db-g1-small",
        "--authorized-networks=127.0.0.1/32,0.0.0.0/0",
        "--ssl-mode=ALLOW_UNENCRYPTED_AND_ENCRYPTED",
    ])
    .await;
    env.gcloud(&["sql", "databases", "delete", "skypilot-db", "--instance=sky-db"]).await;
    env.gcloud(&["sql", "users", "delete", "skypilot", "--instance=sky-db"]).await;
    let plan = env.try_plan(&pw2, PlanOptions::default()).await.unwrap();
    let mut got = actions(&plan);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("gcp_sql_database.skypilot".into(), Action::Create),
            ("gcp_sql_instance.db".into(), Action::Update),
            ("gcp_sql_user.builtin".into(), Action::Create),
        ]
    );
    let inst = change(&plan, "gcp_sql_instance.db");
    assert_eq!(inst.changed, vec!["tier", "ip_configuration"]);
    assert!(inst.notes.iter().any(|n| n.contains("restarts the instance")), "{:?}", inst.notes);
    let loaded = env.load_with(&pw2);
    let ctx = env.ctx(&loaded);
    let s = skyform::ops::apply::open(&loaded, None, std::time::Duration::ZERO).unwrap();
    let drift = skyform::ops::drift::drift(&s, &ctx, false).await.unwrap();
    drop(s);
    let mut classes: Vec<(String, DriftClass)> =
        drift.findings.iter().map(|f| (f.address.to_string(), f.class)).collect();
    classes.sort();
    assert_eq!(
        classes,
        vec![
            ("gcp_sql_database.skypilot".into(), DriftClass::DeletedOutside),
            ("gcp_sql_instance.db".into(), DriftClass::ChangedOutside),
            ("gcp_sql_user.builtin".into(), DriftClass::DeletedOutside),
        ]
    );
    let (_, report) = env.apply_with(&pw2, PlanOptions::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert_empty(&env.try_plan(&pw2, PlanOptions::default()).await.unwrap(), "after repair");
    assert!(psql_login(port, "skypilot", "second-Secret-2", "skypilot-db").await);

    // Destroy: users and database before the instance.
    let (_, report) = env.apply_with(&pw2, PlanOptions { destroy: true, ..Default::default() }).await;
    assert!(report.ok(), "{:?}", report.failures);
    let list = env.gcloud(&["sql", "instances", "list", "--format=value(name)"]).await;
    assert!(!list.contains("sky-db"), "{list}");
    // The name is now reserved for a week: a new create says so, and is not retried.
    env.emu.reset_stats();
    let (_, report) = env.apply_with(&pw2, PlanOptions::default()).await;
    let (addr, msg) =
        report.failures.iter().find(|(a, _)| a.to_string() == "gcp_sql_instance.db").expect("create fails");
    let msg = msg.to_string();
    assert!(msg.contains("week") && msg.contains("sky-db"), "{addr}: {msg}");
    assert_eq!(env.emu.stats().requests.get("sql.instances.insert"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_resources_made_by_gcloud_first_are_adopted_and_protection_is_enforced() {
    let env = Env::start(0).await;
    env.gcloud(&[
        "sql",
        "instances",
        "create",
        "sky-db",
        "--database-version=POSTGRES_15",
        "--tier=db-f1-micro",
        "--region=us-central1",
        "--database-flags=cloudsql.iam_authentication=on",
    ])
    .await;
    env.gcloud(&["sql", "databases", "create", "skypilot-db", "--instance=sky-db"]).await;
    env.gcloud(&["sql", "users", "create", "skypilot", "--instance=sky-db", "--password=whatever"]).await;
    // The spec keeps the default deletion protection.
    env.spec(&SPEC.replace("deletion_protection = false\n", ""));
    let pw = var("adopted-Secret-3");
    let plan = env.try_plan(&pw, PlanOptions::default()).await.unwrap();
    assert_eq!(change(&plan, "gcp_sql_database.skypilot").action, Action::Adopt);
    // Adopted with changes: the protection flag, the write-only passwords.
    let inst = change(&plan, "gcp_sql_instance.db");
    assert_eq!(inst.action, Action::Adopt);
    assert!(inst.changed.contains(&"deletion_protection".to_string()), "{:?}", inst.changed);
    env.emu.reset_stats();
    let (_, report) = env.apply_with(&pw, PlanOptions::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    let st = env.emu.stats().requests;
    assert_eq!(st.get("sql.instances.insert"), None, "{st:?}");
    assert_eq!(st.get("sql.databases.insert"), None, "{st:?}");
    assert_empty(&env.try_plan(&pw, PlanOptions::default()).await.unwrap(), "after adoption");
    let port = env.emu.instance_address(P, "sky-db").unwrap();
    assert!(
        psql_login(port, "skypilot", "adopted-Secret-3", "skypilot-db").await,
        "adopted user got the spec's password"
    );

    // Destroy is refused while protected, with how to lift it; gcloud cannot delete it either.
    let (_, report) = env.apply_with(&pw, PlanOptions { destroy: true, ..Default::default() }).await;
    let msg = report.failures.iter().map(|(a, m)| format!("{a}: {m}")).collect::<Vec<_>>().join("\n");
    assert!(msg.contains("gcp_sql_instance.db") && msg.contains("deletion_protection = false"), "{msg}");
    let (ok, _) = env.gcloud_raw(&["sql", "instances", "delete", "sky-db"]).await;
    assert!(!ok, "API-level protection");

    // A replacement that keeps the name warns about the week-long reservation.
    env.spec(
        &SPEC
            .replace("deletion_protection = false\n", "")
            .replace("tier = \"db-f1-micro\"", "tier = \"db-f1-micro\"\nregion = \"europe-west1\""),
    );
    let plan = env.try_plan(&pw, PlanOptions::default()).await.unwrap();
    let inst = change(&plan, "gcp_sql_instance.db");
    assert!(inst.action.is_replace(), "{:?}", inst.action);
    let notes = inst.notes.join("\n");
    assert!(notes.contains("week") && notes.contains("deletion protection"), "{notes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_time_checks_catch_what_login_would_fail_on() {
    let env = Env::start(0).await;
    // No IAM flag, no instanceUser role.
    let spec = SPEC
        .replace("database_flags = { \"cloudsql.iam_authentication\" = \"on\" }\n", "")
        .replace("depends_on = [\"gcp_project_iam_member.instance_user\"]\n", "")
        .replace("role = \"roles/cloudsql.instanceUser\"", "role = \"roles/cloudsql.client\"");
    env.spec(&spec);
    let err = env.try_plan(&var("x-pw"), PlanOptions::default()).await.unwrap_err();
    assert!(err.contains("gcp_sql_user.iam") && err.contains("cloudsql.iam_authentication=on"), "{err}");
    assert!(err.contains("roles/cloudsql.instanceUser"), "{err}");

    // A Workload Identity binding with no cluster that has a pool.
    env.spec(&WI_SPEC.replace("POOL", "false"));
    let err = env.try_plan(&[], PlanOptions::default()).await.unwrap_err();
    assert!(err.contains("gcp_service_account_iam_member.wi") && err.contains("workload pool"), "{err}");
    // With the pool planned, it passes; an instance in another region than the
    // cluster gets a warning.
    env.spec(&format!(
        "{}\n[resource.gcp_sql_instance.db]\nname = \"sky-db\"\ndatabase_version = \"POSTGRES_15\"\ntier = \"db-f1-micro\"\ndepends_on = [\"gcp_container_cluster.main\"]\n",
        WI_SPEC.replace("POOL", "true")
    ));
    let plan = env.try_plan(&[], PlanOptions::default()).await.unwrap();
    assert_eq!(change(&plan, "gcp_service_account_iam_member.wi").action, Action::Create);
    let notes = change(&plan, "gcp_sql_instance.db").notes.join("\n");
    assert!(notes.contains("warning") && notes.contains("europe-west1") && notes.contains("us-central1"), "{notes}");
}

const WI_SPEC: &str = r#"
[resource.gcp_service_account.sa]
account_id = "skypilot-sql"

[resource.gcp_container_cluster.main]
name = "sky"
location = "europe-west1"
workload_identity = POOL

[resource.gcp_service_account_iam_member.wi]
service_account = "${gcp_service_account.sa.email}"
role = "roles/iam.workloadIdentityUser"
member = "serviceAccount:skyform-test.svc.id.goog[skypilot/skypilot-api-sa]"
depends_on = ["gcp_container_cluster.main"]
"#;
