//! skyform's in-process Rego (regorus) held to the real Open Policy Agent: the same input
//! documents (`skyform show --json` of saved plans of the seed, passing and breaking the
//! baseline) and the same policies (the SkyPilot baseline; a set that uses comprehensions,
//! `some`/`every`, functions and imports of `data.*`) give the same deny, warn and violation
//! results under `opa eval` as in skyform's plan. The second set also has data documents
//! (`registries/data.json`, `limits/settings.yaml`), which both load at their directory's path.
//!
//! Needs the `opa` binary that `scripts/testbed-build opa` builds into the testbed cache
//! (`OPA_VERSION` in scripts/testbed-versions.env), or `SKYFORM_OPA`; fails when it is missing.
//! It needs no testbed itself (the GCP emulator runs in process), so it can run alone with
//! `cargo test --features testbed --test policy_opa`.

mod policy_common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use policy_common::{Seed, baseline, root, text};
use serde_json::Value as J;

/// The `opa` binary: `SKYFORM_OPA`, else the testbed cache's build of the pinned version.
fn opa() -> PathBuf {
    if let Ok(p) = std::env::var("SKYFORM_OPA") {
        return PathBuf::from(p);
    }
    let versions = std::fs::read_to_string(root().join("scripts/testbed-versions.env")).unwrap();
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix("OPA_VERSION="))
        .expect("OPA_VERSION in scripts/testbed-versions.env")
        .trim()
        .to_string();
    let cache = std::env::var("SKYFORM_TESTBED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/skyform/testbed"));
    let bin = cache.join(format!("opa-{version}/bin/opa"));
    assert!(
        bin.is_file(),
        "the real OPA is missing at {}: build it with `scripts/testbed-build opa` (or set SKYFORM_OPA)",
        bin.display()
    );
    bin
}

/// One result, as both sides name it: (level, package, rule, message, id, address).
type Result6 = (String, String, String, String, Option<String>, Option<String>);

/// The results of every `deny*`/`warn*`/`violation*` rule under `data.skyform`, from OPA.
fn opa_results(opa: &Path, policies: &Path, input: &Path) -> BTreeSet<Result6> {
    let out = Command::new(opa)
        .args(["eval", "--format", "json", "--strict-builtin-errors", "-d"])
        .arg(policies)
        .arg("-i")
        .arg(input)
        .arg("data.skyform")
        .output()
        .expect("opa runs");
    assert!(out.status.success(), "opa eval failed: {}", text(&out));
    let doc: J = serde_json::from_slice(&out.stdout).unwrap();
    let tree = &doc["result"][0]["expressions"][0]["value"];
    let mut found = BTreeSet::new();
    collect(tree, &mut vec!["skyform".to_string()], &mut found);
    found
}

fn collect(node: &J, package: &mut Vec<String>, out: &mut BTreeSet<Result6>) {
    let Some(m) = node.as_object() else { return };
    for (k, v) in m {
        let level = ["deny", "violation", "warn"]
            .into_iter()
            .find(|f| k == f || k.strip_prefix(f).is_some_and(|r| r.starts_with('_')));
        match (level, v) {
            (Some(f), J::Array(items)) => {
                let level = if f == "warn" { "warn" } else { "deny" };
                for item in items {
                    let s = |key: &str| item.get(key).and_then(J::as_str).map(str::to_string);
                    let msg = item.as_str().map(str::to_string).or_else(|| s("msg")).expect("a message");
                    out.insert((level.into(), package.join("."), k.clone(), msg, s("id"), s("address")));
                }
            }
            (None, J::Object(_)) => {
                package.push(k.clone());
                collect(v, package, out);
                package.pop();
            }
            _ => {}
        }
    }
}

