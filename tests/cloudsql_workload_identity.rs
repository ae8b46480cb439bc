//! Workload Identity, as the seed's IAM variant uses it: the real Cloud SQL Auth Proxy with no
//! credentials flag (`--auto-iam-authn`, default credentials) gets its token from the emulator's
//! metadata server as a Kubernetes service account of the testbed's real kube-apiserver, and
//! logs in to Cloud SQL as the Google service account's IAM database user. Removing the
//! Workload Identity binding, or a wrong KSA annotation, is refused with GKE's message.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};
use skyform_testbed::{Testbed, run_ok, unique_name};
use tokio::io::{AsyncBufReadExt, BufReader};

fn proxy_binary(tb: &Testbed) -> String {
    let p = tb.env.get("SKYFORM_CLOUD_SQL_PROXY").cloned().unwrap_or_default();
    assert!(
        std::path::Path::new(&p).exists(),
        "the Cloud SQL Auth Proxy is not built ({p}): scripts/testbed-build cloud-sql-proxy"
    );
    p
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }
    async fn settle(&self) {
        self.http.post(format!("{}_emulator/settle?timeout_ms=120000", self.base)).send().await.unwrap();
    }
}

async fn proxy(
    bin: &str,
    metadata_host: &str,
    base: &str,
    port: u16,
    conn: &str,
) -> (tokio::process::Child, Arc<Mutex<String>>) {
    let mut child = tokio::process::Command::new(bin)
        .args(["--sqladmin-api-endpoint", base, "--auto-iam-authn", "--port", &port.to_string(), conn])
        .env("GCE_METADATA_HOST", metadata_host)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy runs");
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log1 = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            log1.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    let mut errs = BufReader::new(child.stderr.take().unwrap()).lines();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = errs.next_line().await {
            log2.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    for _ in 0..100 {
        if log.lock().unwrap().contains("ready for new connections") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, log)
}

async fn login(port: u16, user: &str) -> Result<String, String> {
    let (c, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let row = c.query_one("SELECT current_user", &[]).await.map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_logs_in_through_workload_identity_and_is_refused_without_the_binding() {
    let tb = Testbed::get();
    let bin = proxy_binary(tb);
    let _ = rustls::crypto::ring::default_provider().install_default();
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config {
        gke_endpoint: tb.kube_api.clone(),
        gke_ca_pem: tb.kube_ca_pem.clone(),
        access_token: Some(tb.token.clone()),
        enforce_iam: true,
        ..Default::default()
    })
    .await
    .expect("emulator");
    let p = unique_name("wi");
    let api = Api { base: emu.base_url().to_string(), token: tb.token.clone(), http: reqwest::Client::new() };
    let post = reqwest::Method::POST;
    api.call(post.clone(), &format!("v1/projects/{p}/locations/us-central1/clusters"), Some(json!({"cluster": {
        "name": "sky", "initialNodeCount": 1, "workloadIdentityConfig": {"workloadPool": format!("{p}.svc.id.goog")}}}))).await;
    api.call(post.clone(), &format!("v1/projects/{p}/instances"), Some(json!({"name": "db", "region": "us-central1",
        "databaseVersion": "POSTGRES_15", "rootPassword": "root-pw",
        "settings": {"tier": "db-custom-1-3840", "databaseFlags": [{"name": "cloudsql.iam_authentication", "value": "on"}]}}))).await;
    api.settle().await;
    let sa = api
        .call(post.clone(), &format!("v1/projects/{p}/serviceAccounts"), Some(json!({"accountId": "wi-proxy"})))
        .await;
    let email = sa["email"].as_str().unwrap().to_string();
    let iam_user = email.trim_end_matches(".gserviceaccount.com").to_string();
    api.call(
        post.clone(),
        &format!("v1/projects/{p}/instances/db/users"),
        Some(json!({"name": iam_user, "type": "CLOUD_IAM_SERVICE_ACCOUNT"})),
    )
    .await;
    api.settle().await;
    let pol = api.call(post.clone(), &format!("v1/projects/{p}:getIamPolicy"), Some(json!({}))).await;
    api.call(
        post.clone(),
        &format!("v1/projects/{p}:setIamPolicy"),
        Some(json!({"policy": {"etag": pol["etag"], "bindings": [
        {"role": "roles/cloudsql.client", "members": [format!("serviceAccount:{email}")]},
        {"role": "roles/cloudsql.instanceUser", "members": [format!("serviceAccount:{email}")]}]}})),
    )
    .await;
    let bind = |members: Vec<String>| {
        let (api, email) = (&api, email.clone());
        async move {
            let pol = api
                .call(reqwest::Method::POST, &format!("v1/projects/-/serviceAccounts/{email}:getIamPolicy"), None)
                .await;
            let bindings = if members.is_empty() {
                json!([])
            } else {
                json!([{"role": "roles/iam.workloadIdentityUser", "members": members}])
            };
            api.call(
                reqwest::Method::POST,
                &format!("v1/projects/-/serviceAccounts/{email}:setIamPolicy"),
                Some(json!({"policy": {"etag": pol["etag"], "bindings": bindings}})),
            )
            .await;
        }
    };
    // The KSA on the real kube-apiserver, annotated with the Google service account.
    let ns = tb.namespace("skyform-wi").await;
    run_ok(tb.kubectl().args(["-n", &ns, "create", "serviceaccount", "skypilot-api-sa"]));
    run_ok(tb.kubectl().args([
        "-n",
        &ns,
        "annotate",
        "serviceaccount",
        "skypilot-api-sa",
        &format!("iam.gke.io/gcp-service-account={email}"),
    ]));
    bind(vec![format!("serviceAccount:{p}.svc.id.goog[{ns}/skypilot-api-sa]")]).await;

    let host = emu.base_url().trim_start_matches("http://").trim_end_matches('/');
    let md = format!("{host}/_metadata/{p}/us-central1/sky/{ns}/skypilot-api-sa");
    let conn = format!("{p}:us-central1:db");
    let port = free_port();
    let (mut px, log) = proxy(&bin, &md, &api.base, port, &conn).await;
    let who = login(port, &iam_user)
        .await
        .unwrap_or_else(|e| panic!("IAM login through Workload Identity: {e}\n{}", log.lock().unwrap()));
    assert_eq!(who, iam_user);
    px.kill().await.ok();

    // The Workload Identity binding removed: the metadata server refuses the KSA.
    bind(vec![]).await;
    let port = free_port();
    let (mut px, log) = proxy(&bin, &md, &api.base, port, &conn).await;
    assert!(login(port, &iam_user).await.is_err(), "logged in without the binding");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = log.lock().unwrap().clone();
    assert!(text.contains("roles/iam.workloadIdentityUser"), "{text}");
    px.kill().await.ok();

    // The binding back, but the KSA annotated with another account.
    bind(vec![format!("serviceAccount:{p}.svc.id.goog[{ns}/skypilot-api-sa]")]).await;
    run_ok(tb.kubectl().args([
        "-n",
        &ns,
        "annotate",
        "--overwrite",
        "serviceaccount",
        "skypilot-api-sa",
        &format!("iam.gke.io/gcp-service-account=other@{p}.iam.gserviceaccount.com"),
    ]));
    let port = free_port();
    let (mut px, log) = proxy(&bin, &md, &api.base, port, &conn).await;
    assert!(login(port, &iam_user).await.is_err(), "logged in with a wrong annotation");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = log.lock().unwrap().clone();
    assert!(text.contains("403") || text.contains("workloadIdentityUser"), "{text}");
    px.kill().await.ok();
}
