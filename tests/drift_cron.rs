//! Drift from cron, shipped and proven on the testbed (`specs/drift-cronjob.toml`):
//!
//! 1. The SkyPilot spec (IAM variant, the published chart and server in real pods) is applied with
//!    its state in a Cloud Storage bucket of the emulator (`[backend.gcs]` beside it).
//! 2. `scripts/skyform-image` builds the skyform image from the binary under test and pushes it to
//!    the testbed's writable registry (Debian's docker-registry), as a user pushes it to theirs.
//! 3. `specs/drift-cronjob.toml` deploys the CronJob: its own namespace and KSA, bound through
//!    Workload Identity to a read-only Google account, the spec in a ConfigMap, its secrets in a
//!    Secret, a local HTTP receiver (on the node's address, which pods reach) as the webhook.
//! 4. `kubectl create job --from=cronjob/skyform-drift`: the pod runs skyform on the real kubelet with
//!    the metadata server's token, reads everything and the bucket, finds no drift: the Job succeeds
//!    and nothing is posted. The API server is scaled to 0 by hand; the next Job fails, and the
//!    receiver gets the report naming the release's drift and the failing check, with no secret.
//! 5. "No more": the same identity running `skyform apply` is refused at the state lock
//!    (storage.objects.create), and the cluster refuses it every write (`kubectl auth can-i --as`).

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use skyform_testbed::{Testbed, unique_name};

mod http_common;
use http_common::Server;

const SKYFORM: &str = env!("CARGO_BIN_EXE_skyform");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A Job runs skyform in a fresh pod: image pull, every read, the spec's check (three attempts when it
/// fails).
const JOB_WITHIN: Duration = Duration::from_secs(480);

/// Non-secret values of the SkyPilot spec: a user with one small node (as tests/seed_pods.rs).
fn skypilot_vars(tb: &Testbed, project: &str, namespace: &str, release: &str) -> String {
    format!(
        r#"project = "{project}"
namespace = "{namespace}"
release_name = "{release}"
chart_repository = "{repo}"
chart_version = "1.0.0-dev.20260808"
deletion_protection = false
skip_resource_check = true
api_resources = {{ requests = {{ cpu = "250m", memory = "2Gi" }} }}
proxy_resources = {{ requests = {{ cpu = "50m", memory = "64Mi" }} }}
ingress_nginx = false
termination_grace_period = 5
"#,
        repo = tb.env["SKYFORM_TESTBED_HELM_REPO"]
    )
}