/// The same results as skyform recorded them in the plan.
fn skyform_results(doc: &J) -> BTreeSet<Result6> {
    let findings: Vec<skyform::policy::Finding> = serde_json::from_value(doc["policy"]["findings"].clone()).unwrap();
    findings.into_iter().map(|f| (f.level.as_str().to_string(), f.package, f.rule, f.msg, f.id, f.address)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opa_eval_gives_the_same_results_as_skyform() {
    let opa = opa();
    let seed = Seed::start().await;
    let features = root().join("testdata/policy/rego-features");
    // The last case opens the instance to the world (and to one private range) in the module.
    let cases: [(&str, &[&str]); 5] = [
        ("skypilot-iam.toml", &[]),
        ("skypilot-password.toml", &[]),
        (
            "skypilot-iam.toml",
            &[
                "--var",
                "deletion_protection=false",
                "--var",
                "proxy_image=gcr.io/cloud-sql-connectors/cloud-sql-proxy:latest",
            ],
        ),
        ("skypilot-password.toml", &["--var", "skip_resource_check=true", "--var", "chart_version=1.0.0-dev.20260808"]),
        ("skypilot-iam.toml", &["--var", "proxy_image=gcr.io/cloud-sql-connectors/cloud-sql-proxy"]),
    ];
    let mut compared = 0;
    let mut rules_seen = BTreeSet::new();
    for (policies, min_results) in [(baseline(), 1), (features, 4)] {
        let pol = policies.display().to_string();
        for (i, (file, extra)) in cases.iter().enumerate() {
            seed.restore();
            if i == cases.len() - 1 {
                seed.edit_module(
                    "authorized_networks = []",
                    r#"authorized_networks = [{ name = "all", value = "0.0.0.0/0" }, { name = "office", value = "10.0.0.0/8" }]"#,
                );
            }
            let plan_file = format!("case{i}.plan");
            let mut args = vec!["plan", "-f", file, "--var", "project=skyform-test", "--policy", &pol, "--json"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--out", &plan_file]);
            let out = seed.run(&args);
            assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
            let planned: J = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("no plan document ({e}):\n{}", text(&out)));
            // `show --json` of the saved plan is the same document: a valid input for opa.
            let shown = seed.run(&["show", "--json", &plan_file]);
            assert!(shown.status.success(), "{}", text(&shown));
            let shown_doc: J = serde_json::from_slice(&shown.stdout).unwrap();
            assert_eq!(shown_doc, planned, "show --json differs from plan --json");
            let input = seed.dir.path().join(format!("case{i}.json"));
            std::fs::write(&input, &shown.stdout).unwrap();

            let ours = skyform_results(&planned);
            let theirs = opa_results(&opa, &policies, &input);
            assert!(ours.len() >= min_results, "{pol} on case {i}: too few results to compare: {ours:?}");
            assert_eq!(ours, theirs, "{pol} on case {i} ({file} {extra:?}): skyform (left) and opa (right) differ");
            compared += ours.len();
            rules_seen.extend(ours.iter().map(|r| format!("{} {}.{}", r.0, r.1, r.2)));
            rules_seen.extend(ours.iter().filter_map(|r| r.4.clone()));
        }
    }
    assert!(compared > 30, "only {compared} results compared");
    for rule in [
        "deny skyform.skypilot.cloudsql.deny",
        "deny skyform.skypilot.helm.deny",
        "warn skyform.skypilot.auth.warn",
        "deny skyform.features.deny",
        "deny skyform.features.violation_images",
        "deny skyform.features.violation_registry",
        "warn skyform.features.warn",
        "F-DATA",
        "F-NET",
        "F-BUILTINS",
    ] {
        assert!(rules_seen.contains(rule), "no result of {rule} was compared: {rules_seen:?}");
    }
}

/// The baseline is also an ordinary OPA bundle: its own unit tests (`baseline_test.rego`, which
/// skyform skips) pass under `opa test`.
#[test]
fn the_baselines_own_tests_pass_under_opa_test() {
    let out = Command::new(opa()).args(["test", "--verbose"]).arg(baseline()).output().expect("opa runs");
    let all = text(&out);
    assert!(out.status.success(), "opa test failed:\n{all}");
    let passed = all.lines().find_map(|l| l.trim().strip_prefix("PASS: ")).unwrap_or_else(|| panic!("{all}"));
    let (n, of) = passed.split_once('/').unwrap_or_else(|| panic!("{all}"));
    assert_eq!(n, of, "{all}");
    assert!(n.parse::<u32>().unwrap() >= 8, "{all}");
}
