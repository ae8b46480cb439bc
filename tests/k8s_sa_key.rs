//! A service-account key shown only at creation, put into a Kubernetes Secret
//! (the seed's `cloud-sql-credentials`): the next plan is clean (the live Secret
//! is compared with the fingerprint in state, never stored in clear), and a
//! Secret edited outside makes the plan replace the key and rewrite the Secret.
//! GCP emulator and kube-apiserver of the testbed, through the `skyform` binary.

use std::process::{Command, Output, Stdio};

use skyform_testbed::{Testbed, run_ok};

fn skyform(tb: &Testbed, dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(args)
        .current_dir(dir)
        .envs(&tb.env)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("PRIVATE KEY"), "a private key leaked:\n{stdout}");
    stdout
}

fn key_in_secret(tb: &Testbed, ns: &str) -> String {
    run_ok(tb.kubectl().args([
        "get",
        "secret",
        "cloud-sql-credentials",
        "-n",
        ns,
        "-o",
        r"jsonpath={.data.service-account-key\.json}",
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_shown_once_in_a_secret_is_compared_by_fingerprint_and_replaced_when_lost() {
    let tb = Testbed::get();
    let project = tb.unique_project("skyform-key");
    let ns = tb.namespace("skyform-key").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        r#"
[provider.gcp]
project = "{project}"

[provider.kubernetes]
kubeconfig = "{kubeconfig}"

[resource.gcp_project_service.iam]
service = "iam.googleapis.com"

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"
depends_on = ["gcp_project_service.iam"]

[resource.gcp_service_account_key.key]
service_account = "${{gcp_service_account.sa.email}}"

[resource.k8s_secret.credentials]
name = "cloud-sql-credentials"
namespace = "{ns}"
data = {{ "service-account-key.json" = "${{gcp_service_account_key.key.private_key_json}}" }}
"#,
        kubeconfig = tb.kubeconfig.display(),
    );
    std::fs::write(dir.path().join("main.toml"), spec).unwrap();
    ok(&skyform(tb, dir.path(), &["apply", "--auto-approve"]));
    let first = key_in_secret(tb, &ns);
    assert!(!first.is_empty());
    for entry in std::fs::read_dir(dir.path().join(".skyform")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains("PRIVATE KEY") && !text.contains(&first), "state holds the key");
    }
    let again = skyform(tb, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));

    // The Secret loses the key: the only way back is a new key.
    run_ok(tb.kubectl().args([
        "patch",
        "secret",
        "cloud-sql-credentials",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"stringData":{"service-account-key.json":"{}"}}"#,
    ]));
    let plan = skyform(tb, dir.path(), &["plan", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert_eq!(plan.status.code(), Some(2), "{text}");
    assert!(
        text.contains("gcp_service_account_key.key must be replaced")
            || text.contains("gcp_service_account_key.key will be replaced"),
        "{text}"
    );
    ok(&skyform(tb, dir.path(), &["apply", "--auto-approve"]));
    let second = key_in_secret(tb, &ns);
    assert!(!second.is_empty() && second != first);
    let again = skyform(tb, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));
    ok(&skyform(tb, dir.path(), &["destroy", "--auto-approve"]));
}
