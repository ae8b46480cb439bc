//! `gcp_sql_instance`: a Cloud SQL instance, plus the helpers every Cloud SQL
//! resource uses to mutate an instance one operation at a time.
//!
//! Idempotent: the create operation is recorded before it is waited on (a crash
//! resumes it); a create that meets `instanceAlreadyExists` reads the instance
//! and, if it exists in this project, adopts and converges it; if it does not,
//! the name is in the one-week reuse window and the error says so (never
//! retried). Mutations hold a per-instance lock in this process and retry 409
//! `operationInProgress` (other processes, gcloud) until the deadline.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};
use tokio::time::Instant;

use super::client::{Api, ApiError};
use super::operation::{self, Op};
use super::{DEFAULT_REGION, Gcp, Run, deadline, jstr, live, project_attr, str_attr};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, PlanRequest, PlanResponse, ProviderError,
    ReadRequest,
};
use crate::value::Value;

/// PostgreSQL's port on Cloud SQL.
pub const POSTGRES_PORT: i64 = 5432;

/// Schema.
pub fn schema() -> ResourceSchema {
    let s = || Box::new(AttrType::String);
    ResourceSchema {
        type_name: "gcp_sql_instance",
        kind: SchemaKind::Resource,
        description: "A Cloud SQL instance. Plans say when an update restarts the instance (tier, flags, major \
                      version) and when a replacement would reuse a name Cloud SQL keeps reserved for a week after \
                      deletion. A destroy is refused while deletion_protection is true.",
        attributes: vec![
            Attribute::required("name", AttrType::String, "Instance id (without the project).").force_new().rule(NameRule::SqlInstance),
            Attribute::optional("region", AttrType::String, "Region; defaults to the provider's.").also_computed().force_new(),
            Attribute::required(
                "database_version",
                AttrType::String,
                "e.g. POSTGRES_15. A higher major version upgrades in place; a lower one or another engine replaces.",
            ),
            Attribute::required("tier", AttrType::String, "Machine tier, e.g. db-f1-micro, db-custom-1-3840 (change restarts)."),
            Attribute::optional("edition", AttrType::String, "ENTERPRISE or ENTERPRISE_PLUS.").also_computed(),
            Attribute::optional("database_flags", AttrType::Map(s()), "Database flags, e.g. { \"cloudsql.iam_authentication\" = \"on\" } (change restarts)."),
            Attribute::optional(
                "deletion_protection",
                AttrType::Bool,
                "Protects the instance against deletion, by skyform and on the API (settings.deletionProtectionEnabled). Default true.",
            )
            .default(true),
            Attribute::optional("root_password", AttrType::String, "Password of the postgres user (write-only).").write_only(),
            Attribute::optional(
                "ip_configuration",
                AttrType::Any,
                "{ ipv4_enabled, private_network, require_ssl, ssl_mode, authorized_networks = [{ name, value }] }; only the keys set are managed.",
            ),
            Attribute::optional("availability_type", AttrType::String, "ZONAL or REGIONAL.").also_computed(),
            Attribute::optional("user_labels", AttrType::Map(s()), "Labels."),
            project_attr(),
            Attribute::computed("connection_name", AttrType::String, "<project>:<region>:<name> (Cloud SQL Auth Proxy)."),
            Attribute::computed("public_ip", AttrType::String, "The PRIMARY address, if any."),
            Attribute::computed("private_ip", AttrType::String, "The PRIVATE address, if any."),
            Attribute::computed("self_link", AttrType::String, "API URL of the instance."),
            Attribute::computed("port", AttrType::Number, "PostgreSQL port on `public_ip`: 5432, as on Cloud SQL."),
            Attribute::computed(
                "server_ca_cert",
                AttrType::String,
                "The instance's server CA certificate (PEM, `serverCaCert.cert`): what a direct client trusts with `sslmode = \"verify-ca\"`.",
            ),
        ],
    }
}

