//! Kubernetes provider on the testbed's real kube-apiserver: for every resource
//! type, create → empty re-plan → a change made with the real kubectl → plan and
//! drift show exactly it → apply repairs → destroy.

mod k8s_common;

use k8s_common::{Fixture, assert_updates, change, run, toml_str};
use skyform::cli::render;
use skyform::engine::drift::DriftClass;
use skyform::plan::Action;
use skyform_testbed::Testbed;

fn provider(tb: &Testbed) -> String {
    format!("[provider.kubernetes]\nkubeconfig = {}\n\n", toml_str(&tb.kubeconfig.display().to_string()))
}

fn kubectl(tb: &Testbed, args: &[&str]) -> String {
    run(tb.kubectl().args(args))
}

fn exists(tb: &Testbed, args: &[&str]) -> bool {
    tb.kubectl().args(args).output().unwrap().status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_labels_drift_and_deletion_is_waited_for() {
    let tb = Testbed::get();
    let name = skyform_testbed::unique_name("skyform-ns");
    let f = Fixture::new(&format!(
        "{}[resource.k8s_namespace.ns]\nname = \"{name}\"\nlabels = {{ team = \"sky\" }}\n",
        provider(tb)
    ));
    let p = f.plan().await;
    assert_eq!(change(&p, "k8s_namespace.ns").action, Action::Create);
    f.apply().await;
    assert_eq!(kubectl(tb, &["get", "ns", &name, "-o", "jsonpath={.metadata.labels.team}"]), "sky");
    // Server-filled fields (the kubernetes.io/metadata.name label, finalizers,
    // status) are not changes.
    f.assert_clean().await;

    kubectl(tb, &["label", "ns", &name, "team=other", "--overwrite"]);
    // A label skyform does not set is left alone and is not drift.
    kubectl(tb, &["label", "ns", &name, "owner=someone"]);
    let p = f.plan().await;
    assert_updates(&p, "k8s_namespace.ns", &["labels"]);
    assert!(render::plan(&p).contains("other"), "{}", render::plan(&p));
    let d = f.drift().await;
    assert_eq!(d.findings.len(), 1, "{d:?}");
    assert_eq!(d.findings[0].class, DriftClass::ChangedOutside);
    assert_eq!(d.findings[0].attributes[0].path, "labels");
    assert_eq!(d.findings[0].attributes[0].live["team"], "other");
    f.apply().await;
    assert_eq!(kubectl(tb, &["get", "ns", &name, "-o", "jsonpath={.metadata.labels.team}"]), "sky");
    assert_eq!(kubectl(tb, &["get", "ns", &name, "-o", "jsonpath={.metadata.labels.owner}"]), "someone");
    f.assert_clean().await;

    // Removing a label from the spec removes it from the namespace.
    f.write(&format!("{}[resource.k8s_namespace.ns]\nname = \"{name}\"\nlabels = {{ tier = \"x\" }}\n", provider(tb)));
    let p = f.plan().await;
    assert_updates(&p, "k8s_namespace.ns", &["labels"]);
    f.apply().await;
    assert_eq!(kubectl(tb, &["get", "ns", &name, "-o", "jsonpath={.metadata.labels.team}"]), "");
    f.assert_clean().await;

    f.destroy().await;
    // The deletion was waited for: the namespace is gone, not Terminating.
    assert!(!exists(tb, &["get", "ns", &name]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_data_drift_and_deletion_outside() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-cm").await;
    let spec = format!(
        "{}[resource.k8s_config_map.cm]\nname = \"settings\"\nnamespace = \"{ns}\"\ndata = {{ a = \"1\", b = \"two\" }}\nbinary_data = {{ bin = \"AAEC\" }}\n",
        provider(tb)
    );
    let f = Fixture::new(&spec);
    f.apply().await;
    assert_eq!(kubectl(tb, &["get", "cm", "settings", "-n", &ns, "-o", "jsonpath={.data.b}"]), "two");
    f.assert_clean().await;

    kubectl(
        tb,
        &["patch", "cm", "settings", "-n", &ns, "--type=merge", "-p", r#"{"data":{"b":"edited","extra":"x"}}"#],
    );
    let p = f.plan().await;
    assert_updates(&p, "k8s_config_map.cm", &["data"]);
    let c = change(&p, "k8s_config_map.cm");
    // Exactly the edited key differs; the key another manager added is not ours.
    assert_eq!(c.before.as_ref().unwrap()["data"].get("b").unwrap().as_str(), Some("edited"));
    assert!(c.before.as_ref().unwrap()["data"].get("extra").is_none(), "{c:?}");
    let d = f.drift().await;
    assert_eq!((d.findings.len(), d.findings[0].class), (1, DriftClass::ChangedOutside));
    f.apply().await;
    assert_eq!(kubectl(tb, &["get", "cm", "settings", "-n", &ns, "-o", "jsonpath={.data.b}"]), "two");
    f.assert_clean().await;

    kubectl(tb, &["delete", "cm", "settings", "-n", &ns]);
    let d = f.drift().await;
    assert_eq!(d.findings[0].class, DriftClass::DeletedOutside);
    assert_eq!(change(&f.plan().await, "k8s_config_map.cm").action, Action::Create);
    f.apply().await;
    f.assert_clean().await;
    f.destroy().await;
    assert!(!exists(tb, &["get", "cm", "settings", "-n", &ns]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_are_masked_and_drift_is_detected() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-secret").await;
    let secret = "Pa55-w0rd-for-the-db";
    let spec = format!(
        r#"{}[variable.db_password]
type = "string"
sensitive = true

[resource.k8s_secret.db]
name = "skypilot-db-connection-uri"
namespace = "{ns}"
data = {{ connection_string = "postgresql://skypilot:${{var.db_password}}@localhost/skypilot" }}
binary_data = {{ "key.bin" = "AAEC" }}
"#,
        provider(tb)
    );
    let mut f = Fixture::new(&spec);
    f.vars = vec![format!("db_password={secret}")];
    let p = f.plan().await;
    let text = render::plan(&p);
    assert!(!text.contains(secret) && text.contains("(sensitive value)"), "{text}");
    f.apply().await;
    let got = kubectl(
        tb,
        &["get", "secret", "skypilot-db-connection-uri", "-n", &ns, "-o", "jsonpath={.data.connection_string}"],
    );
    use base64::Engine as _;
    let got = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(got).unwrap()).unwrap();
    assert_eq!(got, format!("postgresql://skypilot:{secret}@localhost/skypilot"));
    f.assert_clean().await;
    for entry in std::fs::read_dir(f.dir.path().join(".skyform")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(secret), "state holds the secret");
    }

    kubectl(
        tb,
        &[
            "patch",
            "secret",
            "skypilot-db-connection-uri",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"stringData":{"connection_string":"postgresql://other"}}"#,
        ],
    );
    let p = f.plan().await;
    assert_updates(&p, "k8s_secret.db", &["data"]);
    let text = render::plan(&p);
    assert!(!text.contains(secret) && !text.contains("postgresql://other"), "{text}");
    let d = f.drift().await;
    assert_eq!((d.findings.len(), d.findings[0].class), (1, DriftClass::ChangedOutside));
    assert!(!serde_json::to_string(&d.findings).unwrap().contains("postgresql://other"));
    f.apply().await;
    f.assert_clean().await;
    f.destroy().await;
    assert!(!exists(tb, &["get", "secret", "skypilot-db-connection-uri", "-n", &ns]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_annotation_drift() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-sa").await;
    let spec = format!(
        "{}[resource.k8s_service_account.api]\nname = \"skypilot-api-sa\"\nnamespace = \"{ns}\"\nannotations = {{ \"iam.gke.io/gcp-service-account\" = \"sky@p.iam.gserviceaccount.com\" }}\n",
        provider(tb)
    );
    let f = Fixture::new(&spec);
    f.apply().await;
    f.assert_clean().await;
    kubectl(
        tb,
        &[
            "annotate",
            "sa",
            "skypilot-api-sa",
            "-n",
            &ns,
            "iam.gke.io/gcp-service-account=evil@p.iam.gserviceaccount.com",
            "--overwrite",
        ],
    );
    let p = f.plan().await;
    assert_updates(&p, "k8s_service_account.api", &["annotations"]);
    assert!(render::plan(&p).contains("evil@p.iam.gserviceaccount.com"));
    let d = f.drift().await;
    assert_eq!((d.findings.len(), d.findings[0].class), (1, DriftClass::ChangedOutside));
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
        "sky@p.iam.gserviceaccount.com"
    );
    f.assert_clean().await;
    f.destroy().await;
    assert!(!exists(tb, &["get", "sa", "skypilot-api-sa", "-n", &ns]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_as_yaml_and_table_ignore_defaults_and_show_exact_drift() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-manifest").await;
    let deployment = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          resources:
            requests: {{cpu: 1, memory: 1024Mi}}
"#
    );
    let spec = format!(
        r#"{}[resource.k8s_manifest.web]
manifest = '''
{deployment}'''

[resource.k8s_manifest.svc]
manifest = {{ apiVersion = "v1", kind = "Service", metadata = {{ name = "web", namespace = "{ns}" }}, spec = {{ selector = {{ app = "web" }}, ports = [{{ port = 80, targetPort = 8080 }}] }} }}
"#,
        provider(tb)
    );
    let f = Fixture::new(&spec);
    f.apply().await;
    // The server filled in strategy, imagePullPolicy, clusterIP, protocol...,
    // turned cpu 1 into "1" and 1024Mi into 1Gi: none of it is a change.
    f.assert_clean().await;

    kubectl(tb, &["scale", "deployment", "web", "-n", &ns, "--replicas=3"]);
    // A field skyform does not set, changed by someone else: not drift.
    kubectl(
        tb,
        &["patch", "svc", "web", "-n", &ns, "--type=merge", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#],
    );
    let p = f.plan().await;
    assert_updates(&p, "k8s_manifest.web", &["manifest"]);
    let text = render::plan(&p);
    assert!(text.contains("-   replicas: 3") && text.contains("+   replicas: 1"), "{text}");
    assert!(!text.contains("imagePullPolicy"), "{text}");
    let d = f.drift().await;
    assert_eq!(d.findings.len(), 1, "{d:?}");
    assert_eq!(
        (d.findings[0].address.to_string(), d.findings[0].class),
        ("k8s_manifest.web".into(), DriftClass::ChangedOutside)
    );
    f.apply().await;
    assert_eq!(kubectl(tb, &["get", "deployment", "web", "-n", &ns, "-o", "jsonpath={.spec.replicas}"]), "1");
    f.assert_clean().await;

    // A spec change updates in place; renaming replaces.
    f.write(&spec.replace("image: nginx:1.27", "image: nginx:1.28"));
    assert_updates(&f.plan().await, "k8s_manifest.web", &["manifest"]);
    f.apply().await;
    f.assert_clean().await;
    f.write(
        &spec
            .replace("image: nginx:1.27", "image: nginx:1.28")
            .replace("name = \"web\", namespace", "name = \"web2\", namespace"),
    );
    let p = f.plan().await;
    assert!(change(&p, "k8s_manifest.svc").action.is_replace(), "{}", render::plan(&p));
    f.apply().await;
    assert!(!exists(tb, &["get", "svc", "web", "-n", &ns]));
    assert!(exists(tb, &["get", "svc", "web2", "-n", &ns]));
    f.assert_clean().await;

    f.destroy().await;
    assert!(!exists(tb, &["get", "deployment", "web", "-n", &ns]));
    assert!(!exists(tb, &["get", "svc", "web2", "-n", &ns]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_waited_for_on_request_and_a_timeout_says_why() {
    let tb = Testbed::get();
    let ns = tb.namespace("skyform-ready").await;
    let spec = |replicas: u32| {
        format!(
            r#"{}[resource.k8s_manifest.app]
wait_for_ready = true
timeouts = {{ create = 60, update = 3 }}
manifest = {{ apiVersion = "apps/v1", kind = "Deployment", metadata = {{ name = "app", namespace = "{ns}" }}, spec = {{ replicas = {replicas}, selector = {{ matchLabels = {{ app = "a" }} }}, template = {{ metadata = {{ labels = {{ app = "a" }} }}, spec = {{ containers = [{{ name = "a", image = "registry.invalid/a:1" }}] }} }} }} }}
"#,
            provider(tb)
        )
    };
    // Zero replicas: ready as soon as the deployment controller has seen it.
    let f = Fixture::new(&spec(0));
    f.apply().await;
    f.assert_clean().await;
    // One replica of an image no registry has: never available; the wait
    // times out and says what was missing, naming the object.
    f.write(&spec(1));
    let loaded = f.load();
    let ctx = loaded.context(
        std::sync::Arc::new(skyform::engine::events::Recorder::default()),
        4,
        skyform::engine::Cancel::new(),
    );
    let mut s = skyform::ops::apply::open(&loaded, Some("apply"), std::time::Duration::from_secs(30)).unwrap();
    let planned = s.plan(&ctx, &Default::default()).await.unwrap();
    let report = s.apply(&ctx, &planned.plan).await.unwrap();
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(report.failures[0].1.to_string().contains("0/1 replicas available"), "{}", report.failures[0].1);
    assert!(report.failures[0].1.to_string().contains(&format!("Deployment/{ns}/app")), "{}", report.failures[0].1);
    drop(s);
    f.destroy().await;
}
