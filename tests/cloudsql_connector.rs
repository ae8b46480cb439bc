//! The `postgres` provider through the Cloud SQL connector (`instance = connection_name`), with
//! the real `skyform` binary against the emulator: the GRANT of the seed's IAM variant is made
//! over TLS 1.3 to the instance's port 3307 with an ephemeral certificate, and read back the same
//! way, on an instance that, as the seed's, has no authorized network and takes only TLS; a
//! plaintext direct connection is warned about; a bad connection name is refused. Direct
//! connections to `<ip>:5432` from an authorized network: TLS verified against the instance's
//! `server_ca_cert`, or `require`; plaintext refused by PostgreSQL under `ENCRYPTED_ONLY`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gcp_emulator::{Config, Emulator, OpDurations};

const P: &str = "skyform-test";
const ROOT_PASSWORD: &str = "Root-Pw-1-connector";

/// The seed's network settings: no authorized network, TLS only.
const SEED_IP: &str = r#"{ ipv4_enabled = true, ssl_mode = "ENCRYPTED_ONLY" }"#;

fn spec(emu: &Emulator, postgres: &str) -> String {
    spec_with(emu, SEED_IP, postgres)
}

fn spec_with(emu: &Emulator, ip_configuration: &str, postgres: &str) -> String {
    format!(
        r#"
[variable.root_password]
type = "string"
sensitive = true

[provider.gcp]
project = "{P}"
region = "us-central1"
endpoint = "{endpoint}"
anonymous = true

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"

[resource.gcp_project_iam_member.instance_user]
role = "roles/cloudsql.instanceUser"
member = "${{gcp_service_account.sa.member}}"

[resource.gcp_sql_instance.db]
name = "sky-db"
database_version = "POSTGRES_15"
tier = "db-f1-micro"
database_flags = {{ "cloudsql.iam_authentication" = "on" }}
deletion_protection = false
root_password = "${{var.root_password}}"
ip_configuration = {ip_configuration}

[resource.gcp_sql_user.iam]
instance = "${{gcp_sql_instance.db.name}}"
name = "${{gcp_service_account.sa.email}}"
type = "CLOUD_IAM_SERVICE_ACCOUNT"
depends_on = ["gcp_project_iam_member.instance_user"]

[provider.postgres]
{postgres}

[resource.postgres_grant.iam_superuser]
role = "cloudsqlsuperuser"
member = "${{gcp_service_account.sa.sql_iam_user}}"
depends_on = ["gcp_sql_user.iam"]
"#,
        endpoint = emu.base_url()
    )
}

/// Nothing skyform sent was outside Google's published contract.
fn assert_contract_kept(emu: &Emulator) {
    let r = emu.contract();
    assert!(r.defects.is_empty() && r.response_defects.is_empty(), "outside Google's contract: {r:?}");
}

