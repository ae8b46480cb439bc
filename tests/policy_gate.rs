//! The policy gate with the real binary and the in-process GCP emulator: apply refuses a denied
//! plan before any API call (the emulator's write counts prove it), also a saved plan whose
//! policies changed since; `[policy] paths` in the spec; broken Rego is a located error that
//! sends nothing; drift and check report `policy_failed` after deletion protection is lifted
//! with the real gcloud.

mod policy_common;

use policy_common::{Seed, baseline, text};

/// Mutating API calls the emulator answered so far.
fn writes(seed: &Seed) -> Vec<(String, u64)> {
    let read = |m: &str| {
        m.ends_with(".get")
            || m.ends_with(".list")
            || m.ends_with("getIamPolicy")
            || m.ends_with("testIamPermissions")
            || m.ends_with(".batchGet")
    };
    seed.emu.stats().requests.into_iter().filter(|(m, n)| *n > 0 && !read(m)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_denied_plan_before_any_api_call() {
    let seed = Seed::start().await;
    let base = baseline().display().to_string();
    let common = ["-f", "skypilot-iam.toml", "--var", "project=skyform-test", "--policy", &base];

    // A fresh apply: planned (reads), then refused before the first change.
    let out = seed.run(&[&["apply"][..], &common, &["--var", "deletion_protection=false", "--auto-approve"]].concat());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("the policies deny this plan (1 result)"), "{all}");
    assert!(
        all.contains("deny: module.skypilot.gcp_sql_instance.skypilot: Cloud SQL deletion protection is off"),
        "{all}"
    );
    assert!(all.contains("[SKY-SQL-001]"), "{all}");
    assert!(seed.emu.stats().total > 0, "the plan read the project");
    assert_eq!(writes(&seed), vec![], "a denied apply wrote to the API");

    // A saved plan that the policies deny: saved (with its results) but never applied.
    let out =
        seed.run(&[&["plan"][..], &common, &["--var", "deletion_protection=false", "--out", "denied.plan"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seed.dir.path().join("denied.plan")).unwrap()).unwrap();
    assert_eq!(saved["policy"]["findings"][0]["id"], "SKY-SQL-001");
    let out = seed.run(&[&["apply", "denied.plan"][..], &common, &["--var", "deletion_protection=false"]].concat());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("the policies deny this plan"), "{all}");
    assert_eq!(writes(&seed), vec![], "a denied saved plan wrote to the API");

    // A saved plan that passed, whose policies changed since: refused, naming why.
    let policies = seed.dir.path().join("policies");
    skyform_testbed::copy_dir(&baseline(), &policies);
    let copy = policies.display().to_string();
    let passing = ["-f", "skypilot-iam.toml", "--var", "project=skyform-test", "--policy", &copy];
    let out = seed.run(&[&["plan"][..], &passing, &["--out", "ok.plan"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(policies.join("extra.rego"), "package skyform.extra\n\nwarn contains \"new rule\" if true\n")
        .unwrap();
    let out = seed.run(&[&["apply", "ok.plan"][..], &passing].concat());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("the policies changed since the plan was made"), "{all}");
    // Without the policies it was made with, the same: no flag leaves them out.
    std::fs::remove_file(policies.join("extra.rego")).unwrap();
    let out = seed.run(&["apply", "ok.plan", "-f", "skypilot-iam.toml", "--var", "project=skyform-test"]);
    assert!(text(&out).contains("the policies changed since the plan was made"), "{}", text(&out));
    assert_eq!(writes(&seed), vec![], "a refused saved plan wrote to the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_paths_in_the_spec_and_located_errors_for_broken_rego() {
    let seed = Seed::start().await;
    skyform_testbed::copy_dir(&baseline(), &seed.dir.path().join("policies"));
    seed.edit_root("skypilot-iam.toml", "[provider.gcp]\n", "[policy]\npaths = [\"policies\"]\n\n[provider.gcp]\n");
    let out = seed.run(&["plan", "-f", "skypilot-iam.toml", "--var", "project=skyform-test"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("Policies (5 files): 0 deny, 1 warn."), "{all}");
    assert!(all.contains("warning: helm_release.skypilot: chart \"skypilot-nightly\" has no version"), "{all}");

    // Broken Rego: located, the run stops before any request.
    let before = seed.emu.stats().total;
    let bad = seed.dir.path().join("policies/broken.rego");
    std::fs::write(&bad, "package skyform.broken\n\ndeny contains msg if {\n  msg := concat(\",\" [1])\n}\n").unwrap();
    let out = seed.run(&["plan", "-f", "skypilot-iam.toml", "--var", "project=skyform-test"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("policies/broken.rego:4:7: error: policy: "), "not located at 4:7: {all}");
    // `validate` sees it too, with no variable and no network.
    let out = seed.run(&["validate", "-f", "skypilot-iam.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("policies/broken.rego:4:7: error: policy: "), "{}", text(&out));
    assert_eq!(seed.emu.stats().total, before, "a broken policy still sent requests");

    // A missing directory is named at its place in the spec.
    std::fs::remove_file(&bad).unwrap();
    seed.edit_root("skypilot-iam.toml", "paths = [\"policies\"]", "paths = [\"policies\", \"no-such-dir\"]");
    let out = seed.run(&["validate", "-f", "skypilot-iam.toml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("skypilot-iam.toml:") && all.contains("policy path `no-such-dir` does not exist"), "{all}");

    // A spec names policies under its own directory only; the operator's --policy may name any.
    seed.edit_root("skypilot-iam.toml", "paths = [\"policies\", \"no-such-dir\"]", "paths = [\"..\"]");
    let out = seed.run(&["validate", "-f", "skypilot-iam.toml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("is outside the spec's directory"), "{all}");
}

const DRIFT_SPEC: &str = r#"
[variable.root_password]
type = "string"
sensitive = true

[resource.gcp_sql_instance.db]
name = "sky-db"
database_version = "POSTGRES_15"
tier = "db-f1-micro"
deletion_protection = true
root_password = "${var.root_password}"
ip_configuration = { ipv4_enabled = true, ssl_mode = "ENCRYPTED_ONLY", authorized_networks = [] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_and_check_report_policy_failed_after_deletion_protection_is_lifted_by_hand() {
    let seed = Seed::start().await;
    let spec = format!("[provider.gcp]\nproject = \"{}\"\nregion = \"us-central1\"\n{DRIFT_SPEC}", policy_common::P);
    std::fs::write(seed.dir.path().join("db.toml"), spec).unwrap();
    let base = baseline().display().to_string();
    let args = |verb: &'static str| vec![verb, "-f", "db.toml", "--policy", base.as_str()];
    let out = seed.run(&[&args("apply")[..], &["--auto-approve"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = seed.run(&[&args("drift")[..], &["--json", "--skip-checks"]].concat());
    assert_eq!(out.status.code(), Some(0), "converged and within the policies: {}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["policy_failed"], 0);
    assert!(report["policy"]["findings"].as_array().unwrap().is_empty(), "{report}");

    // As an operator would: `gcloud sql instances patch --no-deletion-protection`.
    let gcloud = seed.gcloud(&["sql", "instances", "patch", "sky-db", "--no-deletion-protection"]).await;
    assert!(gcloud.0, "gcloud failed: {}", gcloud.1);

    let out = seed.run(&[&args("drift")[..], &["--json", "--skip-checks"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let failed: Vec<&serde_json::Value> = findings.iter().filter(|f| f["class"] == "policy_failed").collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["address"], "gcp_sql_instance.db");
    assert!(failed[0]["message"].as_str().unwrap().contains("[SKY-SQL-001]"), "{report}");
    assert!(
        findings.iter().any(|f| f["class"] == "changed_outside" && f["address"] == "gcp_sql_instance.db"),
        "the change itself is drift too: {report}"
    );
    assert_eq!(report["counts"]["policy_failed"], 1);
    // The human report counts it.
    let out = seed.run(&[&args("drift")[..], &["--skip-checks"]].concat());
    let all = text(&out);
    assert!(all.contains("! gcp_sql_instance.db [policy_failed]: breaks a policy"), "{all}");
    assert!(all.contains(", 1 policy_failed."), "{all}");

    // `skyform check` judges the live objects too (the spec has no check of its own).
    let out = seed.run(&[&args("check")[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["policy_failed"], 1, "{doc}");
    let all = text(&out);
    assert!(!all.contains("Root-Pw-1-policy"), "a secret in the output: {all}");
}
