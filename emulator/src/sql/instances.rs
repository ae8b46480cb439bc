//! Cloud SQL instances (API floor): insert/get/list/patch/update/delete/restart, and
//! `listServerCas`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::postgres::{Setup, Tls, ident, literal};
use super::{SqlRequest, check_no_op, instance_not_found, new_op, render_op};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::state::{OpError, SqlInstance};
use crate::util::{merge, now_ms, project_number, random_hex, rfc3339, str_field};

/// Handles `sql.instances.*`.
pub async fn handle(app: &Arc<App>, r: &SqlRequest<'_>, method: &str) -> Result<Value, ApiError> {
    let base = r.link_base(app);
    match method {
        "sql.instances.insert" => insert(app, r),
        "sql.instances.list" => {
            let st = lock(&app.state);
            let prefix = format!("{}/", r.project);
            let items: Vec<Value> = st
                .sql
                .instances
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, i)| render_with_ca(app, &base, i))
                .collect();
            Ok(if items.is_empty() {
                json!({"kind": "sql#instancesList"})
            } else {
                json!({"kind": "sql#instancesList", "items": items})
            })
        }
        "sql.instances.get" => {
            let st = lock(&app.state);
            let inst = st.sql.instances.get(&key(r)).ok_or_else(instance_not_found)?;
            Ok(render_with_ca(app, &base, inst))
        }
        "sql.instances.listServerCas" => {
            let st = lock(&app.state);
            st.sql.instances.get(&key(r)).ok_or_else(instance_not_found)?;
            let c = super::connectors(app);
            Ok(json!({
                "kind": "sql#instancesListServerCas",
                "certs": [c.server_ca_cert(r.rest[1])],
                "activeVersion": c.ca_sha1(),
            }))
        }
        "sql.instances.patch" | "sql.instances.update" => modify(app, r, method == "sql.instances.update"),
        "sql.instances.delete" => delete(app, r),
        "sql.instances.restart" => restart(app, r),
        _ => Err(ApiError::unimplemented(r.req.method.as_str(), &r.req.path)),
    }
}

fn key(r: &SqlRequest<'_>) -> String {
    format!("{}/{}", r.project, r.rest[1])
}

/// The instance JSON with its link.
pub fn render(base: &str, inst: &SqlInstance) -> Value {
    let mut v = inst.resource.clone();
    v["selfLink"] = format!("{base}/instances/{}", str_field(&inst.resource, "name")).into();
    v
}

/// The instance JSON with its link and `serverCaCert` (the emulator's CA, which signs the
/// certificate its PostgreSQL serves).
fn render_with_ca(app: &App, base: &str, inst: &SqlInstance) -> Value {
    let mut v = render(base, inst);
    v["serverCaCert"] = super::connectors(app).server_ca_cert(str_field(&inst.resource, "name"));
    v
}

/// 400 for an `ipConfiguration` Cloud SQL refuses: `sslMode` and `requireSsl` that disagree, or
/// an authorized network that is not one (the latter's wording is the emulator's).
fn check_ip_configuration(given: &Value) -> Result<(), ApiError> {
    if let Some(message) = super::network::ssl_conflict(given) {
        return Err(invalid(message));
    }
    if let Some(value) = super::network::bad_network(given) {
        return Err(invalid(format!(
            "Invalid request: authorized network value {value:?} is not an IPv4 address or network in CIDR notation."
        )));
    }
    Ok(())
}

