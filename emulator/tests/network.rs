//! Who may connect to an instance, as on Cloud SQL (`docs/emulator.md`, "Authorized networks and
//! SSL"): a direct client on `<ip>:5432` must be in an authorized network (else it is closed at
//! once) and speak TLS as the instance's `sslMode` says (PostgreSQL's own refusal otherwise);
//! the connector port 3307 needs neither; `serverCaCert` and `listServerCas` give the CA that
//! `sslmode=verify-ca` trusts. Real PostgreSQL, real psql, tokio-postgres, and a connector client
//! written here (ephemeral certificate, TLS 1.3 to 3307).

mod common;

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{call, wait_sql_op};
use gcp_emulator::{Config, Emulator, OpDurations};
use serde_json::{Value, json};

const P: &str = "net-proj";
const I: &str = "net-db";
const PW: &str = "Net-Root-1";

fn psql() -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().expect("psql")
}

/// psql with a libpq connection string; bounded (a hang fails the test).
async fn psql_run(conninfo: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(psql())
            .args([conninfo, "-Atc", "SELECT 'in'"])
            .env("PGPASSWORD", PW)
            .env("PGCONNECT_TIMEOUT", "15")
            .output(),
    )
    .await
    .expect("psql does not hang")
    .expect("psql runs");
    (out, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> bool {
    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "in"
}

/// A plaintext tokio-postgres session to `ip:5432`; bounded.
async fn plain(ip: &str) -> (Result<tokio_postgres::Client, tokio_postgres::Error>, Duration) {
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_postgres::Config::new()
            .host(ip)
            .port(5432)
            .user("postgres")
            .password(PW)
            .dbname("postgres")
            .ssl_mode(tokio_postgres::config::SslMode::Disable)
            .connect(tokio_postgres::NoTls),
    )
    .await
    .expect("tokio-postgres does not hang");
    let r = r.map(|(client, conn)| {
        tokio::spawn(conn);
        client
    });
    (r, started.elapsed())
}

async fn patch(base: &str, body: Value) -> (u16, Value) {
    let (code, op) = call(base, "PATCH", &format!("/v1/projects/{P}/instances/{I}"), Some(&body)).await;
    if code == 200 {
        let done = wait_sql_op(base, "v1", P, &op, 30).await;
        assert!(done.get("error").is_none(), "{done}");
    }
    (code, op)
}

async fn ip_configuration(base: &str) -> Value {
    call(base, "GET", &format!("/v1/projects/{P}/instances/{I}"), None).await.1["settings"]["ipConfiguration"].clone()
}