fn skyform(dir: &std::path::Path, emu: &Emulator, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(args)
        .current_dir(dir)
        // The connector takes the Admin API's address and the token from the environment, as the
        // proxy does (`--sqladmin-api-endpoint`), never from the spec.
        .env("SKYFORM_GCP_ENDPOINT", emu.base_url())
        .env("SKYFORM_GCP_ACCESS_TOKEN", "operator-token")
        .env("SKYFORM_VAR_root_password", ROOT_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("skyform runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Whether `member` is in `cloudsqlsuperuser`, asked over the server's own socket.
async fn granted(emu: &Emulator, member: &str) -> bool {
    let socket = emu.postgres_socket_dir(P, "sky-db").expect("instance socket");
    let port = emu.postgres_port(P, "sky-db").expect("instance port");
    let out = tokio::process::Command::new("psql")
        .args(["-h", &socket.display().to_string(), "-p", &port.to_string(), "-U", "cloudsqladmin", "-d", "postgres"])
        .args(["-tAc", &format!("select pg_has_role('{member}', 'cloudsqlsuperuser', 'member')")])
        .output()
        .await
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout).trim() == "t"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_goes_through_the_connector() {
    let emu =
        Emulator::start(Config { op_durations: OpDurations::uniform(Duration::from_millis(30)), ..Default::default() })
            .await
            .expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.toml");
    let connector = r#"instance = "${gcp_sql_instance.db.connection_name}"
user = "postgres"
password = "${var.root_password}""#;
    std::fs::write(&main, spec(&emu, connector)).unwrap();

    let o = skyform(dir.path(), &emu, &["apply", "-f", "main.toml", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(ROOT_PASSWORD), "no secret printed");
    assert!(granted(&emu, "skypilot-sql@skyform-test.iam").await, "the GRANT was made");
    let stats = emu.stats().requests;
    let n = |m: &str| stats.get(m).copied().unwrap_or(0);
    assert!(n("sql.connect.get") >= 1 && n("sql.connect.generateEphemeralCert") >= 1, "{stats:?}");

    // Read back the same way: converged.
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A revoke by hand is drift, seen through the connector.
    let socket = emu.postgres_socket_dir(P, "sky-db").unwrap();
    let port = emu.postgres_port(P, "sky-db").unwrap();
    let revoke = tokio::process::Command::new("psql")
        .args(["-h", &socket.display().to_string(), "-p", &port.to_string(), "-U", "cloudsqladmin", "-d", "postgres"])
        .args(["-c", "REVOKE cloudsqlsuperuser FROM \"skypilot-sql@skyform-test.iam\""])
        .output()
        .await
        .unwrap();
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    let o = skyform(dir.path(), &emu, &["drift", "-f", "main.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("postgres_grant.iam_superuser"), "{}", text(&o));

    // A connection name that is not one is refused with what it should be.
    let bad = connector.replace("${gcp_sql_instance.db.connection_name}", "sky-db");
    std::fs::write(&main, spec(&emu, &bad)).unwrap();
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not a connection name `<project>:<region>:<instance>`"), "{}", text(&o));

    // A direct plaintext connection is allowed only when asked for, and warned about.
    let plain = "host = \"${gcp_sql_instance.db.public_ip}\"\nsslmode = \"disable\"\nuser = \"postgres\"\npassword = \"${var.root_password}\"";
    std::fs::write(&main, spec(&emu, plain)).unwrap();
    let o = skyform(dir.path(), &emu, &["validate", "-f", "main.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the connection is plaintext"), "{}", text(&o));
    // Without a CA to verify against, the default (verify-ca) refuses to guess.
    let no_ca = "host = \"${gcp_sql_instance.db.public_ip}\"\nuser = \"postgres\"\npassword = \"${var.root_password}\"";
    std::fs::write(&main, spec(&emu, no_ca)).unwrap();
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("needs `server_ca_cert`"), "{}", text(&o));
    assert_contract_kept(&emu);
    emu.shutdown().await;
}

/// An HTTP call to the emulator without a token (its administrator, with IAM enforced).
async fn admin(base: &str, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    skyform::foundation::net::install_crypto();
    let mut r = reqwest::Client::new().request(method, format!("{base}{}", path.trim_start_matches('/')));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("emulator answers");
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// An access token for a service account, minted by the emulator's token endpoint from a key file
/// (the JWT-bearer grant, as Google's auth libraries make it).
async fn token_from_key(base: &str, key_file: &serde_json::Value) -> String {
    use base64::Engine;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key_file["private_key_id"]});
    let claims = serde_json::json!({"iss": key_file["client_email"], "aud": key_file["token_uri"], "iat": now,
        "exp": now + 3600, "scope": "https://www.googleapis.com/auth/sqlservice.login"});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_file["private_key"].as_str().unwrap()).unwrap();
    let signature = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key).sign(input.as_bytes()).to_bytes();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()),
        ("assertion", format!("{input}.{}", b64(&signature))),
    ];
    let body = form.iter().map(|(k, v)| format!("{k}={}", skyform::spec::functions::urlencode(v))).collect::<Vec<_>>();
    let resp = reqwest::Client::new()
        .post(format!("{base}token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap_or_else(|| panic!("no token: {v}")).to_string()
}

/// `auth = "iam"`: the principal's token goes into the certificate request, and the session logs in
/// as its IAM database user with no password; another user is refused with Cloud SQL's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_login_through_the_connector() {
    use reqwest::Method;
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config {
        op_durations: OpDurations::uniform(Duration::from_millis(30)),
        enforce_iam: true,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let base = emu.base_url().to_string();
    let settle = || admin(&base, Method::POST, "/_emulator/settle?timeout_ms=120000", None);
    admin(
        &base,
        Method::POST,
        &format!("/v1/projects/{P}/instances"),
        Some(serde_json::json!({"name": "idb",
        "region": "us-central1", "databaseVersion": "POSTGRES_15", "rootPassword": ROOT_PASSWORD,
        "settings": {"tier": "db-custom-1-3840",
                     "databaseFlags": [{"name": "cloudsql.iam_authentication", "value": "on"}]}})),
    )
    .await;
    settle().await;
    let sa = admin(
        &base,
        Method::POST,
        &format!("/v1/projects/{P}/serviceAccounts"),
        Some(serde_json::json!({"accountId": "iam-login"})),
    )
    .await;
    let email = sa["email"].as_str().unwrap().to_string();
    let iam_user = email.trim_end_matches(".gserviceaccount.com").to_string();
    admin(
        &base,
        Method::POST,
        &format!("/v1/projects/{P}/instances/idb/users"),
        Some(serde_json::json!({"name": iam_user, "type": "CLOUD_IAM_SERVICE_ACCOUNT"})),
    )
    .await;
    settle().await;
    let policy =
        admin(&base, Method::POST, &format!("/v1/projects/{P}:getIamPolicy"), Some(serde_json::json!({}))).await;
    let member = format!("serviceAccount:{email}");
    admin(
        &base,
        Method::POST,
        &format!("/v1/projects/{P}:setIamPolicy"),
        Some(serde_json::json!({"policy": {
        "bindings": [{"role": "roles/cloudsql.client", "members": [member]},
                     {"role": "roles/cloudsql.instanceUser", "members": [member]}],
        "etag": policy["etag"]}})),
    )
    .await;
    let key = admin(
        &base,
        Method::POST,
        &format!("/v1/projects/{P}/serviceAccounts/{email}/keys"),
        Some(serde_json::json!({})),
    )
    .await;
    use base64::Engine;
    let key_file: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD.decode(key["privateKeyData"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let token = token_from_key(&base, &key_file).await;

    let dir = tempfile::tempdir().unwrap();
    let write = |user: &str| {
        std::fs::write(
            dir.path().join("main.toml"),
            format!(
                "[provider.postgres]\ninstance = \"{P}:us-central1:idb\"\nauth = \"iam\"\nuser = \"{user}\"\n\n\
                 [resource.postgres_grant.g]\nrole = \"cloudsqlsuperuser\"\nmember = \"{iam_user}\"\n"
            ),
        )
        .unwrap();
    };
    let plan = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_skyform"))
            .args(["plan", "-f", "main.toml"])
            .current_dir(dir.path())
            .env("SKYFORM_GCP_ENDPOINT", &base)
            .env("SKYFORM_GCP_ACCESS_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    write(&iam_user);
    let o = plan(&token);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("postgres_grant.g will be created"), "the membership was read: {}", text(&o));
    let certs = emu.stats().requests.get("sql.connect.generateEphemeralCert").copied().unwrap_or(0);
    assert!(certs >= 1, "a certificate was issued");
    // Another user with this principal's certificate: Cloud SQL's refusal, permanent.
    write("someone-else@skyform-test.iam");
    let o = plan(&token);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Cloud SQL IAM service account authentication failed"), "{}", text(&o));
    assert!(!text(&o).contains(&token), "the token is never printed");
    assert_contract_kept(&emu);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_connections_need_an_authorized_network_and_tls() {
    let emu =
        Emulator::start(Config { op_durations: OpDurations::uniform(Duration::from_millis(30)), ..Default::default() })
            .await
            .expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.toml");
    // This test's own address (loopback) is authorized; TLS only.
    let ip = r#"{ ipv4_enabled = true, ssl_mode = "ENCRYPTED_ONLY", authorized_networks = [{ name = "test", value = "127.0.0.1/32" }] }"#;
    let direct = |sslmode: &str| {
        format!(
            "host = \"${{gcp_sql_instance.db.public_ip}}\"\nsslmode = \"{sslmode}\"\n\
             server_ca_cert = \"${{gcp_sql_instance.db.server_ca_cert}}\"\n\
             user = \"postgres\"\npassword = \"${{var.root_password}}\""
        )
    };
    // verify-ca (the default, said here): the server's certificate chains to serverCaCert.
    std::fs::write(&main, spec_with(&emu, ip, &direct("verify-ca"))).unwrap();
    let o = skyform(dir.path(), &emu, &["apply", "-f", "main.toml", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(granted(&emu, "skypilot-sql@skyform-test.iam").await, "the GRANT was made directly");
    let stats = emu.stats().requests;
    assert_eq!(stats.get("sql.connect.generateEphemeralCert"), None, "not through the connector: {stats:?}");
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // require: TLS, the server unverified; read back the same.
    std::fs::write(&main, spec_with(&emu, ip, &direct("require"))).unwrap();
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // disable: PostgreSQL itself refuses the plaintext session under ENCRYPTED_ONLY.
    std::fs::write(&main, spec_with(&emu, ip, &direct("disable"))).unwrap();
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no encryption"), "{}", text(&o));
    // The network removed by hand: no direct session at all (closed at once), and the instance
    // has drifted.
    let body = r#"{"settings": {"ipConfiguration": {"authorizedNetworks": []}}}"#;
    assert!(patch_by_hand(&emu, body).await.starts_with("HTTP/1.1 200"));
    assert!(emu.settle(Duration::from_secs(30)).await);
    std::fs::write(&main, spec_with(&emu, ip, &direct("verify-ca"))).unwrap();
    let started = std::time::Instant::now();
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(started.elapsed() < Duration::from_secs(30), "refused, not timed out");
    let o =
        skyform(dir.path(), &emu, &["apply", "-f", "main.toml", "--auto-approve", "--target", "gcp_sql_instance.db"]);
    assert!(o.status.success(), "the network put back: {}", text(&o));
    let o = skyform(dir.path(), &emu, &["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    emu.shutdown().await;
}

/// `instances.patch` of the test instance with `body`, as gcloud would send it; the response head.
async fn patch_by_hand(emu: &Emulator, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = emu.base_url().trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let req = format!(
        "PATCH /sql/v1beta4/projects/{P}/instances/sky-db HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