/// What the server of instance `key` at `ip` is configured with: `pg_hba.conf` for SSL mode
/// `mode`, and a certificate for `project:instance` and its DNS name from the emulator's CA.
pub fn server_setup(app: &App, key: &str, region: &str, ip: std::net::Ipv4Addr, mode: &str) -> Result<Setup, String> {
    let (project, instance) = key.split_once('/').unwrap_or((key, key));
    let connectors = super::connectors(app);
    let (cert_pem, key_pem) =
        connectors.postgres_tls(&format!("{project}:{instance}"), &dns_name(project, region, instance))?;
    let tls = Tls { cert_pem, key_pem, ca_pem: connectors.ca_pem().to_string() };
    Ok(Setup { hba: super::network::hba(ip, mode), tls: Some(tls) })
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_argument(message).with_reason("invalid")
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 98
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// `(family, major)` of a database version such as `POSTGRES_15`.
fn version_parts(v: &str) -> (&str, u32) {
    let (family, rest) = v.split_once('_').unwrap_or((v, ""));
    (family, rest.split('_').next().and_then(|m| m.parse().ok()).unwrap_or(0))
}

/// SQL run once on a new server: the roles of a Cloud SQL for PostgreSQL instance.
fn setup_sql(root_password: Option<&str>) -> String {
    let password = root_password.map(|p| format!(" PASSWORD {}", literal(p))).unwrap_or_default();
    format!(
        "CREATE ROLE cloudsqlsuperuser WITH NOLOGIN CREATEDB CREATEROLE;\n\
         CREATE ROLE postgres WITH LOGIN CREATEDB CREATEROLE{password};\n\
         GRANT cloudsqlsuperuser TO postgres WITH ADMIN OPTION;\n\
         ALTER DATABASE postgres OWNER TO cloudsqlsuperuser;"
    )
}

fn op_error(message: String) -> OpError {
    OpError { code: "INTERNAL_ERROR".into(), message }
}

fn insert(app: &Arc<App>, r: &SqlRequest<'_>) -> Result<Value, ApiError> {
    let mut body = Value::Object(r.req.body_object()?);
    super::enums::normalize_instance(&mut body);
    let name = str_field(&body, "name").to_string();
    if !valid_name(&name) {
        return Err(invalid(format!(
            "Invalid request: instance name ({name}) must be lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
        )));
    }
    let version = match str_field(&body, "databaseVersion") {
        "" => "POSTGRES_16".to_string(),
        v if v.starts_with("POSTGRES_") => v.to_string(),
        v => {
            return Err(invalid(format!(
                "gcp-emulator backs instances with real PostgreSQL servers and supports only POSTGRES_* database versions, not {v}."
            )));
        }
    };
    let tier = body.pointer("/settings/tier").and_then(Value::as_str).unwrap_or("");
    if tier.is_empty() {
        return Err(invalid("Invalid request: Missing tier (settings.tier)."));
    }
    if let Some(given) = body.pointer("/settings/ipConfiguration") {
        check_ip_configuration(given)?;
    }
    let key = format!("{}/{}", r.project, name);
    let mut st = lock(&app.state);
    let window = app.settings().name_reuse_window_s * 1000;
    let recently_deleted = st.sql.deleted.get(&key).is_some_and(|t| now_ms().saturating_sub(*t) < window);
    if st.sql.instances.contains_key(&key) || recently_deleted {
        return Err(ApiError::new_conflict(
            "The Cloud SQL instance already exists. When you delete an instance, you can't reuse the name of the deleted instance until one week from the deletion date.",
            "instanceAlreadyExists",
        )
        .with_status("ALREADY_EXISTS"));
    }
    let region = match str_field(&body, "region") {
        "" => "us-central1".to_string(),
        r => r.to_string(),
    };
    let zone = body
        .pointer("/settings/locationPreference/zone")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| format!("{region}-a"));
    let mut settings = json!({
        "kind": "sql#settings",
        "tier": tier,
        "availabilityType": "ZONAL",
        "pricingPlan": "PER_USE",
        "replicationType": "SYNCHRONOUS",
        "activationPolicy": "ALWAYS",
        "edition": "ENTERPRISE",
        "ipConfiguration": {"ipv4Enabled": true, "requireSsl": false, "sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"},
        "locationPreference": {"zone": zone, "kind": "sql#locationPreference"},
        "dataDiskSizeGb": "10",
        "dataDiskType": "PD_SSD",
        "storageAutoResize": true,
        "storageAutoResizeLimit": "0",
        "backupConfiguration": {"enabled": false, "kind": "sql#backupConfiguration", "startTime": "00:00"},
        "deletionProtectionEnabled": false,
    });
    if let Some(given) = body.get("settings") {
        merge(&mut settings, given);
    }
    if let Some(given) = body.pointer("/settings/ipConfiguration") {
        super::network::align_ssl(given, &mut settings["ipConfiguration"]);
    }
    let ssl_mode = super::network::ssl_mode(&settings["ipConfiguration"]);
    settings["settingsVersion"] = "1".into();
    let number = project_number(&r.project);
    let resource = json!({
        "kind": "sql#instance",
        "name": name,
        "project": r.project,
        "region": region,
        "gceZone": zone,
        "databaseVersion": version,
        "databaseInstalledVersion": format!("{version}_0"),
        "state": "PENDING_CREATE",
        "connectionName": format!("{}:{region}:{name}", r.project),
        "backendType": "SECOND_GEN",
        "instanceType": "CLOUD_SQL_INSTANCE",
        "createTime": rfc3339(now_ms()),
        "serviceAccountEmailAddress": format!("p{number}-{}@gcp-sa-cloud-sql.iam.gserviceaccount.com", random_hex(6)),
        "maxDiskSize": "10995116277760",
        "settings": settings,
        "ipAddresses": [],
    });
    // The instance's own address; PostgreSQL's public port 5432 there, as on Cloud SQL (the relay
    // that checks authorized networks), the server itself behind it on 5433.
    let ip = super::address::allocate(app.config.sql_network).map_err(ApiError::internal)?;
    let server_port = super::address::SERVER_PORT;
    let setup = server_setup(app, &key, &region, ip, ssl_mode).map_err(ApiError::internal)?;
    let dir = super::pg(app).new_dir(&key);
    st.sql.instances.insert(
        key.clone(),
        SqlInstance {
            resource,
            users: Default::default(),
            databases: Default::default(),
            pg_dir: None,
            pg_port: None,
            pg_host: None,
        },
    );
    let root_password = str_field(&body, "rootPassword").to_string();
    let op = new_op(&r.project, "CREATE", &name);
    let (app2, key2, dir2, project) = (app.clone(), key.clone(), dir.clone(), r.project.clone());
    let work = async move {
        let server = super::pg(&app2).create(&key2, &dir2, ip.into(), server_port, &setup).await.map_err(op_error)?;
        if let Err(e) = start_listeners(&app2, &key2, ip, server_port) {
            super::connectors(&app2).stop(&key2);
            super::pg(&app2).destroy(&key2).await;
            return Err(op_error(e));
        }
        let password = (!root_password.is_empty()).then_some(root_password.as_str());
        if let Err(e) = server.exec("postgres", &setup_sql(password)).await {
            super::connectors(&app2).stop(&key2);
            super::pg(&app2).destroy(&key2).await;
            return Err(op_error(e));
        }
        Ok(())
    };
    let finish = move |st: &mut crate::state::State, res: &Result<(), OpError>| {
        let Some(inst) = st.sql.instances.get_mut(&key) else {
            return Ok(());
        };
        if res.is_err() {
            inst.resource["state"] = "FAILED".into();
            return Ok(());
        }
        inst.resource["state"] = "RUNNABLE".into();
        inst.resource["ipAddresses"] = json!([{"type": "PRIMARY", "ipAddress": ip.to_string()}]);
        inst.pg_dir = Some(dir);
        inst.pg_port = Some(server_port);
        inst.pg_host = Some(ip);
        inst.users.insert(
            "postgres".into(),
            json!({"kind": "sql#user", "name": "postgres", "host": "", "instance": name, "project": project, "type": "BUILT_IN", "etag": ""}),
        );
        inst.databases.insert(
            "postgres".into(),
            json!({"kind": "sql#database", "name": "postgres", "charset": "UTF8", "collation": "en_US.UTF8", "instance": name, "project": project}),
        );
        Ok(())
    };
    let op = app.run_op(&mut st, op, work, finish);
    app.persist(&st);
    Ok(render_op(&r.link_base(app), &op))
}

