//! Behaviour of the emulator over HTTP: long-running operations, Cloud SQL conflicts, IAM etags,
//! eventual consistency, faults, routing, auth, persistence. Tests that create Cloud SQL instances
//! start real PostgreSQL servers (`apt-get install postgresql` if they fail to find one).

mod common;

use std::time::Duration;

use base64::Engine;
use common::{call, call_with, wait_sql_op};
use gcp_emulator::{Config, Emulator, OpDurations};
use serde_json::{Value, json};

const P: &str = "proj-a";

async fn start(config: Config) -> Emulator {
    gcp_emulator::contract::ensure_documents();
    Emulator::start(config).await.expect("emulator starts")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_answer_501_not_404() {
    let emu = start(Config::default()).await;
    let base = emu.base_url();
    for (m, p) in [
        ("GET", "/v1/projects/p/roles"),
        ("POST", "/sql/v1beta4/projects/p/instances/i/clone"),
        ("GET", "/compute/v1/projects/p"),
    ] {
        let (code, body) = call(base, m, p, None).await;
        assert_eq!(code, 501, "{m} {p}: {body}");
        assert_eq!(body["error"]["status"], "UNIMPLEMENTED");
        assert!(body["error"]["message"].as_str().unwrap().contains("does not implement"), "{body}");
    }
    assert_eq!(emu.stats().requests["unimplemented"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_is_enforced_when_configured() {
    let emu = start(Config { access_token: Some("s3cret".into()), ..Config::default() }).await;
    let base = emu.base_url();
    let (code, body) = call(base, "GET", "/v1/projects/p", None).await;
    assert_eq!(code, 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let (code, _) = call_with(base, "GET", "/v1/projects/p", None, &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(code, 401);
    let (code, body) = call_with(base, "GET", "/v1/projects/p", None, &[("Authorization", "Bearer s3cret")]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["projectId"], "p");
    assert_eq!(body["projectNumber"].as_str().unwrap().len(), 12, "projectNumber is an int64 string");
    // The admin API needs no token.
    let (code, _) = call(base, "GET", "/_emulator/health", None).await;
    assert_eq!(code, 200);
}

/// One instance walks through the whole Cloud SQL life: LRO progression, operationInProgress,
/// settingsVersion, a failed operation, deletion protection, delete, and the name-reuse window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_sql_instance_lifecycle() {
    let mut durations = OpDurations::default();
    durations.per_type.insert("sql.CREATE".into(), ms(1500));
    let emu = start(Config { op_durations: durations, ..Config::default() }).await;
    let base = emu.base_url();
    let insert = json!({"name": "db1", "databaseVersion": "POSTGRES_15", "region": "us-central1", "rootPassword": "rootpw",
                        "settings": {"tier": "db-f1-micro", "databaseFlags": [{"name": "cloudsql.iam_authentication", "value": "on"}],
                                     // This test's own address (loopback) may connect directly.
                                     "ipConfiguration": {"authorizedNetworks": [{"value": "127.0.0.1/32"}]}}});
    // Validation first: a bad name and a missing tier are 400s.
    let (code, _) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}/instances"),
        Some(&json!({"name": "Bad_Name", "settings": {"tier": "x"}})),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(base, "POST", &format!("/v1/projects/{P}/instances"), Some(&json!({"name": "db1"}))).await;
    assert_eq!(code, 400);

    let (code, op) = call(base, "POST", &format!("/sql/v1beta4/projects/{P}/instances"), Some(&insert)).await;
    assert_eq!(code, 200, "{op}");
    assert_eq!(op["kind"], "sql#operation");
    assert_eq!(op["operationType"], "CREATE");
    assert_eq!(op["status"], "PENDING");
    let (_, inst) = call(base, "GET", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(inst["state"], "PENDING_CREATE");
    // Users and databases cannot be touched before the instance runs.
    let (code, body) = call(base, "GET", &format!("/v1/projects/{P}/instances/db1/users"), None).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["errors"][0]["reason"], "invalid");
    // While the create runs, any other change to the instance is refused.
    let (code, body) = call(
        base,
        "PATCH",
        &format!("/v1/projects/{P}/instances/db1"),
        Some(&json!({"settings": {"tier": "db-g1-small"}})),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["errors"][0]["reason"], "operationInProgress");
    // And the same name is taken.
    let (code, body) = call(base, "POST", &format!("/v1/projects/{P}/instances"), Some(&insert)).await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["errors"][0]["reason"], "instanceAlreadyExists");
    // PENDING -> RUNNING -> DONE.
    let mut seen = vec!["PENDING".to_string()];
    let name = op["name"].as_str().unwrap();
    for _ in 0..600 {
        let (_, o) = call(base, "GET", &format!("/v1/projects/{P}/operations/{name}"), None).await;
        let s = o["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "DONE" {
            assert!(o.get("error").is_none(), "create failed: {o}");
            assert!(o["endTime"].is_string());
            break;
        }
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(seen, ["PENDING", "RUNNING", "DONE"]);
    let (_, inst) = call(base, "GET", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(inst["state"], "RUNNABLE");
    assert_eq!(inst["connectionName"], format!("{P}:us-central1:db1"));
    assert_eq!(inst["ipAddresses"][0]["type"], "PRIMARY");
    assert_eq!(inst["settings"]["settingsVersion"], "1");
    assert!(inst.get("rootPassword").is_none());
    // An address of its own, PostgreSQL at Cloud SQL's port (the server itself behind it).
    let port = instance_addr(&inst);
    assert!(port.ip().is_loopback() && port.ip() != std::net::Ipv4Addr::LOCALHOST, "{port}");
    assert_eq!(port.port(), 5432);
    assert_eq!(Some(port.ip()), emu.instance_address(P, "db1").map(std::net::IpAddr::V4));
    assert!(inst.get("emulatorPostgresPort").is_none(), "a field Google never returns");
    // What connectors read first (its answer is held to the ConnectSettings schema).
    let (code, cs) = call(base, "GET", &format!("/sql/v1beta4/projects/{P}/instances/db1/connectSettings"), None).await;
    assert_eq!(code, 200, "{cs}");
    assert_eq!(cs["kind"], "sql#connectSettings");

    // The root password works against the real server; postgres is not a superuser.
    let pg = connect(port, "postgres", "rootpw", "postgres").await;
    let row = pg
        .query_one("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'postgres'", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2)), (false, true, true));

    // settingsVersion goes up on every change, and is an int64 string.
    for expected in ["2", "3"] {
        let (code, op) = call(
            base,
            "PATCH",
            &format!("/v1/projects/{P}/instances/db1"),
            Some(&json!({"settings": {"userLabels": {"v": expected}}})),
        )
        .await;
        assert_eq!(code, 200, "{op}");
        wait_sql_op(base, "v1", P, &op, 30).await;
        let (_, inst) = call(base, "GET", &format!("/v1/projects/{P}/instances/db1"), None).await;
        assert_eq!(inst["settings"]["settingsVersion"], expected);
        assert_eq!(inst["settings"]["userLabels"]["v"], expected);
        assert_eq!(inst["settings"]["tier"], "db-f1-micro", "patch merges");
    }
    // A stale settingsVersion is refused.
    let (code, _) = call(
        base,
        "PATCH",
        &format!("/v1/projects/{P}/instances/db1"),
        Some(&json!({"settings": {"settingsVersion": "1", "tier": "db-g1-small"}})),
    )
    .await;
    assert_eq!(code, 412);
    // update (PUT) replaces the settings block: the labels are gone, the version goes on.
    let (code, op) = call(
        base,
        "PUT",
        &format!("/sql/v1beta4/projects/{P}/instances/db1"),
        Some(&json!({"name": "db1", "settings": {"tier": "db-g1-small", "settingsVersion": "3",
                                                  "ipConfiguration": {"authorizedNetworks": [{"value": "127.0.0.1/32"}]}}})),
    )
    .await;
    assert_eq!(code, 200, "{op}");
    wait_sql_op(base, "sql/v1beta4", P, &op, 30).await;
    let (_, inst) = call(base, "GET", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(inst["settings"]["settingsVersion"], "4");
    assert_eq!(inst["settings"]["tier"], "db-g1-small");
    assert!(inst["settings"].get("userLabels").is_none(), "{inst}");
    // A downgrade of the major version is refused.
    let (code, _) = call(
        base,
        "PATCH",
        &format!("/v1/projects/{P}/instances/db1"),
        Some(&json!({"databaseVersion": "POSTGRES_14"})),
    )
    .await;
    assert_eq!(code, 400);

    users_and_databases(base, port).await;

    // Restart really restarts the server.
    let (code, op) = call(base, "POST", &format!("/sql/v1beta4/projects/{P}/instances/db1/restart"), None).await;
    assert_eq!((code, op["operationType"].as_str()), (200, Some("RESTART")));
    assert!(wait_sql_op(base, "sql/v1beta4", P, &op, 60).await.get("error").is_none());
    assert!(pg.simple_query("SELECT 1").await.is_err(), "the old session was cut by the restart");
    let pg = connect(port, "postgres", "rootpw", "postgres").await;

    // A statement the server refuses fails the operation: DONE with an error, as the real API does.
    let (_, op) =
        call(base, "POST", &format!("/v1/projects/{P}/instances/db1/databases"), Some(&json!({"name": "postgres"})))
            .await;
    let done = wait_sql_op(base, "v1", P, &op, 30).await;
    assert_eq!(done["error"]["errors"][0]["code"], "ERROR_RDBMS", "{done}");

    // Deletion protection blocks delete.
    let (_, op) = call(
        base,
        "PATCH",
        &format!("/v1/projects/{P}/instances/db1"),
        Some(&json!({"settings": {"deletionProtectionEnabled": true}})),
    )
    .await;
    wait_sql_op(base, "v1", P, &op, 30).await;
    let (code, body) = call(base, "DELETE", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("protected"));
    let (_, op) = call(
        base,
        "PATCH",
        &format!("/v1/projects/{P}/instances/db1"),
        Some(&json!({"settings": {"deletionProtectionEnabled": false}})),
    )
    .await;
    wait_sql_op(base, "v1", P, &op, 30).await;
    drop(pg);
    let (code, op) = call(base, "DELETE", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(code, 200);
    wait_sql_op(base, "v1", P, &op, 30).await;
    let (code, body) = call(base, "GET", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(code, 404);
    assert_eq!(body["error"]["errors"][0]["reason"], "instanceDoesNotExist");
    assert!(tokio::net::TcpStream::connect(port).await.is_err(), "server stopped");

    // The name stays reserved within the reuse window...
    let (code, body) = call(base, "POST", &format!("/v1/projects/{P}/instances"), Some(&insert)).await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["errors"][0]["reason"], "instanceAlreadyExists");
    // ...and is free again once the window (configurable) has passed.
    let (code, _) = call(base, "PATCH", "/_emulator/settings", Some(&json!({"name_reuse_window_s": 0}))).await;
    assert_eq!(code, 200);
    let (code, op) = call(base, "POST", &format!("/v1/projects/{P}/instances"), Some(&insert)).await;
    assert_eq!(code, 200, "{op}");
    assert!(emu.settle(Duration::from_secs(60)).await);
    common::assert_contract_kept(&emu);
}

/// Users and databases of instance db1 change the real server.
async fn users_and_databases(base: &str, port: std::net::SocketAddr) {
    let inst = format!("/v1/projects/{P}/instances/db1");
    let run = |method: &'static str, path: String, body: Option<Value>| async move {
        let (code, op) = call(base, method, &path, body.as_ref()).await;
        assert_eq!(code, 200, "{method} {path}: {op}");
        let done = wait_sql_op(base, "v1", P, &op, 30).await;
        assert!(done.get("error").is_none(), "{method} {path}: {done}");
    };
    run("POST", format!("{inst}/databases"), Some(json!({"name": "appdb"}))).await;
    run("POST", format!("{inst}/users"), Some(json!({"name": "app", "password": "pw1"}))).await;
    // An IAM service account's user must be the trimmed email on PostgreSQL.
    let (code, body) = call(
        base,
        "POST",
        &format!("{inst}/users"),
        Some(&json!({"name": "robot@proj-a.iam.gserviceaccount.com", "type": "CLOUD_IAM_SERVICE_ACCOUNT"})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    run(
        "POST",
        format!("{inst}/users"),
        Some(json!({"name": "robot@proj-a.iam", "type": "CLOUD_IAM_SERVICE_ACCOUNT"})),
    )
    .await;
    let (code, u) = call(base, "GET", &format!("{inst}/users/robot%40proj-a.iam"), None).await;
    assert_eq!((code, u["type"].as_str()), (200, Some("CLOUD_IAM_SERVICE_ACCOUNT")));
    let (_, users) = call(base, "GET", &format!("{inst}/users"), None).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 3, "{users}");
    assert!(users["items"].as_array().unwrap().iter().all(|u| u.get("password").is_none()));
    let (_, d) = call(base, "GET", &format!("{inst}/databases/appdb"), None).await;
    assert_eq!((d["charset"].as_str(), d["collation"].as_str()), (Some("UTF8"), Some("en_US.UTF8")));
    run("PATCH", format!("{inst}/databases/appdb"), Some(json!({"collation": "C"}))).await;
    assert_eq!(call(base, "GET", &format!("{inst}/databases/appdb"), None).await.1["collation"], "C");

    let app = connect(port, "app", "pw1", "appdb").await;
    app.batch_execute("CREATE TABLE t (x int)").await.expect("built-in users can create in API databases");
    drop(app);
    run("PUT", format!("{inst}/users?name=app&host="), Some(json!({"name": "app", "password": "pw2"}))).await;
    connect(port, "app", "pw2", "appdb").await;
    let admin = connect(port, "postgres", "rootpw", "postgres").await;
    run("DELETE", format!("{inst}/users?name=robot%40proj-a.iam&host="), None).await;
    let n: i64 =
        admin.query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'robot@proj-a.iam'", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "users.delete drops the role");
    run("DELETE", format!("{inst}/databases/appdb"), None).await;
    let n: i64 = admin.query_one("SELECT count(*) FROM pg_database WHERE datname = 'appdb'", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "databases.delete drops the database");
    assert_eq!(call(base, "GET", &format!("{inst}/databases/appdb"), None).await.0, 404);
}

/// The instance's `PRIMARY` address, port 5432.
fn instance_addr(inst: &Value) -> std::net::SocketAddr {
    let ip: std::net::IpAddr = inst["ipAddresses"][0]["ipAddress"].as_str().expect("an ip").parse().expect("an ip");
    std::net::SocketAddr::new(ip, 5432)
}

async fn connect(port: std::net::SocketAddr, user: &str, password: &str, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host(port.ip().to_string())
        .port(port.port())
        .user(user)
        .password(password)
        .dbname(db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policies_use_etags_and_drop_empty_bindings() {
    let emu = start(Config::default()).await;
    let base = emu.base_url();
    let (_, p0) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}:getIamPolicy"),
        Some(&json!({"options": {"requestedPolicyVersion": 3}})),
    )
    .await;
    assert_eq!(p0["etag"], "ACAB");
    let set = |etag: &Value, bindings: Value| json!({"policy": {"etag": etag, "bindings": bindings}});
    let b1 =
        json!([{"role": "roles/viewer", "members": ["user:a@example.com"]}, {"role": "roles/editor", "members": []}]);
    let (code, p1) =
        call(base, "POST", &format!("/v1/projects/{P}:setIamPolicy"), Some(&set(&p0["etag"], b1.clone()))).await;
    assert_eq!(code, 200, "{p1}");
    assert_eq!(
        p1["bindings"],
        json!([{"role": "roles/viewer", "members": ["user:a@example.com"]}]),
        "empty binding dropped"
    );
    assert_ne!(p1["etag"], p0["etag"]);
    // The stale etag is refused with 409 ABORTED.
    let (code, body) = call(base, "POST", &format!("/v1/projects/{P}:setIamPolicy"), Some(&set(&p0["etag"], b1))).await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["status"], "ABORTED");
    // v3 sees the same policy; removing the last member removes the binding.
    let (_, p3) = call(base, "POST", &format!("/v3/projects/{P}:getIamPolicy"), None).await;
    assert_eq!(p3, p1);
    let (code, p4) = call(
        base,
        "POST",
        &format!("/v3/projects/{P}:setIamPolicy"),
        Some(&set(&p1["etag"], json!([{"role": "roles/viewer", "members": []}]))),
    )
    .await;
    assert_eq!(code, 200);
    assert!(p4.get("bindings").is_none(), "{p4}");
    let (_, perms) =
        call(base, "POST", &format!("/v1/projects/{P}:testIamPermissions"), Some(&json!({"permissions": ["a.b.c"]})))
            .await;
    assert_eq!(perms, json!({"permissions": ["a.b.c"]}));
    // A service account's own policy behaves the same.
    let (code, sa) =
        call(base, "POST", &format!("/v1/projects/{P}/serviceAccounts"), Some(&json!({"accountId": "robot-one"})))
            .await;
    assert_eq!(code, 200, "{sa}");
    let sa_path = format!("/v1/projects/-/serviceAccounts/{}", sa["email"].as_str().unwrap().replace('@', "%40"));
    let (_, sp) = call(base, "POST", &format!("{sa_path}:getIamPolicy"), None).await;
    let wi = json!([{"role": "roles/iam.workloadIdentityUser", "members": [format!("serviceAccount:{P}.svc.id.goog[ns/ksa]")]}]);
    let (code, sp2) = call(base, "POST", &format!("{sa_path}:setIamPolicy"), Some(&set(&sp["etag"], wi.clone()))).await;
    assert_eq!(code, 200, "{sp2}");
    let (code, _) = call(base, "POST", &format!("{sa_path}:setIamPolicy"), Some(&set(&sp["etag"], wi))).await;
    assert_eq!(code, 409);
    common::assert_contract_kept(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_validate_and_are_eventually_consistent() {
    let emu = start(Config { sa_visibility_delay: ms(2000), ..Config::default() }).await;
    let base = emu.base_url();
    let (code, body) =
        call(base, "POST", &format!("/v1/projects/{P}/serviceAccounts"), Some(&json!({"accountId": "Bad"}))).await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    let (code, sa) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}/serviceAccounts"),
        Some(&json!({"accountId": "late-robot", "serviceAccount": {"displayName": "Late"}})),
    )
    .await;
    assert_eq!(code, 200, "{sa}");
    let email = sa["email"].as_str().unwrap().to_string();
    assert_eq!(email, format!("late-robot@{P}.iam.gserviceaccount.com"));
    // A second create is a conflict even while the account is invisible.
    let (code, body) =
        call(base, "POST", &format!("/v1/projects/{P}/serviceAccounts"), Some(&json!({"accountId": "late-robot"})))
            .await;
    assert_eq!((code, body["error"]["status"].as_str()), (409, Some("ALREADY_EXISTS")));
    let get = format!("/v1/projects/-/serviceAccounts/{email}");
    let (code, _) = call(base, "GET", &get, None).await;
    assert_eq!(code, 404, "invisible right after create");
    let bind = json!({"policy": {"bindings": [{"role": "roles/cloudsql.client", "members": [format!("serviceAccount:{email}")]}]}});
    let (code, body) = call(base, "POST", &format!("/v1/projects/{P}:setIamPolicy"), Some(&bind)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("does not exist"));
    tokio::time::sleep(ms(2100)).await;
    let (code, got) = call(base, "GET", &get, None).await;
    assert_eq!(code, 200);
    assert_eq!(got["displayName"], "Late");
    // Lookup by unique id works too.
    let (code, _) =
        call(base, "GET", &format!("/v1/projects/-/serviceAccounts/{}", got["uniqueId"].as_str().unwrap()), None).await;
    assert_eq!(code, 200);
    let (code, _) = call(base, "POST", &format!("/v1/projects/{P}:setIamPolicy"), Some(&bind)).await;
    assert_eq!(code, 200);
    // Patch, list, delete.
    let (code, patched) =
        call(base, "PATCH", &get, Some(&json!({"serviceAccount": {"description": "d"}, "updateMask": "description"})))
            .await;
    assert_eq!((code, patched["description"].as_str()), (200, Some("d")));
    let (_, list) = call(base, "GET", &format!("/v1/projects/{P}/serviceAccounts"), None).await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);
    let (code, _) = call(base, "DELETE", &get, None).await;
    assert_eq!(code, 200);
    let (_, list) = call(base, "GET", &format!("/v1/projects/{P}/serviceAccounts"), None).await;
    assert!(list.get("accounts").is_none(), "accounts omitted when empty: {list}");
    common::assert_contract_kept(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_keys_are_real_rsa_keys() {
    use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
    let emu = start(Config::default()).await;
    let base = emu.base_url();
    let (_, sa) =
        call(base, "POST", &format!("/v1/projects/{P}/serviceAccounts"), Some(&json!({"accountId": "key-robot"})))
            .await;
    let keys = format!("/v1/projects/-/serviceAccounts/{}/keys", sa["email"].as_str().unwrap());
    let (code, key) = call(base, "POST", &keys, Some(&json!({"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE"}))).await;
    assert_eq!(code, 200, "{key}");
    let creds: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD.decode(key["privateKeyData"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(creds["type"], "service_account");
    assert_eq!(creds["client_email"], sa["email"]);
    let key_id = key["name"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert_eq!(creds["private_key_id"], key_id.as_str());
    assert_eq!(key_id.len(), 40);
    let private =
        rsa::RsaPrivateKey::from_pkcs8_pem(creds["private_key"].as_str().unwrap()).expect("a real PKCS#8 RSA key");
    // keys.get gives the matching public key; keys.list never the private part.
    let (_, got) = call(base, "GET", &format!("{keys}/{key_id}?publicKeyType=TYPE_X509_PEM_FILE"), None).await;
    let public_pem = String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(got["publicKeyData"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(rsa::RsaPublicKey::from_public_key_pem(&public_pem).unwrap(), private.to_public_key());
    let (_, list) = call(base, "GET", &format!("{keys}?keyTypes=USER_MANAGED"), None).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert!(list["keys"][0].get("privateKeyData").is_none());
    let (code, _) = call(base, "DELETE", &format!("{keys}/{key_id}"), None).await;
    assert_eq!(code, 200);
    let (code, _) = call(base, "GET", &format!("{keys}/{key_id}"), None).await;
    assert_eq!(code, 404);
    common::assert_contract_kept(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_injected_by_method_and_reproducible() {
    let emu = start(Config::default()).await;
    let base = emu.base_url();
    let spec = json!({"seed": 42, "rules": [{"method": "cloudresourcemanager.*", "code": 429, "rate": 0.5, "retry_delay": "2s"}]});
    let run = || async {
        let (code, _) = call(base, "PUT", "/_emulator/faults", Some(&spec)).await;
        assert_eq!(code, 200);
        let mut codes = Vec::new();
        for _ in 0..20 {
            codes.push(call(base, "GET", "/v1/projects/p", None).await.0);
        }
        codes
    };
    let first = run().await;
    assert_eq!(first, run().await, "same seed, same faults");
    assert!(first.contains(&429) && first.contains(&200), "{first:?}");
    let (code, body) = loop {
        let r = call(base, "GET", "/v3/projects/p", None).await;
        if r.0 != 200 {
            break r;
        }
    };
    assert_eq!(code, 429);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        body["error"]["details"][0],
        json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"})
    );
    // Other methods are untouched; 503 and 500 work too; latency is added.
    assert_eq!(call(base, "GET", &format!("/v1/projects/{P}/serviceAccounts"), None).await.0, 200);
    for code in [503u16, 500] {
        let spec =
            json!({"latency_ms": 150, "rules": [{"method": "iam.serviceAccounts.list", "code": code, "rate": 1.0}]});
        call(base, "PUT", "/_emulator/faults", Some(&spec)).await;
        let t = std::time::Instant::now();
        assert_eq!(call(base, "GET", &format!("/v1/projects/{P}/serviceAccounts"), None).await.0, code);
        assert!(t.elapsed() >= ms(150));
    }
    let (_, stats) = call(base, "GET", "/_emulator/stats", None).await;
    assert_eq!(stats["requests"]["cloudresourcemanager.v1.projects.get"], 40);
    assert_eq!(stats["requests"]["iam.serviceAccounts.list"], 3);
    assert_eq!(stats["faults_injected"]["iam.serviceAccounts.list"], 2);
    call(base, "DELETE", "/_emulator/faults", None).await;
    assert_eq!(call(base, "GET", &format!("/v1/projects/{P}/serviceAccounts"), None).await.0, 200);
    call(base, "DELETE", "/_emulator/stats", None).await;
    assert_eq!(emu.stats().total, 0);
    // Bad specs are refused.
    let (code, _) =
        call(base, "PUT", "/_emulator/faults", Some(&json!({"rules": [{"method": "*", "code": 404, "rate": 1.0}]})))
            .await;
    assert_eq!(code, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_clusters_and_node_pools() {
    let mut durations = OpDurations::default();
    durations.per_type.insert("container".into(), ms(300));
    // Long enough that the checks made while they run cannot miss them on a loaded machine.
    durations.per_type.insert("container.CREATE_CLUSTER".into(), ms(1500));
    durations.per_type.insert("container.UPDATE_CLUSTER".into(), ms(1500));
    let emu =
        start(Config { op_durations: durations, gke_endpoint: "https://127.0.0.1:6443".into(), ..Config::default() })
            .await;
    let base = emu.base_url();
    let loc = format!("/v1/projects/{P}/locations/us-central1");
    let bad = json!({"cluster": {"name": "c1", "workloadIdentityConfig": {"workloadPool": "other.svc.id.goog"}}});
    assert_eq!(call(base, "POST", &format!("{loc}/clusters"), Some(&bad)).await.0, 400);
    let body = json!({"parent": format!("projects/{P}/locations/us-central1"),
                      "cluster": {"name": "c1", "initialNodeCount": 1, "workloadIdentityConfig": {"workloadPool": format!("{P}.svc.id.goog")}}});
    let (code, op) = call(base, "POST", &format!("{loc}/clusters"), Some(&body)).await;
    assert_eq!(code, 200, "{op}");
    assert_eq!(op["operationType"], "CREATE_CLUSTER");
    assert!(!op["name"].as_str().unwrap().contains('/'));
    assert_eq!(call(base, "POST", &format!("{loc}/clusters"), Some(&body)).await.0, 409);
    let (_, c) = call(base, "GET", &format!("{loc}/clusters/c1"), None).await;
    assert_eq!(c["status"], "PROVISIONING");
    let op_path = format!("{loc}/operations/{}", op["name"].as_str().unwrap());
    wait_gke(base, &op_path).await;
    let (_, c) = call(base, "GET", &format!("{loc}/clusters/c1"), None).await;
    assert_eq!(c["status"], "RUNNING");
    assert_eq!(c["endpoint"], "127.0.0.1:6443");
    let ca = base64::engine::general_purpose::STANDARD
        .decode(c["masterAuth"]["clusterCaCertificate"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(ca).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(c["workloadIdentityConfig"]["workloadPool"], format!("{P}.svc.id.goog"));
    assert_eq!(c["nodePools"][0]["name"], "default-pool");
    // A ClusterUpdate with two fields is rejected; one field works.
    let two =
        json!({"update": {"desiredMasterVersion": "1.32", "desiredWorkloadIdentityConfig": {"workloadPool": ""}}});
    let (code, body) = call(base, "PUT", &format!("{loc}/clusters/c1"), Some(&two)).await;
    assert_eq!(code, 400, "{body}");
    let (code, op) = call(
        base,
        "PUT",
        &format!("{loc}/clusters/c1"),
        Some(&json!({"update": {"desiredWorkloadIdentityConfig": {"workloadPool": ""}}})),
    )
    .await;
    assert_eq!(code, 200);
    // A second change while the first runs is refused.
    let (code, _) =
        call(base, "PUT", &format!("{loc}/clusters/c1"), Some(&json!({"update": {"desiredMasterVersion": "1.32"}})))
            .await;
    assert_eq!(code, 400);
    wait_gke(base, &format!("{loc}/operations/{}", op["name"].as_str().unwrap())).await;
    let (_, c) = call(base, "GET", &format!("{loc}/clusters/c1"), None).await;
    assert!(c.get("workloadIdentityConfig").is_none());
    // Node pool update: only name and the changed field.
    let np = format!("{loc}/clusters/c1/nodePools/default-pool");
    let (code, op) =
        call(base, "PUT", &np, Some(&json!({"name": "x", "workloadMetadataConfig": {"mode": "GKE_METADATA"}}))).await;
    assert_eq!((code, op["operationType"].as_str()), (200, Some("UPGRADE_NODES")));
    wait_gke(base, &format!("{loc}/operations/{}", op["name"].as_str().unwrap())).await;
    let (_, pool) = call(base, "GET", &np, None).await;
    assert_eq!(pool["config"]["workloadMetadataConfig"]["mode"], "GKE_METADATA");
    let (_, list) = call(base, "GET", &format!("/v1/projects/{P}/locations/-/clusters"), None).await;
    assert_eq!(list["clusters"].as_array().unwrap().len(), 1);
    // The legacy zones/ form reaches the same cluster.
    let (code, legacy) = call(base, "GET", &format!("/v1/projects/{P}/zones/us-central1/clusters/c1"), None).await;
    assert_eq!((code, legacy["name"].as_str()), (200, Some("c1")));
    let (_, op) = call(base, "DELETE", &format!("{loc}/clusters/c1"), None).await;
    wait_gke(base, &format!("{loc}/operations/{}", op["name"].as_str().unwrap())).await;
    assert_eq!(call(base, "GET", &format!("{loc}/clusters/c1"), None).await.0, 404);
    common::assert_contract_kept(&emu);
}

async fn wait_gke(base: &str, op_path: &str) {
    for _ in 0..200 {
        let (code, o) = call(base, "GET", op_path, None).await;
        assert_eq!(code, 200, "{o}");
        if o["status"] == "DONE" {
            assert!(o.get("error").is_none(), "{o}");
            return;
        }
        tokio::time::sleep(ms(50)).await;
    }
    panic!("operation {op_path} not done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_usage_enable_list_and_operations() {
    let emu = start(Config::default()).await;
    let base = emu.base_url();
    let svc = format!("/v1/projects/{P}/services/sqladmin.googleapis.com");
    let (_, s) = call(base, "GET", &svc, None).await;
    assert_eq!(s["state"], "DISABLED");
    assert!(
        s["name"].as_str().unwrap().starts_with("projects/1") || s["name"].as_str().unwrap().starts_with("projects/"),
        "{s}"
    );
    assert!(!s["name"].as_str().unwrap().contains(P), "names use the project number: {s}");
    let (code, op) = call(base, "POST", &format!("{svc}:enable"), Some(&json!({}))).await;
    assert_eq!(code, 200);
    assert_eq!(op["done"], true);
    assert_eq!(op["response"]["service"]["state"], "ENABLED");
    let (_, s) = call(base, "GET", &svc, None).await;
    assert_eq!(s["state"], "ENABLED");
    // With a duration, the operation is polled.
    emu.set_op_durations(OpDurations::uniform(ms(300)));
    let (_, op) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}/services:batchEnable"),
        Some(&json!({"serviceIds": ["container.googleapis.com", "iam.googleapis.com"]})),
    )
    .await;
    assert_eq!(op["done"], false);
    let path = format!("/v1/{}", op["name"].as_str().unwrap());
    let done = loop {
        let (code, o) = call(base, "GET", &path, None).await;
        assert_eq!(code, 200, "{o}");
        if o["done"] == true {
            break o;
        }
        tokio::time::sleep(ms(50)).await;
    };
    assert_eq!(done["response"]["services"].as_array().unwrap().len(), 2);
    let (_, list) = call(base, "GET", &format!("/v1/projects/{P}/services?filter=state:ENABLED"), None).await;
    let names: Vec<&str> =
        list["services"].as_array().unwrap().iter().map(|s| s["config"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["container.googleapis.com", "iam.googleapis.com", "sqladmin.googleapis.com"]);
    emu.set_op_durations(OpDurations::default());
    let (_, op) =
        call(base, "POST", &format!("{svc}:disable"), Some(&json!({"disableDependentServices": false}))).await;
    assert_eq!(op["response"]["service"]["state"], "DISABLED");
    assert_eq!(call(base, "GET", &svc, None).await.1["state"], "DISABLED");
    common::assert_contract_kept(&emu);
}

/// With a state directory, resources (and the PostgreSQL data) survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_across_restarts() {
    let dir = tempfile::Builder::new().prefix("emu-state").tempdir_in("/tmp").unwrap();
    let config = Config { state_dir: Some(dir.path().to_path_buf()), ..Config::default() };
    let emu = start(config.clone()).await;
    let base = emu.base_url().to_string();
    call(&base, "POST", &format!("/v1/projects/{P}/serviceAccounts"), Some(&json!({"accountId": "kept-robot"}))).await;
    let (code, op) = call(&base, "POST", &format!("/v1/projects/{P}/instances"), Some(&json!({"name": "kept", "databaseVersion": "POSTGRES_15", "rootPassword": "pw", "settings": {"tier": "db-f1-micro", "ipConfiguration": {"authorizedNetworks": [{"value": "127.0.0.1/32"}]}}}))).await;
    assert_eq!(code, 200, "{op}");
    assert_eq!(wait_sql_op(&base, "v1", P, &op, 60).await.get("error"), None);
    let (_, op) =
        call(&base, "POST", &format!("/v1/projects/{P}/instances/kept/databases"), Some(&json!({"name": "appdb"})))
            .await;
    wait_sql_op(&base, "v1", P, &op, 30).await;
    emu.shutdown().await;

    let emu = start(config).await;
    let base = emu.base_url().to_string();
    assert_eq!(
        call(&base, "GET", &format!("/v1/projects/-/serviceAccounts/kept-robot@{P}.iam.gserviceaccount.com"), None)
            .await
            .0,
        200
    );
    let (_, inst) = call(&base, "GET", &format!("/v1/projects/{P}/instances/kept"), None).await;
    assert_eq!(inst["state"], "RUNNABLE", "{inst}");
    // Restarted at the address it had.
    let pg = connect(instance_addr(&inst), "postgres", "pw", "appdb").await;
    pg.simple_query("SELECT 1").await.unwrap();
    // Reset forgets everything and removes the servers.
    let (code, _) = call(&base, "POST", "/_emulator/reset", None).await;
    assert_eq!(code, 200);
    assert_eq!(call(&base, "GET", &format!("/v1/projects/{P}/instances/kept"), None).await.0, 404);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_settings_durations_and_settle() {
    let emu = start(Config::default()).await;
    let base = emu.base_url();
    let (code, s) = call(base, "GET", "/_emulator/settings", None).await;
    assert_eq!(code, 200);
    assert_eq!(s["name_reuse_window_s"], 7 * 24 * 3600);
    assert_eq!(s["op_durations"]["default"], 0);
    let d = json!({"default": 0, "per_type": {"serviceusage.ENABLE": 400}});
    assert_eq!(call(base, "PUT", "/_emulator/op-durations", Some(&d)).await.0, 200);
    assert_eq!(emu.settings().op_durations.lookup("serviceusage", "ENABLE"), ms(400));
    let (_, op) = call(base, "POST", &format!("/v1/projects/{P}/services/iam.googleapis.com:enable"), None).await;
    assert_eq!(op["done"], false);
    let (code, _) = call(base, "POST", "/_emulator/settle?timeout_ms=10000", None).await;
    assert_eq!(code, 200);
    let (_, op) = call(base, "GET", &format!("/v1/{}", op["name"].as_str().unwrap()), None).await;
    assert_eq!(op["done"], true);
    let (code, s) = call(base, "PATCH", "/_emulator/settings", Some(&json!({"sa_visibility_delay_ms": 5}))).await;
    assert_eq!((code, s["sa_visibility_delay_ms"].as_u64()), (200, Some(5)));
    let (code, _) = call(base, "PATCH", "/_emulator/settings", Some(&json!({"nope": 1}))).await;
    assert_eq!(code, 400);
    let (code, body) = call(base, "GET", "/_emulator/nothing", None).await;
    assert_eq!(code, 501, "{body}");
    let (code, state) = call(base, "GET", "/_emulator/state", None).await;
    assert_eq!(code, 200);
    assert_eq!(state["services"][P]["iam.googleapis.com"], true);
}
