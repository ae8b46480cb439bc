//! Helm provider on the testbed (real helm, real kube-apiserver) with the
//! skypilot-like chart: installed with the seed's values, a clean re-plan (the
//! htpasswd line included), a `kubectl` edit of a chart object and a
//! `helm upgrade` of the values made outside are drift, apply repairs, a spec
//! change upgrades, destroy uninstalls.

mod k8s_common;

use k8s_common::{Fixture, assert_updates, change, run, toml_str};
use skyform::cli::render;
use skyform::engine::drift::DriftClass;
use skyform::foundation::htpasswd::verifies as htpasswd_verifies;
use skyform::plan::Action;
use skyform_testbed::Testbed;

const PASSWORD: &str = "web-Secret-0451";

fn spec(tb: &Testbed, ns: &str, annotation: &str) -> String {
    let kc = toml_str(&tb.kubeconfig.display().to_string());
    let chart = toml_str(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charts/skypilot-like").display().to_string(),
    );
    format!(
        r#"
[provider.kubernetes]
kubeconfig = {kc}

[provider.helm]
kubeconfig = {kc}

[variable.web_password]
type = "string"
sensitive = true

[resource.k8s_secret.db]
name = "skypilot-db-connection-uri"
namespace = "{ns}"
data = {{ connection_string = "postgresql://localhost/skypilot?user=sky%40p.iam" }}

[resource.helm_release.sky]
name = "skypilot"
namespace = "{ns}"
chart = {chart}
values_yaml = "apiService:\n  config: null\n"

[resource.helm_release.sky.values.apiService]
dbConnectionSecretName = "${{k8s_secret.db.name}}"
extraVolumes = [{{ name = "cloud-sql-credentials", secret = {{ secretName = "cloud-sql-credentials" }} }}]

[resource.helm_release.sky.values.rbac]
serviceAccountName = "skypilot-api-sa"
serviceAccountAnnotations = {{ "iam.gke.io/gcp-service-account" = "{annotation}" }}

[[resource.helm_release.sky.values.extraInitContainers]]
name = "cloud-sql-proxy"
restartPolicy = "Always"
image = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1"
args = ["--auto-iam-authn", "--structured-logs", "--port=5432", "p:us-central1:sky"]

[resource.helm_release.sky.values.ingress]
authCredentials = '${{htpasswd("skypilot", var.web_password)}}'
"#,
    )
}

fn kubectl(tb: &Testbed, args: &[&str]) -> String {
    run(tb.kubectl().args(args))
}

fn helm(tb: &Testbed, args: &[&str]) -> String {
    run(tb.helm().args(args))
}