fn modify(app: &Arc<App>, r: &SqlRequest<'_>, replace_settings: bool) -> Result<Value, ApiError> {
    let mut body = Value::Object(r.req.body_object()?);
    super::enums::normalize_instance(&mut body);
    let key = key(r);
    let mut st = lock(&app.state);
    let inst = st.sql.instances.get(&key).ok_or_else(instance_not_found)?;
    check_no_op(&st, &r.project, r.rest[1])?;
    let current = inst.resource.clone();
    for f in ["name", "region", "project"] {
        if let Some(v) = body.get(f).and_then(Value::as_str) {
            if v != str_field(&current, f) {
                return Err(invalid(format!(
                    "Invalid request: {f} cannot be changed (it is {}).",
                    str_field(&current, f)
                )));
            }
        }
    }
    let current_sv: i64 =
        current.pointer("/settings/settingsVersion").and_then(Value::as_str).and_then(|s| s.parse().ok()).unwrap_or(1);
    if let Some(sv) = body.pointer("/settings/settingsVersion") {
        // 0 is proto3's "not set" (the SDK may send it).
        let given = sv.as_str().and_then(|s| s.parse().ok()).or_else(|| sv.as_i64()).filter(|g| *g != 0);
        // A stale settingsVersion is refused so that concurrent writers notice; the exact status
        // of the real API is not verified (412 conditionNotMet chosen as the most plausible).
        if given.is_some_and(|g| g != current_sv) {
            return Err(ApiError::precondition_failed(format!(
                "Precondition check failed: settingsVersion {} is stale; the current one is {current_sv}.",
                given.unwrap_or_default()
            )));
        }
    }
    if let Some(v) = body.get("databaseVersion").and_then(Value::as_str) {
        let (cf, cm) = version_parts(str_field(&current, "databaseVersion"));
        let (nf, nm) = version_parts(v);
        if nf != cf || nm < cm {
            return Err(invalid(format!(
                "Invalid request: databaseVersion can only be upgraded within {cf} (from {}); {v} is not allowed.",
                str_field(&current, "databaseVersion")
            )));
        }
    }
    if let Some(given) = body.pointer("/settings/ipConfiguration") {
        check_ip_configuration(given)?;
    }
    let mut next = current.clone();
    let mut patch = body.clone();
    if let Some(o) = patch.as_object_mut() {
        // Output-only fields are ignored, as a full DatabaseInstance sent back by a client has them.
        for f in [
            "kind",
            "state",
            "selfLink",
            "ipAddresses",
            "connectionName",
            "rootPassword",
            "createTime",
            "backendType",
            "instanceType",
            "gceZone",
            "databaseInstalledVersion",
            "serviceAccountEmailAddress",
            "maxDiskSize",
            "currentDiskSize",
            "etag",
        ] {
            o.remove(f);
        }
    }
    if replace_settings {
        if let Some(s) = patch.get("settings").cloned() {
            next["settings"] = s;
            next["settings"]["kind"] = "sql#settings".into();
        }
    }
    merge(&mut next, &patch);
    if let Some(given) = body.pointer("/settings/ipConfiguration") {
        // An `authorizedNetworks` list replaces the old one (merge does so for arrays).
        super::network::align_ssl(given, &mut next["settings"]["ipConfiguration"]);
    }
    let old_mode = super::network::ssl_mode(&current["settings"]["ipConfiguration"]);
    let new_mode = super::network::ssl_mode(&next["settings"]["ipConfiguration"]);
    if let Some(v) = body.get("databaseVersion").and_then(Value::as_str) {
        next["databaseInstalledVersion"] = format!("{v}_0").into();
    }
    next["settings"]["settingsVersion"] = (current_sv + 1).to_string().into();
    let op = new_op(&r.project, "UPDATE", r.rest[1]);
    // Changes become visible when the operation is done, as on the real API. Changing the tier or
    // flags restarts a real instance; the emulator's server keeps running (flags such as
    // cloudsql.iam_authentication are not PostgreSQL settings). A new SSL mode rewrites the
    // server's pg_hba.conf and reloads it; authorized networks are read by the relay at each
    // connection, so they take effect when the operation is done.
    let server = (old_mode != new_mode).then(|| super::pg(app).get(&key)).flatten();
    let hba = inst.pg_host.map(|ip| super::network::hba(ip, new_mode));
    let work = async move {
        match (server, hba) {
            (Some(server), Some(hba)) => server.set_hba(&hba).await.map_err(op_error),
            _ => Ok(()),
        }
    };
    let finish = move |st: &mut crate::state::State, res: &Result<(), OpError>| {
        if let (Some(inst), Ok(())) = (st.sql.instances.get_mut(&key), res) {
            let state = inst.resource["state"].clone();
            inst.resource = next;
            inst.resource["state"] = state;
        }
        Ok(())
    };
    let op = app.run_op(&mut st, op, work, finish);
    app.persist(&st);
    Ok(render_op(&r.link_base(app), &op))
}