/// Logs in as `postgres` the way the Cloud SQL connectors do: a key of its own, an ephemeral
/// certificate for it from `generateEphemeralCert`, TLS 1.3 to `<ip>:3307` verifying the server
/// by the `dnsName` of `connectSettings` against its CA; then PostgreSQL's protocol inside.
async fn via_connector(base: &str, ip: &str) -> Result<tokio_postgres::Client, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let (code, cert) = call(
        base,
        "POST",
        &format!("/sql/v1beta4/projects/{P}/instances/{I}:generateEphemeralCert"),
        Some(&json!({"public_key": key.public_key_pem()})),
    )
    .await;
    assert_eq!(code, 200, "{cert}");
    let (code, settings) =
        call(base, "GET", &format!("/sql/v1beta4/projects/{P}/instances/{I}/connectSettings"), None).await;
    assert_eq!(code, 200, "{settings}");
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(settings["serverCaCert"]["cert"].as_str().unwrap().as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let client_cert =
        CertificateDer::from_pem_slice(cert["ephemeralCert"]["cert"].as_str().unwrap().as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client_cert], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    let name = ServerName::try_from(settings["dnsName"].as_str().unwrap().to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect((ip, 3307)).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (client, conn) = tokio_postgres::Config::new()
        .user("postgres")
        .password(PW)
        .dbname("postgres")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_raw(tls, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_clients_need_an_authorized_network_and_the_instances_ssl() {
    let emu =
        Emulator::start(Config { op_durations: OpDurations::uniform(Duration::from_millis(20)), ..Default::default() })
            .await
            .expect("emulator starts");
    let base = emu.base_url().to_string();
    let (code, op) = call(
        &base,
        "POST",
        &format!("/v1/projects/{P}/instances"),
        Some(&json!({"name": I, "databaseVersion": "POSTGRES_15", "rootPassword": PW, "settings": {"tier": "db-f1-micro"}})),
    )
    .await;
    assert_eq!(code, 200, "{op}");
    assert!(wait_sql_op(&base, "v1", P, &op, 60).await.get("error").is_none());
    let ip = emu.instance_address(P, I).expect("running").to_string();

    // No authorized network: closed at once, before PostgreSQL sees a byte.
    let (r, took) = plain(&ip).await;
    assert!(r.is_err() && took < Duration::from_secs(3), "refused at once: {took:?}");
    let (out, took) = psql_run(&format!("host={ip} user=postgres dbname=postgres")).await;
    assert!(!out.status.success() && took < Duration::from_secs(3), "{out:?} in {took:?}");
    assert!(stderr(&out).contains("server closed the connection unexpectedly"), "{}", stderr(&out));
    // The connector needs none.
    via_connector(&base, &ip)
        .await
        .expect("connector without an authorized network")
        .simple_query("SELECT 1")
        .await
        .unwrap();

    // An expired entry, or another network, lets no one in.
    let nets = json!([{"value": "127.0.0.1/32", "expirationTime": "2020-01-01T00:00:00Z"}, {"value": "10.9.0.0/16"}]);
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": {"authorizedNetworks": nets}}})).await.0, 200);
    assert!(plain(&ip).await.0.is_err());
    // This machine's address, authorized by a patch: in at once, plaintext allowed (the default).
    let nets = json!([{"value": "10.9.0.0/16", "name": "corp"}, {"value": "127.0.0.1/32", "name": "me"}]);
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": {"authorizedNetworks": nets}}})).await.0, 200);
    assert_eq!(ip_configuration(&base).await["sslMode"], "ALLOW_UNENCRYPTED_AND_ENCRYPTED");
    let (r, _) = plain(&ip).await;
    r.expect("authorized, plaintext allowed").simple_query("SELECT 1").await.unwrap();

    // The server CA, as an instance's serverCaCert and from listServerCas (both API versions).
    let (_, inst) = call(&base, "GET", &format!("/sql/v1beta4/projects/{P}/instances/{I}"), None).await;
    let ca = inst["serverCaCert"].clone();
    assert_eq!(ca["kind"], "sql#sslCert");
    assert_eq!(ca["instance"], I);
    assert!(ca["cert"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let sha1 = ca["sha1Fingerprint"].as_str().unwrap();
    assert!(sha1.len() == 40 && sha1.chars().all(|c| c.is_ascii_hexdigit()), "{sha1}");
    for f in ["commonName", "certSerialNumber", "createTime", "expirationTime"] {
        assert!(ca[f].as_str().is_some_and(|v| !v.is_empty()), "{f}: {ca}");
    }
    for prefix in ["v1", "sql/v1beta4"] {
        let (code, cas) =
            call(&base, "GET", &format!("/{prefix}/projects/{P}/instances/{I}/listServerCas"), None).await;
        assert_eq!(code, 200, "{cas}");
        assert_eq!(cas["kind"], "sql#instancesListServerCas");
        assert_eq!(cas["certs"], json!([ca]));
        assert_eq!(cas["activeVersion"], sha1);
    }
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca["cert"].as_str().unwrap()).unwrap();
    let verify_ca =
        format!("host={ip} user=postgres dbname=postgres sslmode=verify-ca sslrootcert={}", ca_file.path().display());
    // PostgreSQL serves TLS itself, with a certificate from that CA.
    let (out, _) = psql_run(&verify_ca).await;
    assert!(ok(&out), "verify-ca: {}", stderr(&out));

    // sslMode and requireSsl that disagree are refused, as Cloud SQL does.
    let (code, body) =
        patch(&base, json!({"settings": {"ipConfiguration": {"sslMode": "ENCRYPTED_ONLY", "requireSsl": true}}})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("are conflicting"), "{body}");

    // ENCRYPTED_ONLY: a plaintext client gets PostgreSQL's own refusal; TLS gets in.
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": {"sslMode": "ENCRYPTED_ONLY"}}})).await.0, 200);
    assert_eq!(ip_configuration(&base).await["requireSsl"], false);
    let (out, _) = psql_run(&format!("host={ip} user=postgres dbname=postgres sslmode=disable")).await;
    assert!(
        stderr(&out).contains(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption"
        ),
        "{}",
        stderr(&out)
    );
    let (r, _) = plain(&ip).await;
    assert!(r.unwrap_err().as_db_error().is_some_and(|e| e.message().contains("no encryption")));
    let (out, _) = psql_run(&verify_ca).await;
    assert!(ok(&out), "verify-ca under ENCRYPTED_ONLY: {}", stderr(&out));
    let (out, _) = psql_run(&format!("host={ip} user=postgres dbname=postgres sslmode=require")).await;
    assert!(ok(&out), "require under ENCRYPTED_ONLY: {}", stderr(&out));

    // The legacy requireSsl = true alone: the client-certificate mode; TLS without one is refused.
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": {"requireSsl": true}}})).await.0, 200);
    assert_eq!(ip_configuration(&base).await["sslMode"], "TRUSTED_CLIENT_CERTIFICATE_REQUIRED");
    let (out, _) = psql_run(&verify_ca).await;
    assert!(!out.status.success(), "no client certificate");
    assert!(stderr(&out).contains("connection requires a valid client certificate"), "{}", stderr(&out));

    // The connector satisfies every mode, with no authorized network.
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": {"authorizedNetworks": []}}})).await.0, 200);
    via_connector(&base, &ip)
        .await
        .expect("connector, client-certificate mode")
        .simple_query("SELECT 1")
        .await
        .unwrap();
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": {"sslMode": "ENCRYPTED_ONLY"}}})).await.0, 200);
    via_connector(&base, &ip).await.expect("connector, ENCRYPTED_ONLY").simple_query("SELECT 1").await.unwrap();
    let (out, took) = psql_run(&verify_ca).await;
    assert!(!out.status.success() && took < Duration::from_secs(3), "networks removed: closed again");

    // No public IP: no direct client, whatever the networks say.
    let cfg = json!({"ipv4Enabled": false, "authorizedNetworks": [{"value": "0.0.0.0/0"}]});
    assert_eq!(patch(&base, json!({"settings": {"ipConfiguration": cfg}})).await.0, 200);
    assert!(plain(&ip).await.0.is_err());
    emu.shutdown().await;
}