fn ids(g: &Gcp, config: &Value, identity: Option<&Value>) -> Option<(String, String)> {
    if let Some((p, n)) = identity.and_then(Value::as_str).and_then(|i| i.split_once('/')) {
        return Some((p.to_string(), n.to_string()));
    }
    Some((g.project_of(config), str_attr(config, "name")?))
}

/// The API path of an instance.
pub fn path(project: &str, name: &str) -> String {
    format!("v1/projects/{project}/instances/{name}")
}

fn flags_of(inst: &Json) -> BTreeMap<String, String> {
    inst.pointer("/settings/databaseFlags")
        .and_then(Json::as_array)
        .map(|fs| {
            fs.iter()
                .filter_map(|f| {
                    Some((f["name"].as_str()?.to_string(), f["value"].as_str().unwrap_or_default().to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

const IP_KEYS: [(&str, &str); 5] = [
    ("ipv4_enabled", "ipv4Enabled"),
    ("private_network", "privateNetwork"),
    ("require_ssl", "requireSsl"),
    ("ssl_mode", "sslMode"),
    ("authorized_networks", "authorizedNetworks"),
];

fn ip_config_of(inst: &Json, desired: Option<&Value>) -> Value {
    let api = inst.pointer("/settings/ipConfiguration").cloned().unwrap_or(json!({}));
    let wanted = desired.and_then(Value::as_map);
    let mut out = BTreeMap::new();
    for (k, f) in IP_KEYS {
        if wanted.is_some_and(|w| !w.contains_key(k)) {
            continue;
        }
        let v = match (k, &api[f]) {
            ("authorized_networks", Json::Array(a)) => Value::List(
                a.iter().map(|n| Value::map([("name", jstr(n, "/name")), ("value", jstr(n, "/value"))])).collect(),
            ),
            ("authorized_networks", _) => Value::List(vec![]),
            (_, Json::Null) => continue,
            (_, j) => Value::from_json(j),
        };
        out.insert(k.to_string(), v);
    }
    Value::Map(out)
}

fn ip_config_to_api(v: &Value) -> Json {
    let mut out = Map::new();
    for (k, f) in IP_KEYS {
        if let Some(x) = v.get(k) {
            let j = x.to_json_clear();
            let j = if k == "authorized_networks" {
                json!(
                    j.as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|n| {
                            let mut m = json!({"value": n["value"], "kind": "sql#aclEntry"});
                            if let Some(name) = n["name"].as_str() {
                                m["name"] = json!(name);
                            }
                            m
                        })
                        .collect::<Vec<_>>()
                )
            } else {
                j
            };
            out.insert(f.to_string(), j);
        }
    }
    Json::Object(out)
}

/// The attributes of an instance as the API returns it (`ip_configuration`
/// limited to the keys `desired` sets).
pub fn attrs_of(inst: &Json, desired: Option<&Value>) -> BTreeMap<String, Value> {
    let ip = |t: &str| {
        inst["ipAddresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == t))
            .map(|x| jstr(x, "/ipAddress"))
            .unwrap_or(Value::Null)
    };
    let labels: BTreeMap<String, Value> = inst
        .pointer("/settings/userLabels")
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect())
        .unwrap_or_default();
    // PostgreSQL listens on the instance's address at 5432 (Cloud SQL, and the emulator).
    let port = POSTGRES_PORT;
    BTreeMap::from([
        ("name".to_string(), jstr(inst, "/name")),
        ("region".to_string(), jstr(inst, "/region")),
        ("project".to_string(), jstr(inst, "/project")),
        ("database_version".to_string(), jstr(inst, "/databaseVersion")),
        ("tier".to_string(), jstr(inst, "/settings/tier")),
        ("edition".to_string(), jstr(inst, "/settings/edition")),
        ("availability_type".to_string(), jstr(inst, "/settings/availabilityType")),
        (
            "deletion_protection".to_string(),
            Value::Bool(inst.pointer("/settings/deletionProtectionEnabled") == Some(&json!(true))),
        ),
        (
            "database_flags".to_string(),
            Value::Map(flags_of(inst).into_iter().map(|(k, v)| (k, Value::str(v))).collect()),
        ),
        ("user_labels".to_string(), Value::Map(labels)),
        ("ip_configuration".to_string(), ip_config_of(inst, desired)),
        ("connection_name".to_string(), jstr(inst, "/connectionName")),
        ("public_ip".to_string(), ip("PRIMARY")),
        ("private_ip".to_string(), ip("PRIVATE")),
        ("self_link".to_string(), jstr(inst, "/selfLink")),
        ("port".to_string(), Value::Int(port)),
        ("server_ca_cert".to_string(), jstr(inst, "/serverCaCert/cert")),
    ])
}

fn record_seen(g: &Gcp, config: &Value) {
    if config.has_unknown() {
        return;
    }
    let cfg = config.unmarked();
    let Some(name) = str_attr(&cfg, "name") else { return };
    let region = str_attr(&cfg, "region").unwrap_or_else(|| g.region.clone());
    let flags = cfg
        .get("database_flags")
        .and_then(Value::as_map)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    g.seen.instances.lock().expect("seen").insert((g.project_of(&cfg), name), (region, flags));
    g.seen.changed.notify_waiters();
}

/// Reads the instance (and remembers its desired flags and region for the
/// checks of users and clusters planned later).
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    record_seen(g, &req.config);
    let Some((project, name)) = ids(g, &req.config, req.identity.as_ref()) else { return Ok(None) };
    let Some(inst) = g.client.get_opt(Api::Sql, &path(&project, &name)).await? else { return Ok(None) };
    let version = inst.pointer("/settings/settingsVersion").and_then(Json::as_str).map(str::to_string);
    let attrs = attrs_of(&inst, req.config.get("ip_configuration"));
    let mut l = live(Value::str(format!("{project}/{name}")), attrs, version);
    // Still being created: its address and connection details are not final.
    l.in_progress = inst["state"] == "PENDING_CREATE";
    Ok(Some(l))
}

fn version_parts(v: &str) -> (String, i64) {
    let mut it = v.splitn(3, '_');
    let family = it.next().unwrap_or_default().to_string();
    (family, it.next().and_then(|m| m.parse().ok()).unwrap_or(0))
}

/// Restart notes, version semantics, name reuse and region checks.
pub async fn plan(g: &Gcp, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
    let mut resp = PlanResponse::default();
    let cfg = req.config.unmarked();
    let name = str_attr(&cfg, "name").unwrap_or_default();
    let mut replacing = false;
    if let Some(l) = &req.live {
        let changed = |k: &str| req.changed.iter().any(|c| c == k);
        if changed("database_version") {
            let (cf, cm) = version_parts(cfg.get("database_version").and_then(Value::as_str).unwrap_or_default());
            let (lf, lm) = version_parts(l.attrs.get("database_version").and_then(Value::as_str).unwrap_or_default());
            if cf != lf || cm < lm {
                resp.requires_replace.push("database_version".into());
                replacing = true;
            } else {
                resp.notes.push("major version upgrade in place: restarts the instance".into());
            }
        }
        replacing |= ["region", "project"].iter().any(|k| changed(k));
        if !replacing && (changed("tier") || changed("database_flags")) {
            resp.notes.push("restarts the instance (tier or database flags change)".into());
        }
        if replacing && !changed("name") {
            resp.warnings.push(format!(
                "this replacement deletes instance {name:?} and creates it again under the same name, but Cloud SQL \
                 keeps a deleted instance's name reserved for up to a week: the create will fail with \
                 instanceAlreadyExists. Give the new instance another name."
            ));
        }
        if replacing && l.attrs.get("deletion_protection") == Some(&Value::Bool(true)) {
            resp.warnings.push(
                "the replacement must delete the instance, which has deletion protection: apply \
                 deletion_protection = false first"
                    .into(),
            );
        }
    }
    // Region vs the clusters planned or read in this run.
    let region = str_attr(&cfg, "region").unwrap_or_else(|| g.region.clone());
    let project = g.project_of(&cfg);
    for (p, location, _) in g.seen.clusters.lock().expect("seen").iter() {
        if *p == project && !location.starts_with(&region) {
            resp.warnings.push(format!(
                "instance {name:?} is in {region} but the GKE cluster is in {location}: traffic crosses regions \
                 (the seed advises the same region)"
            ));
        }
    }
    Ok(resp)
}

/// Inserts a database or user (`POST base`) and waits for its operation. `Ok(true)` when it
/// exists already: a 409, or an operation that failed with the server's "already exists"
/// (Cloud SQL's `ERROR_RDBMS`); the caller adopts it.
pub async fn insert_child(run: &Run<'_>, project: &str, base: &str, body: &Json) -> Result<bool, ProviderError> {
    match mutate(run.g, reqwest::Method::POST, base, Some(body), run.deadline).await {
        Ok(op) => {
            match operation::track(&run.g.client, run.cp, run.id, &Op::sql(project, &op), &op, run.deadline).await {
                Ok(_) => Ok(false),
                Err(e) if super::exists_already(&e) => Ok(true),
                Err(e) => Err(e),
            }
        }
        Err(e) if e.status == 409 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Sends one mutation of an instance, retrying 409 `operationInProgress` and
/// "instance is not running" (an operation of another client) with backoff
/// until `deadline`.
pub async fn mutate(
    g: &Gcp,
    method: reqwest::Method,
    path: &str,
    body: Option<&Json>,
    deadline: Instant,
) -> Result<Json, ApiError> {
    let mut n = 0;
    loop {
        match g.client.call(method.clone(), Api::Sql, path, body).await {
            Err(e)
                if (e.reason == "operationInProgress"
                    || (e.status == 400 && e.message.contains("not running"))
                    || (e.status == 409 && e.reason == "invalidState"))
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(g.client.retry.backoff(n.min(5))).await;
                n += 1;
            }
            r => return r,
        }
    }
}

/// Runs one mutation and waits for its operation (recorded as pending first).
pub async fn mutate_and_wait(
    r: &Run<'_>,
    project: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Json>,
) -> Result<Json, ProviderError> {
    let op = mutate(r.g, method, path, body, r.deadline).await?;
    operation::track(&r.g.client, r.cp, r.id, &Op::sql(project, &op), &op, r.deadline).await
}

fn settings_body(cfg: &Value, only: Option<&[String]>) -> Json {
    let want = |k: &str| only.is_none_or(|o| o.iter().any(|c| c == k));
    let mut s = Map::new();
    let mut put = |k: &str, f: &str, v: Option<Json>| {
        if want(k)
            && let Some(v) = v
        {
            s.insert(f.to_string(), v);
        }
    };
    put("tier", "tier", cfg.get("tier").map(Value::to_json_clear));
    put("edition", "edition", cfg.get("edition").map(Value::to_json_clear));
    put("availability_type", "availabilityType", cfg.get("availability_type").map(Value::to_json_clear));
    put("deletion_protection", "deletionProtectionEnabled", cfg.get("deletion_protection").map(Value::to_json_clear));
    put(
        "database_flags",
        "databaseFlags",
        cfg.get("database_flags").and_then(Value::as_map).map(|m| {
            json!(
                m.iter().map(|(k, v)| json!({"name": k, "value": v.as_str().unwrap_or_default()})).collect::<Vec<_>>()
            )
        }),
    );
    put("user_labels", "userLabels", cfg.get("user_labels").map(Value::to_json_clear));
    put("ip_configuration", "ipConfiguration", cfg.get("ip_configuration").map(ip_config_to_api));
    Json::Object(s)
}

/// Creates, updates or deletes the instance.
pub async fn apply(g: &Gcp, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
    let cfg = req.config.unmarked();
    let (project, name) =
        ids(g, &cfg, req.identity.as_ref()).ok_or_else(|| ProviderError::Permanent("name is required".into()))?;
    let id = Value::str(format!("{project}/{name}"));
    let p = path(&project, &name);
    let dl = deadline(req);
    let lock = g.sql_lock(&project, &name);
    let _guard = lock.lock().await;
    let run = Run { g, cp, id: &id, deadline: dl };
    // An operation an interrupted run left behind is finished first.
    let resumed = operation::resume(&g.client, &req.private, dl).await?;
    match req.action {
        ApplyAction::Delete => {
            let protected = req.config.get("deletion_protection").and_then(Value::as_bool) == Some(true)
                || req.prior.as_ref().and_then(|p| p.get("deletion_protection")).and_then(Value::as_bool) == Some(true);
            if protected {
                return Err(ProviderError::Permanent(format!(
                    "instance {name:?} has deletion protection. To delete it, set deletion_protection = false on this \
                     resource, run apply (this lifts settings.deletionProtectionEnabled on the API too), then destroy."
                )));
            }
            match mutate_and_wait(&run, &project, reqwest::Method::DELETE, &p, None).await {
                Ok(_) => {}
                Err(ProviderError::Permanent(m)) if m.contains("does not exist") => {}
                Err(e) => return Err(e),
            }
            Ok(ApplyResponse::default())
        }
        ApplyAction::Create => {
            let mut body = json!({
                "name": name,
                "region": str_attr(&cfg, "region").unwrap_or_else(|| if g.region.is_empty() { DEFAULT_REGION.into() } else { g.region.clone() }),
                "databaseVersion": cfg.get("database_version").map(Value::to_json_clear),
                "settings": settings_body(&cfg, None),
            });
            if let Some(pw) = cfg.get("root_password").and_then(Value::as_str) {
                body["rootPassword"] = json!(pw);
            }
            if resumed && g.client.get_opt(Api::Sql, &p).await?.is_some() {
                // The interrupted create finished: converge, do not create again.
                adopt(&run, &project, &name, &cfg).await?;
                return finish(g, req, &project, &name, id).await;
            }
            let created =
                mutate(g, reqwest::Method::POST, &format!("v1/projects/{project}/instances"), Some(&body), dl).await;
            match created {
                Ok(op) => {
                    operation::track(&g.client, cp, &id, &Op::sql(&project, &op), &op, dl).await?;
                }
                Err(e) if e.is_already_exists() => adopt(&run, &project, &name, &cfg).await?,
                Err(e) => return Err(e.into()),
            }
            finish(g, req, &project, &name, id).await
        }
        ApplyAction::Update => {
            update(&run, &project, &name, &cfg, &req.changed).await?;
            finish(g, req, &project, &name, id).await
        }
    }
}

async fn finish(
    g: &Gcp,
    req: &ApplyRequest,
    project: &str,
    name: &str,
    id: Value,
) -> Result<ApplyResponse, ProviderError> {
    let inst = g.client.get(Api::Sql, &path(project, name)).await?;
    let attrs = attrs_of(&inst, req.config.get("ip_configuration"));
    Ok(g.response(&req.type_name, req, id, attrs))
}

/// A create met `instanceAlreadyExists`: adopt the instance if it exists here
/// (our own earlier attempt, or made by hand), else explain the name-reuse rule.
async fn adopt(run: &Run<'_>, project: &str, name: &str, cfg: &Value) -> Result<(), ProviderError> {
    let (g, dl) = (run.g, run.deadline);
    let p = path(project, name);
    let Some(mut inst) = g.client.get_opt(Api::Sql, &p).await? else {
        return Err(ProviderError::Permanent(format!(
            "the Cloud SQL instance name {name:?} is not available: an instance of that name was deleted less than \
             a week ago, and Cloud SQL keeps deleted names reserved for up to a week (instanceAlreadyExists). Choose \
             another name, or wait until the week has passed."
        )));
    };
    // Wait for a create still running (ours from a lost response, or another client's).
    let mut n = 0;
    while inst["state"] == "PENDING_CREATE" && Instant::now() < dl {
        tokio::time::sleep(g.client.retry.backoff(n.min(5))).await;
        n += 1;
        inst = g.client.get(Api::Sql, &p).await?;
    }
    let live = attrs_of(&inst, cfg.get("ip_configuration"));
    if live.get("database_version") != cfg.get("database_version") {
        let (cf, cm) = version_parts(cfg.get("database_version").and_then(Value::as_str).unwrap_or_default());
        let (lf, lm) = version_parts(live.get("database_version").and_then(Value::as_str).unwrap_or_default());
        if cf != lf || cm < lm {
            return Err(ProviderError::Permanent(format!(
                "instance {name:?} already exists with database_version {} (the spec wants {}), which cannot be \
                 changed in place; rename the resource or delete the instance",
                live["database_version"],
                cfg.get("database_version").cloned().unwrap_or_default()
            )));
        }
    }
    let mut changed: Vec<String> = [
        "database_version",
        "tier",
        "edition",
        "availability_type",
        "deletion_protection",
        "database_flags",
        "user_labels",
        "ip_configuration",
    ]
    .iter()
    .filter(|k| cfg.get(k).is_some_and(|v| !matches!(v, Value::Null) && live.get(**k) != Some(v)))
    .map(|k| k.to_string())
    .collect();
    if cfg.get("root_password").is_some() {
        changed.push("root_password".into());
    }
    update(run, project, name, cfg, &changed).await
}

async fn update(
    run: &Run<'_>,
    project: &str,
    name: &str,
    cfg: &Value,
    changed: &[String],
) -> Result<(), ProviderError> {
    let p = path(project, name);
    let has = |k: &str| changed.iter().any(|c| c == k);
    // A major version upgrade is an operation of its own (it cannot be combined).
    if has("database_version") {
        let body = json!({"databaseVersion": cfg.get("database_version").map(Value::to_json_clear)});
        mutate_and_wait(run, project, reqwest::Method::PATCH, &p, Some(&body)).await?;
    }
    let settings = settings_body(cfg, Some(changed));
    if settings.as_object().is_some_and(|m| !m.is_empty()) {
        let body = json!({"settings": settings});
        mutate_and_wait(run, project, reqwest::Method::PATCH, &p, Some(&body)).await?;
    }
    if has("root_password")
        && let Some(pw) = cfg.get("root_password").and_then(Value::as_str)
    {
        let body = json!({"name": "postgres", "password": pw});
        let up = format!("{p}/users?name=postgres&host=");
        mutate_and_wait(run, project, reqwest::Method::PUT, &up, Some(&body)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_configuration_is_limited_to_the_keys_the_spec_sets() {
        let inst = json!({"settings": {"ipConfiguration": {"ipv4Enabled": true, "sslMode": "ENCRYPTED_ONLY",
            "authorizedNetworks": [{"value": "10.0.0.0/8", "name": "corp", "kind": "sql#aclEntry"}]}}});
        let want = Value::map([("ipv4_enabled", Value::Bool(true)), ("authorized_networks", Value::List(vec![]))]);
        let got = ip_config_of(&inst, Some(&want));
        assert_eq!(got.as_map().unwrap().keys().collect::<Vec<_>>(), vec!["authorized_networks", "ipv4_enabled"]);
        assert_eq!(
            got.get("authorized_networks").unwrap(),
            &Value::List(vec![Value::map([("name", Value::str("corp")), ("value", Value::str("10.0.0.0/8"))])])
        );
        let api = ip_config_to_api(&got);
        assert_eq!(api["authorizedNetworks"][0]["value"], "10.0.0.0/8");
        assert_eq!(api["ipv4Enabled"], true);
    }

    #[test]
    fn flags_and_versions() {
        let inst = json!({"settings": {"databaseFlags": [{"name": "cloudsql.iam_authentication", "value": "on"}]}});
        assert_eq!(flags_of(&inst).get("cloudsql.iam_authentication").map(String::as_str), Some("on"));
        assert_eq!(version_parts("POSTGRES_15"), ("POSTGRES".into(), 15));
        assert_eq!(version_parts("MYSQL_8_0"), ("MYSQL".into(), 8));
        let body = settings_body(
            &Value::map([("tier", Value::str("db-f1-micro")), ("deletion_protection", Value::Bool(true))]),
            Some(&["tier".to_string()]),
        );
        assert_eq!(body, json!({"tier": "db-f1-micro"}));
    }
}