fn live_auth_line(tb: &Testbed, ns: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&helm(tb, &["get", "values", "skypilot", "-n", ns, "-o", "json"])).unwrap();
    v["ingress"]["authCredentials"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skypilot_like_release_installs_detects_live_drift_upgrades_and_uninstalls() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-helm").await;
    let sa = "sky@p.iam.gserviceaccount.com";
    let mut f = Fixture::new(&spec(tb, &ns, sa));
    f.helm = Some(tb.helm.clone());
    f.vars = vec![format!("web_password={PASSWORD}")];

    let p = f.plan().await;
    let text = render::plan(&p);
    assert_eq!(change(&p, "helm_release.sky").action, Action::Create);
    assert!(!text.contains(PASSWORD) && !text.contains("$2b$"), "{text}");
    f.apply().await;

    // The chart got the seed's values.
    let dep = "skypilot-api-server";
    assert_eq!(
        kubectl(
            tb,
            &["get", "deploy", dep, "-n", &ns, "-o", "jsonpath={.spec.template.spec.initContainers[0].restartPolicy}"]
        ),
        "Always"
    );
    assert_eq!(
        kubectl(
            tb,
            &[
                "get",
                "deploy",
                dep,
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key}"
            ]
        ),
        "connection_string"
    );
    assert_eq!(
        kubectl(
            tb,
            &["get", "deploy", dep, "-n", &ns, "-o", "jsonpath={.spec.template.spec.volumes[0].secret.secretName}"]
        ),
        "cloud-sql-credentials"
    );
    assert_eq!(
        kubectl(
            tb,
            &[
                "get",
                "sa",
                "skypilot-api-sa",
                "-n",
                &ns,
                "-o",
                r"jsonpath={.metadata.annotations.iam\.gke\.io/gcp-service-account}"
            ]
        ),
        sa
    );
    let auth = kubectl(tb, &["get", "secret", "skypilot-basic-auth", "-n", &ns, "-o", "jsonpath={.data.auth}"]);
    use base64::Engine as _;
    let auth = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(auth).unwrap()).unwrap();
    assert!(htpasswd_verifies(&auth, "skypilot", PASSWORD), "{auth}");
    f.assert_clean().await;

    // A hash made by an earlier run (another salt) that still verifies is not a change.
    let earlier = format!("skypilot:{}", bcrypt::hash(PASSWORD, 4).unwrap());
    helm(
        tb,
        &[
            "upgrade",
            "skypilot",
            chart_path().as_str(),
            "-n",
            &ns,
            "--reuse-values",
            "--set",
            &format!("ingress.authCredentials={earlier}"),
        ],
    );
    assert_eq!(live_auth_line(tb, &ns), earlier);
    f.assert_clean().await;

    // kubectl edit of an object the chart made: drift, repaired by apply.
    kubectl(tb, &["set", "image", &format!("deployment/{dep}"), "skypilot-api=evil/image:1", "-n", &ns]);
    let p = f.plan().await;
    assert_updates(&p, "helm_release.sky", &["live_drift"]);
    let text = render::plan(&p);
    assert!(text.contains(&format!("Deployment/{ns}/{dep}")) && text.contains("evil/image:1"), "{text}");
    let d = f.drift().await;
    assert_eq!(d.findings.len(), 1, "{d:?}");
    assert_eq!(
        (d.findings[0].class, d.findings[0].attributes[0].path.as_str()),
        (DriftClass::ChangedOutside, "live_drift")
    );
    f.apply().await;
    assert_eq!(
        kubectl(tb, &["get", "deploy", dep, "-n", &ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "berkeleyskypilot/skypilot-nightly:latest"
    );
    // The earlier hash was kept (not rotated by the upgrade).
    assert_eq!(live_auth_line(tb, &ns), earlier);
    f.assert_clean().await;

    // A value changed with helm outside skyform: drift on `values`, masked.
    helm(
        tb,
        &[
            "upgrade",
            "skypilot",
            chart_path().as_str(),
            "-n",
            &ns,
            "--reuse-values",
            "--set",
            "apiService.image=evil/other:2",
        ],
    );
    let p = f.plan().await;
    assert_updates(&p, "helm_release.sky", &["values"]);
    assert!(!render::plan(&p).contains(PASSWORD));
    f.apply().await;
    f.assert_clean().await;

    // A deleted chart object is drift too.
    kubectl(tb, &["delete", "svc", "skypilot-api-service", "-n", &ns]);
    let p = f.plan().await;
    assert_updates(&p, "helm_release.sky", &["live_drift"]);
    assert!(render::plan(&p).contains("deleted outside"), "{}", render::plan(&p));
    f.apply().await;
    kubectl(tb, &["get", "svc", "skypilot-api-service", "-n", &ns]);
    f.assert_clean().await;

    // The spec changes: an upgrade.
    let other = "other@p.iam.gserviceaccount.com";
    f.write(&spec(tb, &ns, other));
    let p = f.plan().await;
    assert_updates(&p, "helm_release.sky", &["values"]);
    // The plan names what the upgrade changes in the live objects.
    let text = render::plan(&p);
    assert!(
        text.contains(&format!("upgrade changes ServiceAccount/{ns}/skypilot-api-sa")) && text.contains(other),
        "{text}"
    );
    f.apply().await;
    assert_eq!(
        kubectl(
            tb,
            &[
                "get",
                "sa",
                "skypilot-api-sa",
                "-n",
                &ns,
                "-o",
                r"jsonpath={.metadata.annotations.iam\.gke\.io/gcp-service-account}"
            ]
        ),
        other
    );
    f.assert_clean().await;

    // A new password is a change; the new hash verifies against it.
    f.vars = vec!["web_password=another-one-99".into()];
    assert_updates(&f.plan().await, "helm_release.sky", &["values"]);
    f.apply().await;
    assert!(htpasswd_verifies(&live_auth_line(tb, &ns), "skypilot", "another-one-99"));
    f.assert_clean().await;

    f.destroy().await;
    assert!(!tb.helm().args(["status", "skypilot", "-n", &ns]).output().unwrap().status.success());
    assert!(
        !tb.kubectl()
            .args(["get", "secret", "skypilot-db-connection-uri", "-n", &ns])
            .output()
            .unwrap()
            .status
            .success()
    );
}

fn chart_path() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charts/skypilot-like").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_refusing_its_values_fails_the_plan() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-helm-bad").await;
    let mut f = Fixture::new(&spec(tb, &ns, "x@p.iam.gserviceaccount.com").replace("config: null", "config: {a: 1}"));
    f.helm = Some(tb.helm.clone());
    f.vars = vec![format!("web_password={PASSWORD}")];
    // The chart is rendered at plan time: its refusal is a plan error.
    let msg = f.plan_error().await;
    assert!(msg.contains("helm_release.sky") && msg.contains("apiService.config must be null"), "{msg}");
    assert!(!msg.contains(PASSWORD));
    assert!(!tb.helm().args(["status", "skypilot", "-n", &ns]).output().unwrap().status.success());
}

