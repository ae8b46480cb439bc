//! Cloud SQL as its clients reach it: each instance at an address of its own with PostgreSQL
//! on 5432, and the connector endpoint (`connectSettings`, `generateEphemeralCert`, TLS 1.3
//! on `<ip>:3307` with a client certificate required) proven with the real Cloud SQL Auth
//! Proxy (built from Go modules by `scripts/testbed-build cloud-sql-proxy`) and a real
//! PostgreSQL client through it.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{call, call_with, wait_sql_op};
use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const P: &str = "connector-proj";

/// The real proxy: `$SKYFORM_CLOUD_SQL_PROXY`, else the testbed cache at the pinned version.
/// Fails (never skips) when it has not been built.
fn proxy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SKYFORM_CLOUD_SQL_PROXY").map(PathBuf::from).filter(|p| p.exists()) {
        return p;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let versions = std::fs::read_to_string(format!("{root}/scripts/testbed-versions.env")).expect("versions file");
    let v = versions
        .lines()
        .find_map(|l| l.strip_prefix("CLOUD_SQL_PROXY_VERSION="))
        .expect("CLOUD_SQL_PROXY_VERSION pinned")
        .trim()
        .to_string();
    let cache = std::env::var_os("SKYFORM_TESTBED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/skyform/testbed"));
    let p = cache.join(format!("cloud-sql-proxy-{v}/bin/cloud-sql-proxy"));
    assert!(
        p.exists(),
        "the Cloud SQL Auth Proxy is not built: run scripts/testbed-build cloud-sql-proxy ({})",
        p.display()
    );
    p
}

async fn instance(base: &str, name: &str) -> Value {
    let (code, op) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}/instances"),
        Some(&json!({"name": name, "region": "us-central1", "databaseVersion": "POSTGRES_15",
                     "rootPassword": "root-pw", "settings": {"tier": "db-custom-1-3840"}})),
    )
    .await;
    assert_eq!(code, 200, "{op}");
    wait_sql_op(base, "v1", P, &op, 120).await;
    let (code, op) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}/instances/{name}/users"),
        Some(&json!({"name": "app", "password": "app-pw"})),
    )
    .await;
    assert_eq!(code, 200, "{op}");
    wait_sql_op(base, "v1", P, &op, 60).await;
    call(base, "GET", &format!("/v1/projects/{P}/instances/{name}"), None).await.1
}