fn delete(app: &Arc<App>, r: &SqlRequest<'_>) -> Result<Value, ApiError> {
    let key = key(r);
    let mut st = lock(&app.state);
    let inst = st.sql.instances.get(&key).ok_or_else(instance_not_found)?;
    check_no_op(&st, &r.project, r.rest[1])?;
    if inst.resource.pointer("/settings/deletionProtectionEnabled") == Some(&Value::Bool(true)) {
        // The real message is not verified (contract §1.5); 400 with Cloud SQL's `invalid`.
        return Err(invalid(
            "Invalid request: The instance is protected from deletion. Set settings.deletionProtectionEnabled to false before deleting it.",
        ));
    }
    let op = new_op(&r.project, "DELETE", r.rest[1]);
    let (app2, key2) = (app.clone(), key.clone());
    let work = async move {
        super::connectors(&app2).stop(&key2);
        super::pg(&app2).destroy(&key2).await;
        Ok(())
    };
    let finish = move |st: &mut crate::state::State, _: &Result<(), OpError>| {
        if st.sql.instances.remove(&key).is_some() {
            st.sql.deleted.insert(key, now_ms());
        }
        Ok(())
    };
    let op = app.run_op(&mut st, op, work, finish);
    app.persist(&st);
    Ok(render_op(&r.link_base(app), &op))
}