struct Setup {
    tb: &'static Testbed,
    dir: tempfile::TempDir,
    project: String,
    namespace: String,
    release: String,
    drift_ns: String,
    secrets: Vec<(&'static str, String)>,
    receiver: Server,
}

impl Drop for Setup {
    /// Removes the pods and the release whatever happened (the drift spec first: it reads the other).
    fn drop(&mut self) {
        let _ = self.skyform(&["destroy", "-f", "drift-cronjob.toml", "--auto-approve"]);
        let _ = self.skyform(&["destroy", "-f", "skypilot", "--var-file", "skypilot.vars.toml", "--auto-approve"]);
    }
}

impl Setup {
    fn skyform(&self, args: &[&str]) -> Output {
        let mut c = self.tb.command(SKYFORM);
        c.current_dir(self.dir.path()).env("NO_COLOR", "1").args(args).stdin(Stdio::null());
        for (k, v) in &self.secrets {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn skyform_ok(&self, args: &[&str]) -> String {
        let out = self.skyform(args);
        let text = both(&out);
        assert!(out.status.success(), "skyform {args:?} failed:\n{text}");
        self.assert_no_secret(&text, &format!("skyform {args:?}"));
        text
    }

    fn assert_no_secret(&self, text: &str, what: &str) {
        for (_, secret) in &self.secrets {
            assert!(!text.contains(secret.as_str()), "a secret appears in {what}");
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.tb.kubectl().args(args).output().unwrap()
    }

    /// Runs a Job made from the CronJob, as an operator does (`kubectl create job --from=cronjob/…`),
    /// or with other container arguments (`args`), and waits for its end: whether it succeeded, and
    /// its pod's log.
    fn run_job(&self, name: &str, args: Option<&[&str]>) -> (bool, String) {
        let from = ["create", "job", "--from=cronjob/skyform-drift", "-n", &self.drift_ns, name];
        let created = match args {
            None => self.kubectl(&from),
            Some(args) => {
                let out = self.kubectl(&[&from[..], &["--dry-run=client", "-o", "json"]].concat());
                assert!(out.status.success(), "kubectl create job --dry-run:\n{}", both(&out));
                let mut job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                job["spec"]["template"]["spec"]["containers"][0]["args"] = serde_json::json!(args);
                let mut child = self
                    .tb
                    .kubectl()
                    .args(["create", "-f", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                std::io::Write::write_all(child.stdin.as_mut().unwrap(), job.to_string().as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        assert!(created.status.success(), "kubectl create job {name}:\n{}", both(&created));
        let start = Instant::now();
        let succeeded = loop {
            let out = self.kubectl(&[
                "get",
                "job",
                name,
                "-n",
                &self.drift_ns,
                "-o",
                "jsonpath={.status.succeeded}/{.status.failed}",
            ]);
            let status = String::from_utf8_lossy(&out.stdout).into_owned();
            match status.split_once('/') {
                Some((s, _)) if s.parse::<u32>().unwrap_or(0) > 0 => break true,
                Some((_, f)) if f.parse::<u32>().unwrap_or(0) > 0 => break false,
                _ => {}
            }
            if start.elapsed() > JOB_WITHIN {
                let pods = self.kubectl(&["describe", "pods", "-n", &self.drift_ns, "-l", &format!("job-name={name}")]);
                panic!("job {name} did not end within {JOB_WITHIN:?}:\n{}", both(&pods));
            }
            std::thread::sleep(Duration::from_secs(2));
        };
        let logs = both(&self.kubectl(&["logs", &format!("job/{name}"), "-n", &self.drift_ns, "--tail=-1"]));
        eprintln!(
            "job {name} {} after {:?}; its log:\n{logs}",
            if succeeded { "succeeded" } else { "failed" },
            start.elapsed()
        );
        self.assert_no_secret(&logs, &format!("job {name}'s log"));
        (succeeded, logs)
    }

    /// The emulator's API call counts by method name.
    /// The GCP calls `email` has made so far, by method, as the emulator counted them (other tests
    /// may share the emulator: the count per caller is this identity's alone).
    fn gcp_calls(&self, email: &str) -> std::collections::BTreeMap<String, i64> {
        let stats: serde_json::Value =
            serde_json::from_str(&self.tb.emulator_admin("GET", "/_emulator/stats")).unwrap_or_default();
        stats["by_caller"][email]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0))).collect())
            .unwrap_or_default()
    }

    /// `kubectl auth can-i VERB RESOURCE -n NS --as EMAIL`: what the cluster lets the account do.
    fn can_i(&self, email: &str, verb: &str, resource: &str, namespace: &str) -> bool {
        let out = self.kubectl(&["auth", "can-i", verb, resource, "-n", namespace, "--as", email]);
        // "yes", or "no" and the authorizers' reasons.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let answer = text.split_whitespace().next().unwrap_or_default();
        assert!(answer == "yes" || answer == "no", "kubectl auth can-i {verb} {resource}: {}", both(&out));
        eprintln!("can {email} {verb} {resource} in {namespace}? {}", text.trim());
        answer == "yes"
    }
}

#[test]
fn the_drift_cronjob_runs_read_only_on_the_node_and_fails_on_drift() {
    let tb = Testbed::get();
    let dir = tempfile::tempdir().unwrap();
    let project = unique_name("cron");
    let namespace = unique_name("cron-sky");
    let release = unique_name("sky");
    let drift_ns = unique_name("cron-drift");
    let bucket = unique_name("cron-state");
    let n = std::process::id();
    let secrets = vec![
        ("SKYFORM_VAR_root_password", format!("root-{n}-pw")),
        ("SKYFORM_VAR_web_password", format!("web-{n}-pw")),
    ];
    // Pods reach the node's address; the receiver stands for a Slack webhook.
    let receiver = Server::start_on(&tb.env["SKYFORM_TESTBED_NODE_IP"], &[(200, "ok")]);
    let s = Setup { tb, dir, project, namespace, release, drift_ns, secrets, receiver };
    let d = s.dir.path();

    // 1. The SkyPilot spec, its state in a bucket.
    let sky = d.join("skypilot");
    std::fs::create_dir_all(sky.join("modules")).unwrap();
    std::fs::copy(format!("{ROOT}/specs/skypilot-iam.toml"), sky.join("main.toml")).unwrap();
    skyform_testbed::copy_dir(
        Path::new(&format!("{ROOT}/specs/modules/skypilot-gke-cloudsql")),
        &sky.join("modules/skypilot-gke-cloudsql"),
    );
    std::fs::write(
        sky.join("backend.toml"),
        format!("[backend.gcs]\nbucket = \"{bucket}\"\nprefix = \"skypilot/prod\"\n"),
    )
    .unwrap();
    std::fs::write(d.join("skypilot.vars.toml"), skypilot_vars(tb, &s.project, &s.namespace, &s.release)).unwrap();
    let made = tb
        .gcloud()
        .args(["storage", "buckets", "create", &format!("gs://{bucket}"), "--project", &s.project])
        .output()
        .unwrap();
    assert!(made.status.success(), "gcloud storage buckets create:\n{}", both(&made));
    let applied = s.skyform_ok(&["apply", "-f", "skypilot", "--var-file", "skypilot.vars.toml", "--auto-approve"]);
    assert!(applied.contains("check.api_health: Check passed"), "{applied}");
    assert!(!sky.join(".skyform").exists(), "the state went to the bucket, not beside the spec");

    // 2. The image, from the binary under test, pushed as a user pushes it.
    // The testbed's writable registry (SKYFORM_TESTBED_REGISTRY) by its name, as a private one.
    let image = format!("{}/skyform/skyform:{}", tb.env["SKYFORM_TESTBED_REGISTRY"], unique_name("t"));
    let built = tb
        .command(format!("{ROOT}/scripts/skyform-image"))
        .args(["--binary", SKYFORM, "--out"])
        .arg(d.join("skyform-image.tar"))
        .args(["--push", &image, "--plain-http"])
        .output()
        .unwrap();
    assert!(built.status.success(), "scripts/skyform-image:\n{}", both(&built));

    // 3. The CronJob.
    std::fs::copy(format!("{ROOT}/specs/drift-cronjob.toml"), d.join("drift-cronjob.toml")).unwrap();
    let drift_vars = format!(
        r#"project = "{project}"
skypilot_namespace = "{namespace}"
namespace = "{drift_ns}"
image = "{image}"
state_bucket = "{bucket}"
state_prefix = "skypilot/prod"
skypilot_spec = "skypilot/main.toml"
skypilot_module = "skypilot/modules/skypilot-gke-cloudsql/main.toml"
skypilot_var_file = "skypilot.vars.toml"
schedule = "0 3 * * *"
"#,
        project = s.project,
        namespace = s.namespace,
        drift_ns = s.drift_ns,
    );
    std::fs::write(d.join("drift.vars.toml"), drift_vars).unwrap();
    let url = s.receiver.url("/hooks/T0/B1/tok-cron-4242");
    let drift_apply = {
        let mut c = tb.command(SKYFORM);
        c.current_dir(d)
            .env("NO_COLOR", "1")
            .env("SKYFORM_VAR_notify_url", &url)
            .args(["apply", "-f", "drift-cronjob.toml", "--var-file", "drift.vars.toml", "--auto-approve"])
            .stdin(Stdio::null());
        for (k, v) in &s.secrets {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let text = both(&drift_apply);
    assert!(drift_apply.status.success(), "apply of drift-cronjob.toml:\n{text}");
    s.assert_no_secret(&text, "the CronJob's apply");
    assert!(!text.contains(&url), "the webhook URL is a credential: never printed\n{text}");
    let cronjob = both(&s.kubectl(&["get", "cronjob", "skyform-drift", "-n", &s.drift_ns, "-o", "json"]));
    assert!(
        cronjob.contains("\"schedule\": \"0 3 * * *\"") && !cronjob.contains(&url),
        "the URL stays in the Secret:\n{cronjob}"
    );
    let email = format!("skyform-drift@{}.iam.gserviceaccount.com", s.project);

    // 4. No drift: the Job succeeds, nothing is posted.
    let before = s.gcp_calls(&email);
    let (ok, log) = s.run_job("drift-1", None);
    // What one run costs in GCP calls: the Job's identity's, whatever else shares the emulator.
    let after = s.gcp_calls(&email);
    let calls: Vec<String> = after
        .iter()
        .filter_map(|(k, v)| Some((k, v - before.get(k).copied().unwrap_or(0))).filter(|(_, d)| *d > 0))
        .map(|(k, d)| format!("{k} {d}"))
        .collect();
    eprintln!("GCP calls during a drift run without findings: {}", calls.join(", "));
    assert!(!calls.is_empty(), "the Job's identity made no GCP call: did it run as {email}?");
    // A drift reads; it writes nothing, not even a lock.
    let writes: Vec<&String> = calls
        .iter()
        .filter(|c| {
            ["insert ", "patch ", "update ", "delete ", "create ", "setIamPolicy ", "enable ", "disable "]
                .iter()
                .any(|w| c.contains(w))
        })
        .collect();
    assert!(writes.is_empty(), "a drift run wrote: {writes:?}");
    assert!(ok, "the first run must find no drift:\n{log}");
    assert!(log.contains("No drift"), "{log}");
    assert!(s.receiver.requests().is_empty(), "nothing is posted without findings: {:?}", s.receiver.requests());

    // Changed by hand: the API server scaled to 0.
    let deployment = format!("deployment/{}-api-server", s.release);
    let scaled = s.kubectl(&["scale", &deployment, "-n", &s.namespace, "--replicas=0"]);
    assert!(scaled.status.success(), "{}", both(&scaled));
    let (ok, log) = s.run_job("drift-2", None);
    assert!(!log.contains(&url), "{log}");
    assert!(!ok, "the run after a change by hand must fail the Job:\n{log}");
    assert!(log.contains("helm_release.skypilot") && log.contains("check.api_health"), "{log}");
    let posts = s.receiver.requests();
    assert_eq!(posts.len(), 1, "one report is posted: {posts:?}");
    let post = &posts[0];
    eprintln!("what the receiver got:\n{post}");
    assert!(post.starts_with("POST /hooks/T0/B1/tok-cron-4242 "), "{post}");
    let body: serde_json::Value = serde_json::from_str(post.split("\r\n\r\n").nth(1).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {post}"));
    let text = body["text"].as_str().unwrap_or_default();
    assert!(text.contains("drift"), "{body}");
    let findings = body["skyform_report"]["findings"].as_array().cloned().unwrap_or_default();
    let named = |addr: &str| findings.iter().any(|f| f["address"].as_str().is_some_and(|a| a.contains(addr)));
    assert!(
        named("helm_release.skypilot") && named("check.api_health"),
        "the report names the drift and the check: {body}"
    );
    s.assert_no_secret(post, "the posted report");

    // 5. No more than reading. The cluster: reads yes, Secrets only in the SkyPilot namespace, no write.
    assert!(s.can_i(&email, "get", "pods", &s.namespace));
    assert!(s.can_i(&email, "list", "secrets", &s.namespace));
    assert!(!s.can_i(&email, "get", "secrets", "kube-system"));
    for (verb, resource) in
        [("patch", "deployments"), ("create", "configmaps"), ("delete", "secrets"), ("update", "services")]
    {
        assert!(!s.can_i(&email, verb, resource, &s.namespace), "{email} may {verb} {resource}");
    }
    // Google: the identity's apply is refused at the lock, before any change.
    let (ok, log) = s
        .run_job("apply-refused", Some(&["apply", "-f", "/spec", "--var-file", "/values/vars.toml", "--auto-approve"]));
    assert!(!ok, "an apply with the read-only identity must fail:\n{log}");
    assert!(log.contains("storage.objects.create"), "refused at the lock, naming the permission:\n{log}");
    let replicas = s.kubectl(&["get", &deployment, "-n", &s.namespace, "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(String::from_utf8_lossy(&replicas.stdout), "0", "the refused apply changed nothing");

    // The engineer's apply repairs it; the cron is green again.
    let repaired = s.skyform_ok(&["apply", "-f", "skypilot", "--var-file", "skypilot.vars.toml", "--auto-approve"]);
    assert!(repaired.contains("check.api_health: Check passed"), "{repaired}");
    let (ok, log) = s.run_job("drift-3", None);
    assert!(ok, "after the repair the run finds no drift:\n{log}");
    assert_eq!(s.receiver.requests().len(), 1, "no new post without findings");
}

fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
