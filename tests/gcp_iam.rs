//! GCP provider on the emulator: project services, service accounts, IAM
//! members (project and service account) and keys. Each resource type goes
//! create → empty re-plan → out-of-band change with the real gcloud → plan shows
//! exactly that change and drift reports it → apply repairs → destroy removes;
//! then adoption of what gcloud created first.

mod gcp_common;

use gcp_common::{Env, P, actions, assert_empty, change};
use skyform::engine::drift::DriftClass;
use skyform::plan::Action;

const SPEC: &str = r#"
[resource.gcp_project_service.sql]
service = "sqladmin.googleapis.com"

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"
display_name = "SkyPilot SQL"

[resource.gcp_project_iam_member.client]
role = "roles/cloudsql.client"
member = "${gcp_service_account.sa.member}"

[resource.gcp_project_iam_member.user]
role = "roles/cloudsql.instanceUser"
member = "${gcp_service_account.sa.member}"

[resource.gcp_service_account_iam_member.alice]
service_account = "${gcp_service_account.sa.email}"
role = "roles/iam.serviceAccountUser"
member = "user:alice@example.com"

[resource.gcp_service_account_key.key]
service_account = "${gcp_service_account.sa.email}"
"#;

const EMAIL: &str = "skypilot-sql@skyform-test.iam.gserviceaccount.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_resources_converge_detect_gcloud_drift_repair_and_destroy() {
    let env = Env::start(0).await;
    // A member skyform does not manage, on a role it manages.
    env.gcloud(&[
        "projects",
        "add-iam-policy-binding",
        P,
        "--member=user:bob@example.com",
        "--role=roles/cloudsql.client",
    ])
    .await;
    env.spec(SPEC);
    env.emu.reset_stats();
    let plan = env.apply().await;
    assert_eq!(plan.summary().add, 6, "{:?}", actions(&plan));
    // The private key never reaches state (only the key name and a fingerprint).
    for e in std::fs::read_dir(env.state_dir()).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        assert!(!text.contains("PRIVATE KEY") && !text.contains("private_key_id"), "state holds the key");
    }
    // The two project members were written in one read-modify-write.
    assert_eq!(env.emu.stats().requests.get("cloudresourcemanager.v1.projects.setIamPolicy"), Some(&1));

    // Re-plan is empty, and reads each policy once.
    env.emu.reset_stats();
    assert_empty(&env.plan().await, "after create");
    let st = env.emu.stats().requests;
    assert_eq!(st.get("cloudresourcemanager.v1.projects.getIamPolicy"), Some(&1), "{st:?}");
    assert_eq!(st.get("iam.serviceAccounts.getIamPolicy"), Some(&1), "{st:?}");
    // A second apply changes nothing.
    env.emu.reset_stats();
    env.apply().await;
    assert!(env.mutating_calls().is_empty(), "{:?}", env.mutating_calls());

    // Out-of-band changes with gcloud, one per resource type.
    let key_id = env
        .gcloud(&[
            "iam",
            "service-accounts",
            "keys",
            "list",
            &format!("--iam-account={EMAIL}"),
            "--managed-by=user",
            "--format=value(name)",
        ])
        .await;
    let key_id = key_id.trim().rsplit('/').next().unwrap().to_string();
    env.gcloud(&["services", "disable", "sqladmin.googleapis.com"]).await;
    env.gcloud(&["iam", "service-accounts", "update", EMAIL, "--display-name=Changed by hand"]).await;
    env.gcloud(&[
        "projects",
        "remove-iam-policy-binding",
        P,
        &format!("--member=serviceAccount:{EMAIL}"),
        "--role=roles/cloudsql.client",
    ])
    .await;
    env.gcloud(&[
        "iam",
        "service-accounts",
        "remove-iam-policy-binding",
        EMAIL,
        "--member=user:alice@example.com",
        "--role=roles/iam.serviceAccountUser",
    ])
    .await;
    env.gcloud(&["iam", "service-accounts", "keys", "delete", &key_id, &format!("--iam-account={EMAIL}")]).await;

    let plan = env.plan().await;
    let mut got = actions(&plan);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("gcp_project_iam_member.client".to_string(), Action::Create),
            ("gcp_project_service.sql".to_string(), Action::Create),
            ("gcp_service_account.sa".to_string(), Action::Update),
            ("gcp_service_account_iam_member.alice".to_string(), Action::Create),
            ("gcp_service_account_key.key".to_string(), Action::Create),
        ]
    );
    assert_eq!(change(&plan, "gcp_service_account.sa").changed, vec!["display_name"]);
    let drift = env.drift().await;
    assert!(!drift.converged());
    let mut classes: Vec<(String, DriftClass)> =
        drift.findings.iter().map(|f| (f.address.to_string(), f.class)).collect();
    classes.sort();
    assert_eq!(
        classes,
        vec![
            ("gcp_project_iam_member.client".into(), DriftClass::DeletedOutside),
            ("gcp_project_service.sql".into(), DriftClass::DeletedOutside),
            ("gcp_service_account.sa".into(), DriftClass::ChangedOutside),
            ("gcp_service_account_iam_member.alice".into(), DriftClass::DeletedOutside),
            ("gcp_service_account_key.key".into(), DriftClass::DeletedOutside),
        ]
    );

    env.apply().await;
    assert_empty(&env.plan().await, "after repair");
    assert!(env.drift().await.converged());
    let policy = env.gcloud(&["projects", "get-iam-policy", P, "--format=json"]).await;
    assert!(policy.contains("user:bob@example.com"), "unmanaged member kept: {policy}");
    // …and reported on request.
    env.spec(&format!(
        "{SPEC}\n[data.gcp_iam_policy.project]\nrole = \"roles/cloudsql.client\"\n\n[output.client_members]\nvalue = \"${{join(\\\",\\\", data.gcp_iam_policy.project.bindings[\\\"roles/cloudsql.client\\\"])}}\"\n"
    ));
    let plan = env.plan().await;
    assert_empty(&plan, "with the data source");
    let members = plan.outputs["client_members"].as_str().unwrap().to_string();
    assert!(members.contains("user:bob@example.com") && members.contains(EMAIL), "{members}");
    env.spec(SPEC);
    assert!(policy.contains(&format!("serviceAccount:{EMAIL}")));

    // A changed role replaces the claim: the old member goes, the new one comes.
    env.spec(&SPEC.replace("role = \"roles/cloudsql.client\"", "role = \"roles/cloudsql.viewer\""));
    let plan = env.apply().await;
    assert!(change(&plan, "gcp_project_iam_member.client").action.is_replace());
    let policy = env.gcloud(&["projects", "get-iam-policy", P, "--format=json"]).await;
    let v: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let members_of = |role: &str| {
        v["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["role"] == role)
            .flat_map(|b| b["members"].as_array().unwrap().clone())
            .collect::<Vec<_>>()
    };
    let me = serde_json::json!(format!("serviceAccount:{EMAIL}"));
    assert!(
        !members_of("roles/cloudsql.client").contains(&me) && members_of("roles/cloudsql.viewer").contains(&me),
        "{policy}"
    );
    assert!(members_of("roles/cloudsql.client").contains(&serde_json::json!("user:bob@example.com")));

    // Destroy removes everything skyform made, and nothing else.
    let report = env.destroy().await;
    assert!(report.ok(), "{:?}", report.failures);
    let (ok, _) = env.gcloud_raw(&["iam", "service-accounts", "describe", EMAIL]).await;
    assert!(!ok, "service account deleted");
    let policy = env.gcloud(&["projects", "get-iam-policy", P, "--format=json"]).await;
    assert!(policy.contains("user:bob@example.com") && !policy.contains(EMAIL), "{policy}");
    let enabled = env.gcloud(&["services", "list", "--enabled", "--format=value(config.name)"]).await;
    assert!(!enabled.contains("sqladmin.googleapis.com"), "{enabled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_resources_made_by_gcloud_first_are_adopted() {
    let env = Env::start(0).await;
    env.gcloud(&["services", "enable", "sqladmin.googleapis.com"]).await;
    env.gcloud(&["iam", "service-accounts", "create", "skypilot-sql", "--display-name=SkyPilot SQL"]).await;
    env.gcloud(&[
        "projects",
        "add-iam-policy-binding",
        P,
        &format!("--member=serviceAccount:{EMAIL}"),
        "--role=roles/cloudsql.client",
    ])
    .await;
    env.gcloud(&[
        "iam",
        "service-accounts",
        "add-iam-policy-binding",
        EMAIL,
        "--member=user:alice@example.com",
        "--role=roles/iam.serviceAccountUser",
    ])
    .await;
    env.spec(SPEC);
    let plan = env.plan().await;
    for a in [
        "gcp_project_service.sql",
        "gcp_service_account.sa",
        "gcp_project_iam_member.client",
        "gcp_service_account_iam_member.alice",
    ] {
        assert_eq!(change(&plan, a).action, Action::Adopt, "{a}");
    }
    // Keys cannot be adopted (their private key is unknowable): created.
    assert_eq!(change(&plan, "gcp_service_account_key.key").action, Action::Create);
    assert_eq!(change(&plan, "gcp_project_iam_member.user").action, Action::Create);
    env.emu.reset_stats();
    env.apply().await;
    let st = env.emu.stats().requests;
    assert_eq!(st.get("iam.serviceAccounts.create"), None, "adopted, not created: {st:?}");
    assert_eq!(st.get("serviceusage.services.enable"), None, "{st:?}");
    assert_empty(&env.plan().await, "after adoption");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_meets_an_existing_account_converges_it() {
    // The account appears between plan and apply (another tool, or a retried
    // create whose response was lost): ALREADY_EXISTS → read and converge.
    let env = Env::start(0).await;
    env.spec(SPEC);
    let loaded = env.load();
    let ctx = env.ctx(&loaded);
    let mut s = skyform::ops::apply::open(&loaded, Some("apply"), std::time::Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &Default::default()).await.unwrap();
    env.gcloud(&["iam", "service-accounts", "create", "skypilot-sql", "--display-name=Other name"]).await;
    let report = s.apply(&ctx, &planned.plan).await.unwrap();
    assert!(report.ok(), "{:?}", report.failures);
    drop(s);
    let sa = env.gcloud(&["iam", "service-accounts", "describe", EMAIL, "--format=value(displayName)"]).await;
    assert_eq!(sa.trim(), "SkyPilot SQL");
    assert_empty(&env.plan().await, "after converging");
}

/// A project (or region) left to the provider's configuration is known at plan time: the plan shows
/// it, and what references it is known too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_project_is_known_at_plan_time() {
    let env = Env::start(0).await;
    env.spec(
        r#"
[resource.gcp_service_account.a]
account_id = "plan-time"

[resource.gcp_sql_instance.db]
name = "plan-time-db"
database_version = "POSTGRES_15"
tier = "db-custom-1-3840"

[output.where]
value = "${gcp_service_account.a.project}/${gcp_sql_instance.db.region}"
"#,
    );
    let plan = env.plan().await;
    let sa = change(&plan, "gcp_service_account.a").after.as_ref().unwrap();
    assert_eq!(sa.get("project"), Some(&skyform::value::Value::str(P)), "{sa:?}");
    let db = change(&plan, "gcp_sql_instance.db").after.as_ref().unwrap();
    assert!(matches!(db.get("region"), Some(skyform::value::Value::String(_))), "{db:?}");
    assert!(
        matches!(db.get("connection_name"), Some(skyform::value::Value::Unknown)),
        "what only apply knows stays unknown"
    );
    let text = skyform::cli::render::plan(&plan);
    assert!(
        text.contains(&format!("project      = \"{P}\"")) || text.contains(&format!("project = \"{P}\"")),
        "{text}"
    );
}
