//! A change of the provider's project replaces what was made in the old one (as Terraform's google
//! provider plans it), instead of "no changes" against objects that live elsewhere.

mod gcp_common;

use gcp_common::{Env, actions, change};
use skyform::engine::PlanOptions;
use skyform::plan::Action;

fn spec(env: &Env) -> String {
    format!(
        r#"
[variable.project]
type = "string"

[provider.gcp]
project = "${{var.project}}"
region = "us-central1"
endpoint = "{}"
anonymous = true

[resource.gcp_service_account.sa]
account_id = "moved-project"

[output.email]
value = "${{gcp_service_account.sa.email}}"
"#,
        env.emu.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_project_plans_replacements() {
    let env = Env::start(20).await;
    env.spec_file(&spec(&env));
    let pa = vec!["project=proj-a".to_string()];
    let (_, report) = env.apply_with(&pa, PlanOptions::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    let plan = env.try_plan(&pa, PlanOptions::default()).await.unwrap();
    assert!(!plan.has_changes(), "converged in proj-a");

    let pb = vec!["project=proj-b".to_string()];
    let plan = env.try_plan(&pb, PlanOptions::default()).await.unwrap();
    assert_eq!(actions(&plan), vec![("gcp_service_account.sa".to_string(), Action::DeleteThenCreate)]);
    let c = change(&plan, "gcp_service_account.sa");
    assert!(c.requires_replace.contains(&"project".to_string()), "{:?}", c.requires_replace);
    assert!(
        c.notes.iter().any(|n| n == "project: proj-a → proj-b (the provider's configuration) forces replacement"),
        "{:?}",
        c.notes
    );
    // The apply makes it in proj-b and removes it from proj-a; the output follows.
    let (_, report) = env.apply_with(&pb, PlanOptions::default()).await;
    assert!(report.ok(), "{:?}", report.failures);
    assert!(report.outputs["email"].to_string().contains("@proj-b.iam.gserviceaccount.com"), "{:?}", report.outputs);
    let listed = env.gcloud(&["iam", "service-accounts", "list", "--project=proj-a", "--format=value(email)"]).await;
    assert!(!listed.contains("moved-project@"), "{listed}");
    let plan = env.try_plan(&pb, PlanOptions::default()).await.unwrap();
    assert!(!plan.has_changes(), "converged in proj-b");
}
