//! The SkyPilot baseline (`policies/skypilot-baseline/`) on the seed specs, planned by the real
//! binary against the in-process GCP emulator: both seed variants pass it (with the warnings its
//! `warn` rules give), and each rule denies (or warns on) a copy of the seed that breaks it, with
//! the resource's address, the plan failing (exit 1) as a plan error does.

mod policy_common;

use policy_common::{Findings, Seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_seed_variants_pass_the_baseline_with_its_warnings() {
    let seed = Seed::start().await;
    let (code, f, out) = seed.plan("skypilot-iam.toml", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(f.denies().is_empty(), "{out}");
    assert_eq!(f.warns(), [("SKY-HELM-001", "helm_release.skypilot")], "{out}");

    let (code, f, out) = seed.plan("skypilot-password.toml", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(f.denies().is_empty(), "{out}");
    assert_eq!(
        f.warns(),
        [
            ("SKY-AUTH-001", "gcp_sql_user.skypilot"),
            ("SKY-AUTH-002", "gcp_service_account_key.proxy"),
            ("SKY-GKE-001", "module.skypilot.gcp_container_cluster.main"),
            ("SKY-HELM-001", "helm_release.skypilot"),
        ],
        "{out}"
    );
    // The input document: variables masked, provider configurations without credentials.
    let doc = seed.plan_json("skypilot-password.toml");
    assert_eq!(doc["variables"]["project"], "skyform-test");
    assert_eq!(doc["variables"]["root_password"], "(sensitive value)");
    assert_eq!(doc["variables"]["db_password"], "(sensitive value)");
    assert_eq!(doc["providers"]["gcp"]["project"], "skyform-test");
    assert_eq!(doc["providers"]["kubernetes"]["cluster"], "(known after apply)");
    let iam = seed.plan_json("skypilot-iam.toml");
    assert_eq!(iam["providers"]["postgres"]["user"], "postgres", "{}", iam["providers"]);
    assert!(iam["providers"]["postgres"].get("password").is_none(), "{}", iam["providers"]);
    let text = format!("{doc}{iam}");
    for secret in ["Root-Pw-1-policy", "Db-Pw-1-policy", "Web-Pw-1-policy"] {
        assert!(!text.contains(secret), "{secret} in the plan document");
    }

    // A pinned chart silences its warning.
    let (code, f, out) = seed.plan("skypilot-iam.toml", &["--var", "chart_version=1.0.0-dev.20260808"]);
    assert_eq!(code, 0, "{out}");
    assert!(f.findings.is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_denies_a_seed_that_breaks_it() {
    let seed = Seed::start().await;
    let instance = "module.skypilot.gcp_sql_instance.skypilot";
    let denied = |file: &str, args: &[&str]| -> Findings {
        let (code, f, out) = seed.plan(file, args);
        assert_eq!(code, 1, "a denied plan fails:\n{out}");
        assert!(out.contains("the policies deny this plan"), "{out}");
        f
    };

    let f = denied("skypilot-iam.toml", &["--var", "deletion_protection=false"]);
    assert_eq!(f.denies(), [("SKY-SQL-001", instance)]);

    seed.edit_module("authorized_networks = []", r#"authorized_networks = [{ name = "all", value = "0.0.0.0/0" }]"#);
    let f = denied("skypilot-iam.toml", &[]);
    assert_eq!(f.denies(), [("SKY-SQL-002", instance)]);
    seed.restore();

    seed.edit_module(r#"ssl_mode = "ENCRYPTED_ONLY""#, r#"ssl_mode = "ALLOW_UNENCRYPTED_AND_ENCRYPTED""#);
    let f = denied("skypilot-iam.toml", &[]);
    assert_eq!(f.denies(), [("SKY-SQL-003", instance)]);
    seed.restore();

    seed.edit_root("skypilot-iam.toml", "workload_identity = true", "workload_identity = false");
    let f = denied("skypilot-iam.toml", &[]);
    assert_eq!(f.denies(), [("SKY-GKE-001", "module.skypilot.gcp_container_cluster.main")]);
    seed.restore();

    for image in ["gcr.io/cloud-sql-connectors/cloud-sql-proxy:latest", "gcr.io/cloud-sql-connectors/cloud-sql-proxy"] {
        let f = denied("skypilot-password.toml", &["--var", &format!("proxy_image={image}")]);
        assert_eq!(f.denies(), [("SKY-IMG-001", "helm_release.skypilot")], "{image}");
    }
    // A digest pins too.
    let (code, f, out) = seed.plan(
        "skypilot-iam.toml",
        &["--var", &format!("proxy_image=gcr.io/cloud-sql-connectors/cloud-sql-proxy@sha256:{}", "a".repeat(64))],
    );
    assert_eq!(code, 0, "{out}");
    assert!(f.denies().is_empty(), "{out}");

    let small = seed.var_file(
        "small.tfvars.toml",
        "api_resources = { requests = { cpu = \"500m\", memory = \"1Gi\" }, limits = { cpu = \"2\", memory = \"8Gi\" } }\n",
    );
    let f = denied("skypilot-iam.toml", &["--var-file", &small]);
    let got = f.denies();
    assert_eq!(got.len(), 3, "requests.cpu, requests.memory, limits.cpu: {got:?}");
    assert!(got.iter().all(|d| d == &("SKY-HELM-002", "helm_release.skypilot")), "{got:?}");
    let (code, f, out) = seed.plan("skypilot-iam.toml", &["--var-file", &small, "--var", "skip_resource_check=true"]);
    assert_eq!(code, 0, "skip_resource_check lets small resources through:\n{out}");
    assert!(f.denies().is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_plan_lists_denies_with_their_addresses_then_refuses() {
    let seed = Seed::start().await;
    let base = policy_common::baseline().display().to_string();
    let out = seed.run(&[
        "plan",
        "-f",
        "skypilot-iam.toml",
        "--var",
        "project=skyform-test",
        "--var",
        "deletion_protection=false",
        "--var",
        "proxy_image=gcr.io/cloud-sql-connectors/cloud-sql-proxy:latest",
        "--policy",
        &base,
    ]);
    let all = policy_common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    // The example of docs/policy.md, line for line.
    for line in [
        "Policies (5 files): 2 deny, 1 warn.",
        "  error: helm_release.skypilot: image \"gcr.io/cloud-sql-connectors/cloud-sql-proxy:latest\" at values.extraInitContainers.0.image is not pinned: give it a version tag (not latest) or a digest [SKY-IMG-001] (data.skyform.skypilot.helm.deny)",
        "  error: module.skypilot.gcp_sql_instance.skypilot: Cloud SQL deletion protection is off: set deletion_protection = true [SKY-SQL-001] (data.skyform.skypilot.cloudsql.deny)",
        "  warning: helm_release.skypilot: chart \"skypilot-nightly\" has no version: each install takes the newest; pin `version` [SKY-HELM-001] (data.skyform.skypilot.helm.warn)",
        "error: the policies deny this plan (2 results):",
        "nothing was changed; fix the spec (or the policy) and plan again",
    ] {
        assert!(all.lines().any(|l| l == line), "missing line {line:?} in:\n{all}");
    }
    assert!(!all.contains("Root-Pw-1-policy") && !all.contains("Web-Pw-1-policy"), "a secret in the output");
}

/// The image rule on Kubernetes objects (the seed has none of its own): a manifest's Deployment
/// with an unpinned image is denied; Secrets and ConfigMaps are not looked into; a value known
/// only after apply is not judged.
#[test]
fn images_in_kubernetes_manifests_are_pinned_too() {
    let set = skyform::policy::PolicySet::load(&[policy_common::baseline()], skyform::policy::DEFAULT_NAMESPACE)
        .expect("the baseline loads");
    let object = |ty: &str, name: &str, after: serde_json::Value| {
        serde_json::json!({"address": format!("{ty}.{name}"), "mode": "managed", "type": ty, "name": name,
                           "action": "create", "after": after})
    };
    let deployment = |image: &str| {
        serde_json::json!({"manifest": {"kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": image}, {"name": "side", "image": "(known after apply)"}]}}}}})
    };
    let input = serde_json::json!({"resource_changes": [
        object("k8s_manifest", "web", deployment("nginx")),
        object("k8s_manifest", "api", deployment("registry.example.com:5000/team/api:1.4.2")),
        object("k8s_config_map", "cfg", serde_json::json!({"data": {"image": "nginx:latest"}})),
    ]});
    let out = set.evaluate(input).unwrap();
    let denies: Vec<(&str, &str)> =
        out.denies().map(|f| (f.address.as_deref().unwrap(), f.id.as_deref().unwrap())).collect();
    assert_eq!(denies, [("k8s_manifest.web", "SKY-IMG-001")], "{out:?}");
    assert!(out.denies().next().unwrap().msg.contains("at manifest.spec.template.spec.containers.0.image"), "{out:?}");
}

/// The baseline's own unit tests (`baseline_test.rego`, for `opa test`; skyform's loader skips
/// them) hold in regorus too: every `test_*` rule is true (`with input as` included).
#[test]
fn the_baselines_own_tests_hold_in_regorus() {
    let dir = policy_common::baseline();
    let mut engine = regorus::Engine::new();
    let mut files = vec![dir.join("lib/plan.rego")];
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rego") {
            files.push(p);
        }
    }
    for f in &files {
        engine.add_policy_from_file(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let results = engine.eval_query("data.skyform.skypilot_test".into(), false).unwrap();
    let tree = serde_json::to_value(&results.result[0].expressions[0].value).unwrap();
    let tests: Vec<(&String, &serde_json::Value)> =
        tree.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("test_")).collect();
    // A failing test is undefined, so absent: every test the file declares must be there, true.
    let declared = std::fs::read_to_string(dir.join("baseline_test.rego")).unwrap().matches("\ntest_").count();
    assert!(declared >= 8);
    assert_eq!(tests.len(), declared, "some tests are undefined in regorus: {tree}");
    let failed: Vec<&String> =
        tests.iter().filter(|(_, v)| **v != serde_json::Value::Bool(true)).map(|(k, _)| *k).collect();
    assert!(failed.is_empty(), "failing in regorus: {failed:?}");
}