async fn pg(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host(host)
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_auth_proxy_connects_through_the_connector_endpoint() {
    let proxy = proxy_binary();
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config::default()).await.expect("emulator");
    let base = emu.base_url().to_string();
    let inst = instance(&base, "db").await;
    let ip = inst["ipAddresses"][0]["ipAddress"].as_str().expect("ip").to_string();

    // connectSettings, under both prefixes, with what the connectors read.
    for prefix in ["sql/v1beta4", "v1"] {
        let (code, cs) =
            call(&base, "GET", &format!("/{prefix}/projects/{P}/instances/db/connectSettings"), None).await;
        assert_eq!(code, 200, "{cs}");
        assert_eq!(cs["backendType"], "SECOND_GEN");
        assert_eq!(cs["region"], "us-central1");
        assert_eq!(cs["databaseVersion"], "POSTGRES_15");
        assert_eq!(cs["serverCaMode"], "GOOGLE_MANAGED_CAS_CA");
        assert_eq!(cs["ipAddresses"][0], json!({"type": "PRIMARY", "ipAddress": ip}));
        assert!(cs["dnsName"].as_str().unwrap().ends_with(".connector-proj.us-central1.sql.goog"), "{cs}");
        assert!(cs["serverCaCert"]["cert"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    }
    let (code, e) = call(
        &base,
        "POST",
        &format!("/sql/v1beta4/projects/{P}/instances/db:generateEphemeralCert"),
        Some(&json!({"public_key": "nope"})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    let (code, _) =
        call(&base, "GET", &format!("/sql/v1beta4/projects/{P}/instances/missing/connectSettings"), None).await;
    assert_eq!(code, 404);

    // Port 3307 refuses a TLS client without a certificate from the instance CA.
    let mut roots = rustls::RootCertStore::empty();
    let (_, cs) = call(&base, "GET", &format!("/sql/v1beta4/projects/{P}/instances/db/connectSettings"), None).await;
    let ca = cs["serverCaCert"]["cert"].as_str().unwrap();
    for cert in rustls_pemfile_certs(ca) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect((ip.as_str(), 3307)).await.expect("3307 listens");
    let name = rustls::pki_types::ServerName::try_from(cs["dnsName"].as_str().unwrap().to_string()).unwrap();
    let refused = match connector.connect(name, tcp).await {
        Err(_) => true,
        // TLS 1.3: the server's refusal arrives with the first read.
        Ok(mut s) => {
            let _ = s.write_all(b"\0\0\0\x08\x04\xd2\x16\x2f").await;
            let mut b = [0u8; 1];
            !matches!(s.read(&mut b).await, Ok(1))
        }
    };
    assert!(refused, "a client without a certificate got through");

    // A certificate opens only the instance it was issued for: one issued for `db` is refused
    // on another instance's 3307 with a FATAL, and accepted on `db`'s.
    let other = instance(&base, "db2").await;
    let other_ip = other["ipAddresses"][0]["ipAddress"].as_str().unwrap().to_string();
    let key = rcgen::KeyPair::generate().unwrap();
    use base64::Engine;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let pem = format!(
        "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let (code, e) = call(
        &base,
        "POST",
        &format!("/v1/projects/{P}/instances/db:generateEphemeralCert"),
        Some(&json!({"public_key": pem})),
    )
    .await;
    assert_eq!(code, 200, "{e}");
    let client_cert = rustls_pemfile_certs(e["ephemeralCert"]["cert"].as_str().unwrap());
    let tls_with_cert = |ip: String, cs_dns: String| {
        let (roots_pem, client_cert, key_der) = (ca.to_string(), client_cert.clone(), key.serialize_der());
        async move {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile_certs(&roots_pem) {
                roots.add(c).unwrap();
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(client_cert, rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()))
                .unwrap();
            let tcp = tokio::net::TcpStream::connect((ip.as_str(), 3307)).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from(cs_dns).unwrap();
            let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("handshake");
            // A StartupMessage for `postgres`; read the first byte of the answer.
            let mut msg = vec![0, 3, 0, 0];
            msg.extend_from_slice(b"user\0postgres\0\0");
            let mut framed = ((msg.len() + 4) as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&msg);
            let _ = s.write_all(&framed).await;
            let mut answer = vec![0u8; 512];
            let n = s.read(&mut answer).await.unwrap_or(0);
            String::from_utf8_lossy(&answer[..n]).to_string()
        }
    };
    let (_, cs2) = call(&base, "GET", &format!("/sql/v1beta4/projects/{P}/instances/db2/connectSettings"), None).await;
    let answer = tls_with_cert(other_ip, cs2["dnsName"].as_str().unwrap().to_string()).await;
    assert!(answer.starts_with('E') && answer.contains("not issued for this instance"), "{answer:?}");
    let answer = tls_with_cert(ip.clone(), cs["dnsName"].as_str().unwrap().to_string()).await;
    assert!(answer.starts_with('R'), "the right instance asks for authentication: {answer:?}");

    // The real proxy, pointed at the emulator, with a static token.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(&proxy)
        .args(["--sqladmin-api-endpoint", &base, "--token", "any-token", "--port", &port.to_string()])
        .arg(format!("{P}:us-central1:db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy runs");
    // The proxy logs to stdout (errors included).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            log.push_str(&l);
            log.push('\n');
            if l.contains("ready for new connections") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(ready, "the proxy did not start:\n{log}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Through the proxy: a built-in user logs in with its password, and lands on the instance.
    let c = pg("127.0.0.1", port, "app", "app-pw").await.expect("login through the proxy");
    let row = c.query_one("SELECT host(inet_server_addr()), current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), ip);
    assert_eq!(row.get::<_, String>(1), "app");
    // A wrong password is PostgreSQL's refusal, carried through the tunnel.
    let e = pg("127.0.0.1", port, "app", "wrong").await.expect_err("refused");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28P01"), "{e}");
    // psql, a second real client, through the proxy.
    let psql = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.exists())
        .max()
        .expect("psql");
    let out = tokio::process::Command::new(psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "app",
            "-d",
            "postgres",
            "-Atc",
            "SELECT host(inet_server_addr())",
        ])
        .env("PGPASSWORD", "app-pw")
        .output()
        .await
        .expect("psql runs");
    assert!(out.status.success(), "psql through the proxy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ip);
    // Several connections at once.
    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(tokio::spawn(async move {
            let c = pg("127.0.0.1", port, "postgres", "root-pw").await.expect("root through the proxy");
            c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0)
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 1);
    }
    child.kill().await.ok();
}

/// Starts the real proxy with `args`: once it is ready, the child and its log (still being
/// collected); or the log when it exits or does not get ready.
async fn start_proxy(args: &[&str]) -> Result<(tokio::process::Child, Arc<std::sync::Mutex<String>>), String> {
    let mut child = tokio::process::Command::new(proxy_binary())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    // Errors go to stderr.
    let (mut errs, log3) = (BufReader::new(child.stderr.take().unwrap()).lines(), log.clone());
    tokio::spawn(async move {
        while let Ok(Some(l)) = errs.next_line().await {
            log3.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            log.lock().unwrap().push_str(&format!("{l}\n"));
            if l.contains("ready for new connections") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !ready {
        return Err(log.lock().unwrap().clone());
    }
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            log2.lock().unwrap().push_str(&format!("{l}\n"));
        }
    });
    Ok((child, log))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// With an access token required (as on the testbed), a service-account key file is the
/// proxy's way in: it posts a JWT to the key's `token_uri` (the emulator's token endpoint),
/// gets a token, and connects. Once the key is deleted, the same file is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_logs_the_proxy_in_through_the_token_endpoint() {
    let admin = "admin-token-for-this-test";
    gcp_emulator::contract::ensure_documents();
    let emu =
        Emulator::start(Config { access_token: Some(admin.into()), ..Default::default() }).await.expect("emulator");
    let base = emu.base_url().to_string();
    let auth = format!("Bearer {admin}");
    let h = [("Authorization", auth.as_str())];
    let settle = || async { call(&base, "POST", "/_emulator/settle?timeout_ms=120000", None).await };
    let (code, v) = call_with(
        &base,
        "POST",
        &format!("/v1/projects/{P}/instances"),
        Some(&json!({"name": "kdb", "region": "us-central1",
        "databaseVersion": "POSTGRES_15", "rootPassword": "root-pw", "settings": {"tier": "db-custom-1-3840"}})),
        &h,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    settle().await;
    let (code, v) = call_with(
        &base,
        "POST",
        &format!("/v1/projects/{P}/instances/kdb/users"),
        Some(&json!({"name": "app", "password": "app-pw"})),
        &h,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    settle().await;
    let (code, v) = call_with(
        &base,
        "POST",
        &format!("/v1/projects/{P}/serviceAccounts"),
        Some(&json!({"accountId": "proxy-sa"})),
        &h,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let email = v["email"].as_str().unwrap().to_string();
    let (code, key) =
        call_with(&base, "POST", &format!("/v1/projects/{P}/serviceAccounts/{email}/keys"), Some(&json!({})), &h).await;
    assert_eq!(code, 200, "{key}");
    use base64::Engine;
    let file_json = base64::engine::general_purpose::STANDARD.decode(key["privateKeyData"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_slice(&file_json).unwrap();
    assert_eq!(file["token_uri"], format!("{base}token"), "key files point at the emulator's token endpoint");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, &file_json).unwrap();

    let port = free_port().to_string();
    let conn = format!("{P}:us-central1:kdb");
    let common = ["--sqladmin-api-endpoint", base.as_str(), "--port", port.as_str()];
    let (mut proxy, _) =
        start_proxy(&[&common[..], &["--credentials-file", key_file.to_str().unwrap(), &conn]].concat())
            .await
            .unwrap_or_else(|log| panic!("the proxy did not start with the key file:\n{log}"));
    let c = pg("127.0.0.1", port.parse().unwrap(), "app", "app-pw").await.expect("login through the proxy");
    assert_eq!(c.query_one("SELECT current_user", &[]).await.unwrap().get::<_, String>(0), "app");
    proxy.kill().await.ok();

    // The key deleted: the token endpoint refuses its JWT, so no connection gets through.
    let key_name = key["name"].as_str().unwrap().to_string();
    let (code, v) = call_with(&base, "DELETE", &format!("/v1/{key_name}"), None, &h).await;
    assert_eq!(code, 200, "{v}");
    let port2 = free_port().to_string();
    let log = match start_proxy(&[
        "--sqladmin-api-endpoint",
        base.as_str(),
        "--port",
        port2.as_str(),
        "--credentials-file",
        key_file.to_str().unwrap(),
        &conn,
    ])
    .await
    {
        Err(log) => log,
        Ok((mut p, log)) => {
            let e = pg("127.0.0.1", port2.parse().unwrap(), "app", "app-pw").await;
            assert!(e.is_err(), "a deleted key still let the proxy in");
            tokio::time::sleep(Duration::from_millis(500)).await;
            p.kill().await.ok();
            log.lock().unwrap().clone()
        }
    };
    assert!(log.contains("invalid_grant") && log.contains("Invalid JWT Signature"), "{log}");
}

/// The certificates of a PEM bundle (DER).
fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use base64::Engine;
    let mut out = Vec::new();
    for block in pem.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body: String = block
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        out.push(base64::engine::general_purpose::STANDARD.decode(body).unwrap().into());
    }
    out
}

/// Automatic IAM database authentication: the proxy (`--auto-iam-authn`) puts its login token
/// in the ephemeral-cert request; on 3307 the principal logs in as its IAM database user with
/// no password, when the user exists, the flag is on and it holds the instanceUser role, and is
/// refused with Cloud SQL's message otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_login_through_the_proxy_and_its_refusals() {
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config { enforce_iam: true, ..Default::default() }).await.expect("emulator");
    let base = emu.base_url().to_string();
    let settle = || async { call(&base, "POST", "/_emulator/settle?timeout_ms=120000", None).await };
    let (code, v) = call(&base, "POST", &format!("/v1/projects/{P}/instances"), Some(&json!({"name": "idb", "region": "us-central1",
        "databaseVersion": "POSTGRES_15", "rootPassword": "root-pw",
        "settings": {"tier": "db-custom-1-3840", "databaseFlags": [{"name": "cloudsql.iam_authentication", "value": "on"}]}}))).await;
    assert_eq!(code, 200, "{v}");
    settle().await;
    let (_, sa) =
        call(&base, "POST", &format!("/v1/projects/{P}/serviceAccounts"), Some(&json!({"accountId": "iam-login"})))
            .await;
    let email = sa["email"].as_str().unwrap().to_string();
    let iam_user = email.trim_end_matches(".gserviceaccount.com").to_string();
    let (code, v) = call(
        &base,
        "POST",
        &format!("/v1/projects/{P}/instances/idb/users"),
        Some(&json!({"name": iam_user, "type": "CLOUD_IAM_SERVICE_ACCOUNT"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    settle().await;
    let set_roles = |roles: Vec<&'static str>| {
        let (base, email) = (base.clone(), email.clone());
        async move {
            let (_, pol) = call(&base, "POST", &format!("/v1/projects/{P}:getIamPolicy"), Some(&json!({}))).await;
            let bindings: Vec<Value> =
                roles.iter().map(|r| json!({"role": r, "members": [format!("serviceAccount:{email}")]})).collect();
            let (code, v) = call(
                &base,
                "POST",
                &format!("/v1/projects/{P}:setIamPolicy"),
                Some(&json!({"policy": {"bindings": bindings, "etag": pol["etag"]}})),
            )
            .await;
            assert_eq!(code, 200, "{v}");
        }
    };
    set_roles(vec!["roles/cloudsql.client", "roles/cloudsql.instanceUser"]).await;
    let (_, key) =
        call(&base, "POST", &format!("/v1/projects/{P}/serviceAccounts/{email}/keys"), Some(&json!({}))).await;
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.decode(key["privateKeyData"].as_str().unwrap()).unwrap(),
    )
    .unwrap();

    let port = free_port();
    let (mut proxy, log) = start_proxy(&[
        "--sqladmin-api-endpoint",
        base.as_str(),
        "--port",
        &port.to_string(),
        "--auto-iam-authn",
        "--credentials-file",
        key_file.to_str().unwrap(),
        &format!("{P}:us-central1:idb"),
    ])
    .await
    .unwrap_or_else(|log| panic!("the proxy did not start:\n{log}"));
    // No password: the certificate is the identity.
    let c = pg("127.0.0.1", port, &iam_user, "")
        .await
        .unwrap_or_else(|e| panic!("IAM login: {e}\n{}", log.lock().unwrap()));
    assert_eq!(c.query_one("SELECT current_user", &[]).await.unwrap().get::<_, String>(0), iam_user);
    drop(c);
    let refused = |user: String| async move {
        let e = pg("127.0.0.1", port, &user, "").await.expect_err("refused");
        let db = e.as_db_error().unwrap_or_else(|| panic!("not a server error: {e}")).clone();
        (db.code().code().to_string(), db.message().to_string())
    };
    // Another user than the principal's.
    let (code, msg) = refused("postgres".into()).await;
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("28000", "Cloud SQL IAM service account authentication failed for user \"postgres\"")
    );
    // The instanceUser role taken away.
    set_roles(vec!["roles/cloudsql.client"]).await;
    let (code, msg) = refused(iam_user.clone()).await;
    assert_eq!(code, "28000", "{msg}");
    assert!(msg.contains(&iam_user), "{msg}");
    set_roles(vec!["roles/cloudsql.client", "roles/cloudsql.instanceUser"]).await;
    assert!(pg("127.0.0.1", port, &iam_user, "").await.is_ok(), "the role given back");
    // The flag turned off.
    let (code, v) = call(
        &base,
        "PATCH",
        &format!("/v1/projects/{P}/instances/idb"),
        Some(&json!({"settings": {"databaseFlags": []}})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    settle().await;
    let (code, _) = refused(iam_user.clone()).await;
    assert_eq!(code, "28000");
    proxy.kill().await.ok();

    // Without roles/cloudsql.client (IAM enforced), the connector endpoint refuses the principal.
    set_roles(vec!["roles/cloudsql.instanceUser"]).await;
    let port = free_port();
    let (mut proxy, log) = start_proxy(&[
        "--sqladmin-api-endpoint",
        base.as_str(),
        "--port",
        &port.to_string(),
        "--auto-iam-authn",
        "--credentials-file",
        key_file.to_str().unwrap(),
        &format!("{P}:us-central1:idb"),
    ])
    .await
    .unwrap_or_else(|log| panic!("the proxy did not start:\n{log}"));
    assert!(pg("127.0.0.1", port, &iam_user, "").await.is_err(), "connected without cloudsql.client");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = log.lock().unwrap().clone();
    assert!(text.contains("403") && text.contains("cloudsql.instances.connect"), "{text}");
    proxy.kill().await.ok();
}