fn restart(app: &Arc<App>, r: &SqlRequest<'_>) -> Result<Value, ApiError> {
    let key = key(r);
    let mut st = lock(&app.state);
    let inst = st.sql.instances.get(&key).ok_or_else(instance_not_found)?;
    check_no_op(&st, &r.project, r.rest[1])?;
    require_runnable(inst)?;
    let op = new_op(&r.project, "RESTART", r.rest[1]);
    let (app2, key2) = (app.clone(), key.clone());
    let work = async move {
        let server = super::pg(&app2)
            .get(&key2)
            .ok_or_else(|| op_error("the instance's PostgreSQL server is not running".into()))?;
        server.restart().await.map_err(op_error)
    };
    let op = app.run_op(&mut st, op, work, |_, _| Ok(()));
    Ok(render_op(&r.link_base(app), &op))
}

/// 400 `invalid` unless the instance is RUNNABLE (users/databases calls, restarts).
pub fn require_runnable(inst: &SqlInstance) -> Result<(), ApiError> {
    if inst.resource["state"] == "RUNNABLE" {
        Ok(())
    } else {
        Err(invalid("Invalid request: Invalid request since instance is not running."))
    }
}

/// The DNS name an instance's server certificate carries (`connectSettings.dnsName`): a
/// valid host name (the legacy SNI `project:region:instance` is not one).
pub fn dns_name(project: &str, region: &str, instance: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (project, instance).hash(&mut h);
    format!("{:016x}.{project}.{region}.sql.goog", h.finish())
}

