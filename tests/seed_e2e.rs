//! The main job, end to end, as a test: both variants of the seed deployment
//! (IAM authentication with Workload Identity; password authentication with a
//! service-account key) planned, applied, the published SkyPilot chart's API
//! server healthy in real pods (its Cloud SQL Auth Proxy sidecar connecting with
//! the identity skyform granted), its tables in Cloud SQL owned by that identity,
//! re-planned clean, changed by hand with gcloud and kubectl, reported by `drift`
//! (exit 2), repaired, healthy again, and destroyed, on the testbed's real
//! kube-apiserver and node, real helm, the GCP emulator and real PostgreSQL.
//! This is `scripts/demo both --destroy`, run against the binary cargo built for
//! the tests.

use std::process::Command;

#[test]
fn both_seed_variants_converge_drift_is_reported_and_repaired() {
    // Fails loudly when the testbed cannot be brought up.
    let tb = skyform_testbed::Testbed::get();
    // The emulator is shared: hold this run's requests and answers to Google's contract.
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/scripts/demo"))
        .args(["both", "--destroy"])
        .env("SKYFORM_BIN", env!("CARGO_BIN_EXE_skyform"))
        .output()
        .expect("scripts/demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/demo failed:\n{stdout}\n{stderr}");
    for v in ["iam", "password"] {
        assert!(stdout.contains(&format!("==> [{v}] done")), "{v} did not finish:\n{stdout}");
    }
    assert_eq!(stdout.matches("No changes. The live objects match the spec.").count(), 2, "{stdout}");
    // Healthy after the first apply and again after the repair, per variant: /api/health answered by
    // the server through the Service, with the chart's basic-auth setting seen by the server.
    let healthy: Vec<&str> = stdout.lines().filter(|l| l.starts_with("healthy after ")).collect();
    assert_eq!(healthy.len(), 4, "{stdout}");
    for line in healthy {
        assert!(line.contains(r#""version":"1.0.0.dev20260808""#), "{line}");
        assert!(line.contains(r#""ingress_basic_auth_enabled":true"#), "{line}");
    }
    assert_eq!(stdout.matches(" tables\n").count(), 2, "the tables were listed for each variant:\n{stdout}");
    // apply ends with the spec's check on /api/health passing (the first apply and the repair), and
    // `skyform check` alone passes; the server scaled to 0 by hand is a failing check in drift.
    assert_eq!(stdout.matches("Checks apply will run:\n  check.api_health: GET service ").count(), 8, "{stdout}");
    assert_eq!(stdout.matches("check.api_health: Check passed after").count(), 6, "{stdout}");
    assert_eq!(stdout.matches("\nChecks: 1 passed.").count(), 6, "{stdout}");
    assert_eq!(stdout.matches("1 checks: 1 passed, 0 failed.").count(), 2, "{stdout}");
    assert_eq!(
        stdout
            .matches("4 findings: 3 changed_outside, 0 deleted_outside, 0 pending_spec_change, 1 check_failed.")
            .count(),
        2,
        "{stdout}"
    );
    assert_eq!(stdout.matches("! check.api_health [check_failed]: the check fails").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("No drift: the live objects, the state and the spec agree.").count(), 2, "{stdout}");
    assert!(stdout.contains("Destroy complete! Resources: 0 added, 0 changed, 0 replaced, 15 destroyed."));
    assert!(stdout.contains("Destroy complete! Resources: 0 added, 0 changed, 0 replaced, 14 destroyed."));
    // Neither skyform nor gcloud sent anything Google would refuse for the demo's projects; the
    // emulator answered within it. (Other test binaries may share the emulator at the same time: what
    // they send is theirs to judge.)
    let projects: Vec<&str> =
        stdout.lines().filter_map(|l| l.split_once(", project ").map(|(_, p)| p.trim_end_matches(')'))).collect();
    assert_eq!(projects.len(), 2, "the demo names each variant's project:\n{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&tb.emulator_admin("GET", "/_emulator/contract")).expect("the contract record");
    for kind in ["defects", "responseDefects"] {
        let list = record[kind].as_array().unwrap_or_else(|| panic!("no {kind} in {record}"));
        let ours: Vec<&serde_json::Value> = list
            .iter()
            .filter(|d| projects.iter().any(|p| d["request"].as_str().unwrap_or_default().contains(p)))
            .collect();
        assert!(ours.is_empty(), "outside Google's contract ({kind}): {ours:?}");
    }
}
