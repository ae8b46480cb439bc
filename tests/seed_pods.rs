//! Failures real users hit, on the real stack: the published SkyPilot chart and API server in pods on
//! the testbed's node, its Cloud SQL Auth Proxy sidecar reaching the GCP emulator's instance with the
//! identity skyform granted.
//!
//! - IAM variant: the Workload Identity binding removed with gcloud → a restarted pod never becomes
//!   ready (the metadata server refuses the proxy a token) → `skyform drift` names the binding →
//!   `skyform apply` recreates it → healthy again, with no hand on the pod.
//! - Password variant: the proxy's key deleted with gcloud → a restarted pod never becomes ready (the
//!   token endpoint refuses the key) → `drift` names the key → `apply` makes a new key and Secret →
//!   healthy again.
//! - A chart upgrade (1.0.0-dev.20260807 → 1.0.0-dev.20260808, each with its own server image) rolls
//!   the Deployment and ends healthy on the new server version.
//! - A proxy image that does not exist: apply waits for the API server, then fails saying why (the
//!   Deployment, its pod, the container's ImagePullBackOff, the events); fixing the spec converges.
//! - The spec's check on `/api/health` (with skyform's readiness wait off, so that the check is what
//!   waits) fails the apply and says why for two real mistakes: the database grant left out (the
//!   server cannot create its tables) and the proxy's `--auto-iam-authn` left out (the database
//!   refuses the login); drift names the failing check when the Workload Identity binding or the
//!   proxy's key is deleted by hand. The spec as published then converges in one apply.
//!
//! Each test deploys its own project, namespace and release on the shared testbed.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use skyform_testbed::{Testbed, unique_name};

const SKYFORM: &str = env!("CARGO_BIN_EXE_skyform");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How long a pod may take to become healthy: image pull, the proxy's start, the server's migrations,
/// and after a repair the kubelet's crash-loop back-off (at most 5 minutes, as on any node).
const HEALTHY_WITHIN: Duration = Duration::from_secs(420);

/// A user with one small node: lower requests, no ingress-nginx (its images are pinned by digest).
/// The requests are low enough for the deployments of the test binaries that run side by side
/// (`scripts/test-all`) to fit the node's 2 CPUs together. The server's termination grace is 5 s, not
/// the chart's 60: no test here measures it, and every restart, rollout and destroy would wait for it.
const SMALL_NODE: &str = r#"
skip_resource_check = true
api_resources = { requests = { cpu = "250m", memory = "2Gi" } }
proxy_resources = { requests = { cpu = "50m", memory = "64Mi" } }
ingress_nginx = false
termination_grace_period = 5
"#;

struct Deployment {
    tb: &'static Testbed,
    variant: &'static str,
    project: String,
    namespace: String,
    release: String,
    chart_version: String,
    dir: tempfile::TempDir,
    secrets: Vec<(&'static str, String)>,
    /// More `--var name=value` arguments.
    vars: Vec<String>,
    destroyed: bool,
}

impl Drop for Deployment {
    /// A failed test still removes its pods, so that the node's CPU goes to the tests that follow.
    fn drop(&mut self) {
        if !self.destroyed {
            let _ = self.skyform("destroy", &["--auto-approve"]);
        }
    }
}

impl Deployment {
    fn new(variant: &'static str, chart_version: &str) -> Self {
        let tb = Testbed::get();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(format!("{ROOT}/specs/skypilot-{variant}.toml"), dir.path().join("main.toml")).unwrap();
        skyform_testbed::copy_dir(std::path::Path::new(&format!("{ROOT}/specs/modules")), &dir.path().join("modules"));
        std::fs::write(dir.path().join("small-node.toml"), SMALL_NODE).unwrap();
        let n = std::process::id();
        let mut secrets = vec![
            ("SKYFORM_VAR_root_password", format!("root-{n}-pw")),
            ("SKYFORM_VAR_web_password", format!("web-{n}-pw")),
        ];
        if variant == "password" {
            secrets.push(("SKYFORM_VAR_db_password", format!("db-{n}-pw")));
        }
        Deployment {
            tb,
            variant,
            project: unique_name(&format!("pods-{variant}")),
            namespace: unique_name(&format!("pods-{variant}")),
            release: unique_name("sky"),
            chart_version: chart_version.to_string(),
            dir,
            secrets,
            vars: Vec::new(),
            destroyed: false,
        }
    }