/// Whether principal `email` may log in to instance `key` as database user `user` by automatic
/// IAM database authentication, as Cloud SQL checks it; `Err` is the FATAL message the client
/// gets. The user must be the principal's IAM database user name, exist on the instance with an
/// IAM type, the instance must have `cloudsql.iam_authentication=on`, and the principal must hold
/// `cloudsql.instances.login` on the project (`roles/cloudsql.instanceUser`, or a role with it:
/// [`crate::access::ROLES`]).
pub fn check_iam_login(app: &App, key: &str, email: &str, user: &str) -> Result<(), String> {
    let refused = || format!("Cloud SQL IAM service account authentication failed for user \"{user}\"");
    let expected = email.strip_suffix(".gserviceaccount.com").unwrap_or(email);
    if user != expected {
        return Err(refused());
    }
    let st = lock(&app.state);
    let inst = st.sql.instances.get(key).ok_or_else(refused)?;
    // A service account's database user has the service-account type.
    let iam_user = inst.users.get(user).is_some_and(|u| u["type"] == "CLOUD_IAM_SERVICE_ACCOUNT");
    let flag_on = inst
        .resource
        .pointer("/settings/databaseFlags")
        .and_then(Value::as_array)
        .is_some_and(|fs| fs.iter().any(|f| f["name"] == "cloudsql.iam_authentication" && f["value"] == "on"));
    let project = key.split('/').next().unwrap_or_default();
    let has_role = crate::access::project_grants(&st, project, email, "cloudsql.instances.login");
    if !iam_user || !flag_on || !has_role {
        return Err(refused());
    }
    Ok(())
}

/// Starts the listeners of instance `key` (`project/instance`) on its address, in front of its
/// server on `server_port`: the connectors' TLS port 3307, and the relay on 5432 that lets in
/// its authorized networks ([`super::network::relay`]). Listeners already running are stopped.
pub fn start_listeners(
    app: &std::sync::Arc<App>,
    key: &str,
    ip: std::net::Ipv4Addr,
    server_port: u16,
) -> Result<(), String> {
    super::connectors(app).stop(key);
    start_connector(app, key, ip, server_port)?;
    super::network::relay(app, key, ip, server_port)
}

/// Starts the TLS listener of instance `key` (`project/instance`) on its address at 3307.
fn start_connector(
    app: &std::sync::Arc<App>,
    key: &str,
    ip: std::net::Ipv4Addr,
    postgres_port: u16,
) -> Result<(), String> {
    let (project, instance) = key.split_once('/').unwrap_or((key, key));
    let region = lock(&app.state)
        .sql
        .instances
        .get(key)
        .and_then(|i| i.resource["region"].as_str().map(str::to_string))
        .unwrap_or_default();
    super::connectors(app).listen(
        std::sync::Arc::downgrade(app),
        key,
        ip.into(),
        postgres_port,
        &format!("{project}:{instance}"),
        &dns_name(project, &region, instance),
    )
}

/// `CREATE ROLE` for a new Cloud SQL user. Built-in users get CREATEDB, CREATEROLE and membership
/// of `cloudsqlsuperuser`; IAM users and service accounts are plain LOGIN roles.
pub fn create_user_sql(name: &str, user_type: &str, password: Option<&str>) -> String {
    let password = password.map(|p| format!(" PASSWORD {}", literal(p))).unwrap_or_default();
    if user_type == "BUILT_IN" {
        format!(
            "CREATE ROLE {n} WITH LOGIN CREATEDB CREATEROLE{password};\nGRANT cloudsqlsuperuser TO {n};",
            n = ident(name)
        )
    } else {
        format!("CREATE ROLE {} WITH LOGIN{password};", ident(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(valid_name("cloud-sql-skypilot-instance"));
        assert!(!valid_name("Bad"));
        assert!(!valid_name("trailing-"));
        assert_eq!(version_parts("POSTGRES_15"), ("POSTGRES", 15));
        assert_eq!(version_parts("MYSQL_8_0"), ("MYSQL", 8));
    }

    #[test]
    fn role_sql() {
        assert_eq!(
            create_user_sql("sa@p.iam", "CLOUD_IAM_SERVICE_ACCOUNT", None),
            "CREATE ROLE \"sa@p.iam\" WITH LOGIN;"
        );
        assert!(create_user_sql("u", "BUILT_IN", Some("p'w")).contains("PASSWORD 'p''w'"));
        assert!(setup_sql(None).contains("GRANT cloudsqlsuperuser TO postgres WITH ADMIN OPTION"));
    }
}