/// Values from the spec that helm takes as positional arguments (the release
/// name, the chart) come after `--`: a chart named like a flag is a chart helm
/// cannot find, never an option that points helm at another kubeconfig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_that_looks_like_a_flag_is_never_read_as_one() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-helm-flag").await;
    let text = spec(tb, &ns, "x@p.iam.gserviceaccount.com");
    let text = text.replace(&format!("chart = \"{}\"", chart_path()), "chart = \"--kubeconfig=/etc/passwd\"");
    assert!(text.contains("--kubeconfig=/etc/passwd"), "the spec names its chart differently now");
    let mut f = Fixture::new(&text);
    f.helm = Some(tb.helm.clone());
    f.vars = vec![format!("web_password={PASSWORD}")];
    let msg = f.plan_error().await;
    // helm looked for a chart of that name (`repo/chart`: repository
    // `--kubeconfig=`, chart `etc/passwd`), and found none.
    assert!(msg.contains("repo --kubeconfig= not found"), "{msg}");
    assert!(!msg.contains("unknown flag") && !msg.contains("requires"), "{msg}");
}

/// Two releases of a chart that makes a cluster-wide namespace only when a `lookup` finds none (as the
/// SkyPilot chart makes `skypilot-system`), in one apply: skyform installs them at the same moment, both
/// render the namespace, and the second install meets the first's ("already exists", or "cannot be
/// imported into the current release"). It is run once more, and its lookup finds the namespace: one
/// apply converges, with one namespace, owned by one release, and each release's object in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releases_racing_for_a_chart_made_namespace_converge_in_one_apply() {
    let tb = Testbed::get();
    let (ns_a, ns_b) = (tb.namespace("skyform-helm-race-a").await, tb.namespace("skyform-helm-race-b").await);
    let shared = skyform_testbed::unique_name("shared-system");
    let kc = toml_str(&tb.kubeconfig.display().to_string());
    let chart = toml_str(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/charts/shared-namespace")
            .display()
            .to_string(),
    );
    let release = |name: &str, ns: &str| {
        format!(
            "[resource.helm_release.{name}]\nname = \"{name}\"\nnamespace = \"{ns}\"\nchart = {chart}\nvalues = {{ sharedNamespace = \"{shared}\" }}\n\n"
        )
    };
    let text = format!("[provider.helm]\nkubeconfig = {kc}\n\n{}{}", release("a", &ns_a), release("b", &ns_b));
    let mut f = Fixture::new(&text);
    f.helm = Some(tb.helm.clone());
    f.apply().await;
    for (name, ns) in [("a", &ns_a), ("b", &ns_b)] {
        let status = helm(tb, &["status", name, "-n", ns, "-o", "json"]);
        assert!(status.contains(r#""status":"deployed""#), "release {name}: {status}");
        assert_eq!(
            kubectl(
                tb,
                &["get", "configmap", &format!("{name}-shared"), "-n", &shared, "-o", "jsonpath={.data.release}"]
            ),
            name
        );
    }
    let owner = kubectl(
        tb,
        &["get", "namespace", &shared, "-o", "jsonpath={.metadata.annotations.meta\\.helm\\.sh/release-name}"],
    );
    assert!(owner == "a" || owner == "b", "one release owns the namespace: {owner:?}");
    f.assert_clean().await;
    f.destroy().await;
}