    fn skyform(&self, verb: &str, extra: &[&str]) -> Output {
        let mut c = self.tb.command(SKYFORM);
        c.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .args(verb.split(' '))
            .args(["-f", "main.toml", "--var-file", "small-node.toml"])
            .args(["--var", &format!("project={}", self.project)])
            .args(["--var", &format!("namespace={}", self.namespace)])
            .args(["--var", &format!("release_name={}", self.release)])
            .args(["--var", &format!("chart_repository={}", self.tb.env["SKYFORM_TESTBED_HELM_REPO"])])
            .args(["--var", &format!("chart_version={}", self.chart_version)])
            .args(["--var", "deletion_protection=false"])
            .args(self.vars.iter().flat_map(|v| ["--var", v.as_str()]))
            .args(extra)
            .stdin(Stdio::null());
        for (k, v) in &self.secrets {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn skyform_ok(&self, verb: &str, extra: &[&str]) -> String {
        let out = self.skyform(verb, extra);
        let text = both(&out);
        assert!(out.status.success(), "skyform {verb} failed:\n{text}");
        for (_, secret) in &self.secrets {
            assert!(!text.contains(secret.as_str()), "a secret was printed by skyform {verb}");
        }
        text
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.tb.kubectl().args(["-n", &self.namespace]).args(args).output().unwrap()
    }

    fn gcloud_ok(&self, args: &[&str]) -> String {
        let out = self.tb.gcloud().args(args).args(["--project", &self.project]).output().unwrap();
        assert!(out.status.success(), "gcloud {args:?} failed:\n{}", both(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn gsa(&self) -> String {
        format!("skypilot-cloud-sql-access@{}.iam.gserviceaccount.com", self.project)
    }

    /// `/api/health` through the apiserver's service proxy, when it answers.
    fn health(&self) -> Option<String> {
        let path =
            format!("/api/v1/namespaces/{}/services/{}-api-service:80/proxy/api/health", self.namespace, self.release);
        let out = self.tb.kubectl().args(["get", "--raw", &path]).output().ok()?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && body.contains(r#""status":"healthy""#)).then_some(body)
    }

    fn wait_healthy(&self, what: &str) -> (String, Duration) {
        let start = Instant::now();
        while start.elapsed() < HEALTHY_WITHIN {
            if let Some(body) = self.health() {
                eprintln!("[{}] {what}: healthy after {:?}", self.variant, start.elapsed());
                return (body, start.elapsed());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let pods = self.kubectl(&["describe", "pods"]);
        panic!("[{}] {what}: not healthy after {HEALTHY_WITHIN:?}; pods:\n{}", self.variant, both(&pods));
    }

    /// The label selector of the API server's pods (`app: <release>-api`).
    fn pods(&self) -> String {
        format!("app={}-api", self.release)
    }

    /// Deletes the API server's pod; its ReplicaSet makes a new one.
    fn restart_pod(&self) {
        let out = self.kubectl(&["delete", "pods", "-l", &self.pods(), "--wait=true"]);
        let text = both(&out);
        assert!(out.status.success() && text.contains("deleted"), "no pod was deleted: {text}");
    }

    /// Watches the new pod for `window`: it must never become Ready (nor the health answer).
    fn never_ready(&self, window: Duration) {
        let start = Instant::now();
        let mut saw_pod = false;
        while start.elapsed() < window {
            let out = self.kubectl(&[
                "get",
                "pods",
                "-l",
                &self.pods(),
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            saw_pod |= !text.trim().is_empty();
            assert!(!text.contains(" True"), "[{}] the restarted pod became ready: {text}", self.variant);
            assert!(self.health().is_none(), "[{}] the API server answered healthy", self.variant);
            std::thread::sleep(Duration::from_secs(3));
        }
        assert!(saw_pod, "[{}] no pod was made after the restart", self.variant);
    }

    fn destroy(mut self) {
        self.skyform_ok("destroy", &["--auto-approve"]);
        self.destroyed = true;
    }
}

fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `skyform drift`: exit 2, the findings name `address` as deleted outside, and the spec's check on
/// `/api/health` fails, saying that the API server's pod is not ready and why.
fn assert_drift_names(d: &Deployment, address: &str) {
    let out = d.skyform("drift", &[]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(2), "drift must report (exit 2):\n{text}");
    let line =
        text.lines().find(|l| l.contains(address)).unwrap_or_else(|| panic!("drift does not name {address}:\n{text}"));
    assert!(text.contains("deleted_outside"), "{line}\n{text}");
    assert!(text.contains("! check.api_health [check_failed]: the check fails"), "{text}");
    let deployment = format!("Deployment/{}/{}-api-server", d.namespace, d.release);
    assert!(text.contains(&deployment) && text.contains("pod "), "the check says what the release's pods do:\n{text}");
    // Nothing else: the release's values were not touched (a key known only as a fingerprint once
    // made its `values_yaml` read as absent).
    assert!(!text.contains("values_yaml"), "drift reports values nobody changed:\n{text}");
    for (_, secret) in &d.secrets {
        assert!(!text.contains(secret.as_str()), "a secret was printed");
    }
    eprintln!("[{}] what drift says with {address} gone:\n{text}", d.variant);
}

/// Applies a spec that breaks the API server without breaking any resource (`edit` changes the spec),
/// with skyform's readiness wait off so that the spec's check is what waits: apply applies everything,
/// then fails on the check, whose message says what the API server's pod does and its log. Then the
/// spec as published converges in one apply, ending healthy.
fn a_failing_check_says_why(d: &mut Deployment, what: &str, edit: &[(&str, &str)], wants: &[&str]) {
    let path = d.dir.path().join("main.toml");
    let published = std::fs::read_to_string(&path).unwrap();
    // The check gives up after 60 s instead of 5 min: the server fails within seconds of its start.
    let mut broken = published.replace("timeout = \"5m\"\n", "timeout = \"60s\"\n");
    for (from, to) in edit {
        assert!(broken.contains(from), "the spec no longer holds {from:?}");
        broken = broken.replace(from, to);
    }
    std::fs::write(&path, broken).unwrap();
    d.vars = vec!["wait_until_ready=false".into()];
    let out = d.skyform("apply", &["--auto-approve"]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "[{what}] the apply must fail on its check:\n{text}");
    assert!(text.contains("Apply complete! Resources: "), "[{what}] every change is applied first:\n{text}");
    let error = text
        .lines()
        .position(|l| l.starts_with("error: check.api_health: GET service "))
        .unwrap_or_else(|| panic!("[{what}] no check error:\n{text}"));
    let message: Vec<&str> =
        text.lines().skip(error).take_while(|l| l.starts_with("error: ") || l.starts_with("  ")).collect();
    let message = message.join("\n");
    let deployment = format!("Deployment/{}/{}-api-server", d.namespace, d.release);
    for want in ["failing after ", "helm_release.skypilot: release ", "objects not ready:", deployment.as_str(), "pod "]
    {
        assert!(message.contains(want), "[{what}] the check's message does not say {want:?}:\n{message}");
    }
    assert!(wants.iter().any(|w| message.contains(w)), "[{what}] the message says none of {wants:?}:\n{message}");
    for (_, secret) in &d.secrets {
        assert!(!text.contains(secret.as_str()), "a secret was printed");
    }
    eprintln!("[{what}] what the failing check says:\n{message}");

    std::fs::write(&path, published).unwrap();
    d.vars.clear();
    let fixed = d.skyform_ok("apply", &["--auto-approve"]);
    assert!(fixed.contains("check.api_health: Check passed"), "[{what}] {fixed}");
    assert!(d.health().is_some(), "[{what}] apply ended before the API server was healthy");
}

#[test]
fn no_database_grant_is_a_failing_check_that_says_why() {
    let mut d = Deployment::new("iam", "1.0.0-dev.20260808");
    // The IAM user without `cloudsqlsuperuser` cannot create the server's tables.
    a_failing_check_says_why(
        &mut d,
        "no grant",
        &[
            (
                "[resource.postgres_grant.iam_superuser]\nrole",
                "[resource.postgres_grant.iam_superuser]\ncount = 0\nrole",
            ),
            ("  \"postgres_grant.iam_superuser\",\n", ""),
        ],
        &["permission denied", "InsufficientPrivilege"],
    );
    d.destroy();
}

#[test]
fn a_wrong_proxy_flag_is_a_failing_check_that_says_why() {
    let mut d = Deployment::new("iam", "1.0.0-dev.20260808");
    // Without --auto-iam-authn the proxy passes no token: the database refuses the IAM user's login.
    a_failing_check_says_why(
        &mut d,
        "proxy flag",
        &[("  \"--auto-iam-authn\",\n", "")],
        &["password authentication failed", "authentication", "no password"],
    );
    d.destroy();
}

#[test]
fn workload_identity_binding_removed_by_hand_then_repaired() {
    let d = Deployment::new("iam", "1.0.0-dev.20260808");
    let started = Instant::now();
    d.skyform_ok("apply", &["--auto-approve"]);
    let (body, _) = d.wait_healthy("after apply");
    eprintln!("[iam] from apply start to healthy: {:?}", started.elapsed());
    assert!(body.contains(r#""version":"1.0.0.dev20260808""#), "{body}");

    let member = format!("serviceAccount:{}.svc.id.goog[{}/skypilot-api-sa]", d.project, d.namespace);
    d.gcloud_ok(&[
        "iam",
        "service-accounts",
        "remove-iam-policy-binding",
        &d.gsa(),
        "--member",
        &member,
        "--role",
        "roles/iam.workloadIdentityUser",
        "--format",
        "none",
    ]);
    d.restart_pod();
    d.never_ready(Duration::from_secs(45));
    // Why: the metadata server refused the proxy's sidecar a token, and the server could not log in.
    let proxy = d.kubectl(&["logs", "-l", &d.pods(), "-c", "cloud-sql-proxy", "--tail=50"]);
    let proxy_log = both(&proxy);
    assert!(proxy_log.contains("403") || proxy_log.contains("workloadIdentityUser"), "proxy log:\n{proxy_log}");

    assert_drift_names(&d, "gcp_service_account_iam_member.workload_identity");
    let applied = d.skyform_ok("apply", &["--auto-approve"]);
    assert!(applied.contains("gcp_service_account_iam_member.workload_identity: Creat"), "{applied}");
    let (_, took) = d.wait_healthy("after the repair");
    eprintln!("[iam] healthy {took:?} after the repair, with no hand on the pod");
    let out = d.skyform("plan", &["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    d.destroy();
}

#[test]
fn proxy_key_deleted_by_hand_then_repaired() {
    let d = Deployment::new("password", "1.0.0-dev.20260808");
    let started = Instant::now();
    d.skyform_ok("apply", &["--auto-approve"]);
    d.wait_healthy("after apply");
    eprintln!("[password] from apply start to healthy: {:?}", started.elapsed());

    let keys = d.gcloud_ok(&[
        "iam",
        "service-accounts",
        "keys",
        "list",
        "--iam-account",
        &d.gsa(),
        "--managed-by",
        "user",
        "--format",
        "value(name.basename())",
    ]);
    let keys: Vec<&str> = keys.split_whitespace().collect();
    assert_eq!(keys.len(), 1, "one user-managed key: {keys:?}");
    d.gcloud_ok(&["iam", "service-accounts", "keys", "delete", keys[0], "--iam-account", &d.gsa(), "--quiet"]);
    d.restart_pod();
    d.never_ready(Duration::from_secs(45));
    let proxy = d.kubectl(&["logs", "-l", &d.pods(), "-c", "cloud-sql-proxy", "--tail=50"]);
    let proxy_log = both(&proxy);
    assert!(proxy_log.contains("invalid_grant") || proxy_log.contains("oauth2"), "proxy log:\n{proxy_log}");

    assert_drift_names(&d, "gcp_service_account_key.proxy");
    let applied = d.skyform_ok("apply", &["--auto-approve"]);
    assert!(applied.contains("gcp_service_account_key.proxy: Creat"), "{applied}");
    let (_, took) = d.wait_healthy("after the repair");
    eprintln!("[password] healthy {took:?} after the repair, with no hand on the pod");
    d.destroy();
}

#[test]
fn chart_upgrade_rolls_the_deployment_and_ends_healthy() {
    let mut d = Deployment::new("iam", "1.0.0-dev.20260807");
    d.skyform_ok("apply", &["--auto-approve"]);
    let (body, _) = d.wait_healthy("on chart 1.0.0-dev.20260807");
    assert!(body.contains(r#""version":"1.0.0.dev20260807""#), "{body}");
    let pod_of = |d: &Deployment| {
        let out = d.kubectl(&["get", "pods", "-l", &d.pods(), "-o", "jsonpath={.items[*].metadata.name}"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = pod_of(&d);
    assert!(!before.is_empty(), "the API server's pod");

    d.chart_version = "1.0.0-dev.20260808".into();
    let plan = d.skyform("plan", &["--detailed-exitcode"]);
    let plan_text = both(&plan);
    assert_eq!(plan.status.code(), Some(2), "{plan_text}");
    assert!(plan_text.contains("1.0.0-dev.20260807") && plan_text.contains("1.0.0-dev.20260808"), "{plan_text}");
    d.skyform_ok("apply", &["--auto-approve"]);
    let start = Instant::now();
    loop {
        if let Some(body) = d.health()
            && body.contains(r#""version":"1.0.0.dev20260808""#)
        {
            break;
        }
        assert!(
            start.elapsed() < HEALTHY_WITHIN,
            "not healthy on the new version; pods:\n{}",
            both(&d.kubectl(&["describe", "pods"]))
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_ne!(pod_of(&d), before, "the Deployment rolled to a new pod");
    let image = d.kubectl(&[
        "get",
        "deployment",
        &format!("{}-api-server", d.release),
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert!(String::from_utf8_lossy(&image.stdout).ends_with(":1.0.0.dev20260808"), "{}", both(&image));
    d.destroy();
}

#[test]
fn an_api_server_that_cannot_start_fails_the_apply_saying_why() {
    let mut d = Deployment::new("iam", "1.0.0-dev.20260808");
    d.vars = vec![
        "proxy_image=gcr.io/cloud-sql-connectors/cloud-sql-proxy:0.0.0-not-built".into(),
        "ready_timeout=45".into(),
    ];
    let out = d.skyform("apply", &["--auto-approve"]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "the apply must fail:\n{text}");
    let deployment = format!("Deployment/{}/{}-api-server", d.namespace, d.release);
    for want in [
        "helm_release.skypilot",
        "objects not ready after ",
        deployment.as_str(),
        "0/1 replicas available",
        "pod ",
        "cloud-sql-proxy: ",
    ] {
        assert!(text.contains(want), "the error does not say {want:?}:\n{text}");
    }
    assert!(text.contains("ImagePullBackOff") || text.contains("ErrImagePull"), "{text}");
    assert!(text.contains("event Failed") || text.contains("event BackOff"), "the pod's Warning events:\n{text}");
    assert!(
        text.contains("Still creating... Deployment/") && text.contains(" pods Running, 0/1 Ready ["),
        "progress lines say how the pods do:\n{text}"
    );
    for (_, secret) in &d.secrets {
        assert!(!text.contains(secret.as_str()), "a secret was printed");
    }
    eprintln!("[iam] what a failed apply says:\n{text}");

    // The right image: the next apply upgrades the release and ends when the server is ready.
    d.vars.clear();
    d.skyform_ok("apply", &["--auto-approve"]);
    assert!(d.health().is_some(), "apply ended before the API server was healthy");
    d.destroy();
}
