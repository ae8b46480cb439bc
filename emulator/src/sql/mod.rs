//! Cloud SQL Admin, served under both `/v1/` and `/sql/v1beta4/` with the same semantics
//! (contract §1), on the API floor. Every instance is a real PostgreSQL server ([`postgres`])
//! behind a relay that lets in only its authorized networks and a `pg_hba.conf` that enforces its
//! SSL mode ([`network`]); the servers and the connector endpoint's CA and listeners
//! ([`connect`]) are this API's extensions of the `App` ([`pg`], [`connectors`]).

pub mod address;
pub mod children;
pub mod connect;
pub mod enums;
pub mod instances;
pub mod network;
pub mod postgres;

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use crate::access::{Target, narrowest_role, project_id};
use crate::api::{JsonApi, Reply};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::state::{OpApi, Operation, State};
use crate::util::rfc3339;
use connect::Connectors;
use postgres::PgManager;

/// Cloud SQL Admin, as the router registers it.
#[derive(Debug)]
pub struct Sql;

impl JsonApi for Sql {
    fn owns(&self, req: &ApiRequest) -> bool {
        SqlRequest::parse(req).is_some()
    }

    fn method(&self, req: &ApiRequest) -> Option<&'static str> {
        method(&SqlRequest::parse(req)?)
    }

    fn authorize(&self, app: &App, req: &ApiRequest, method: &str) -> Result<(), ApiError> {
        crate::access::check_api(app, req, method, target, refusal)
    }

    fn handle<'a>(
        &'a self,
        app: &'a Arc<App>,
        req: &'a ApiRequest,
        method: &'a str,
    ) -> Reply<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            match SqlRequest::parse(req) {
                Some(r) => handle(app, &r, method).await,
                None => Err(ApiError::unimplemented(req.method.as_str(), &req.path)),
            }
        })
    }
}

/// The PostgreSQL servers (an extension of the `App`).
pub fn pg(app: &App) -> &PgManager {
    app.ext()
}

/// The connector endpoint's CA and listeners (an extension of the `App`).
pub fn connectors(app: &App) -> &Connectors {
    app.ext()
}

/// What a Cloud SQL request acts on, for IAM enforcement: the instance, or the project.
fn target(st: &State, req: &ApiRequest) -> Target {
    let s = req.segs();
    let project = |i: usize| s.get(i).map(|p| project_id(st, p));
    let p = project(if s.first() == Some(&"sql") { 3 } else { 2 }).unwrap_or_default();
    let rest_at = if s.first() == Some(&"sql") { 4 } else { 3 };
    let resource = match (s.get(rest_at), s.get(rest_at + 1)) {
        (Some(&"instances"), Some(i)) => format!("instance {p}:{i}"),
        _ => format!("project {p}"),
    };
    Target { project: Some(p), resource, account: None }
}

/// Cloud SQL's own refusal: `notAuthorized`, naming the role that would do.
fn refusal(email: &str, permission: &str, t: &Target) -> ApiError {
    let hint = narrowest_role(permission).map(|r| format!(" (grant {r})")).unwrap_or_default();
    ApiError::permission_denied(format!(
        "The client is not authorized to make this request: {email} lacks permission {permission} on {}{hint}.",
        t.resource
    ))
    .with_reason("notAuthorized")
}

/// A Cloud SQL request, with the version prefix and project taken apart.
pub struct SqlRequest<'a> {
    /// The request.
    pub req: &'a ApiRequest,
    /// `v1` or `sql/v1beta4`, used in links.
    pub prefix: &'static str,
    /// Project id.
    pub project: String,
    /// Path segments after `projects/{project}`.
    pub rest: Vec<&'a str>,
}

impl<'a> SqlRequest<'a> {
    /// Splits `req` if it is a Cloud SQL path.
    pub fn parse(req: &'a ApiRequest) -> Option<Self> {
        let s: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        let (prefix, project, rest) = match s.as_slice() {
            ["sql", "v1beta4", "projects", p, rest @ ..] => ("sql/v1beta4", *p, rest.to_vec()),
            ["v1", "projects", p, rest @ ..] if matches!(rest.first(), Some(&"instances") | Some(&"operations")) => {
                ("v1", *p, rest.to_vec())
            }
            _ => return None,
        };
        Some(SqlRequest { req, prefix, project: project.to_string(), rest })
    }

    /// The base of links: `{base_url}{prefix}/projects/{project}`.
    pub fn link_base(&self, app: &App) -> String {
        format!("{}{}/projects/{}", app.base_url, self.prefix, self.project)
    }
}

/// The method name of a Cloud SQL request.
pub fn method(r: &SqlRequest<'_>) -> Option<&'static str> {
    let m = &r.req.method;
    if let Some(verb) = &r.req.verb {
        return match (r.rest.as_slice(), verb.as_str()) {
            (["instances", _], "generateEphemeralCert") if m == Method::POST => {
                Some("sql.connect.generateEphemeralCert")
            }
            _ => None,
        };
    }
    Some(match r.rest.as_slice() {
        ["instances"] if m == Method::POST => "sql.instances.insert",
        ["instances"] if m == Method::GET => "sql.instances.list",
        ["instances", _] => match *m {
            Method::GET => "sql.instances.get",
            Method::PATCH => "sql.instances.patch",
            Method::PUT => "sql.instances.update",
            Method::DELETE => "sql.instances.delete",
            _ => return None,
        },
        ["instances", _, "restart"] if m == Method::POST => "sql.instances.restart",
        ["instances", _, "connectSettings"] if m == Method::GET => "sql.connect.get",
        ["instances", _, "listServerCas"] if m == Method::GET => "sql.instances.listServerCas",
        ["instances", _, "databases"] if m == Method::POST => "sql.databases.insert",
        ["instances", _, "databases"] if m == Method::GET => "sql.databases.list",
        ["instances", _, "databases", _] => match *m {
            Method::GET => "sql.databases.get",
            Method::PATCH => "sql.databases.patch",
            Method::PUT => "sql.databases.update",
            Method::DELETE => "sql.databases.delete",
            _ => return None,
        },
        ["instances", _, "users"] => match *m {
            Method::POST => "sql.users.insert",
            Method::GET => "sql.users.list",
            Method::PUT => "sql.users.update",
            Method::DELETE => "sql.users.delete",
            _ => return None,
        },
        ["instances", _, "users", _] if m == Method::GET => "sql.users.get",
        ["operations"] if m == Method::GET => "sql.operations.list",
        ["operations", _] if m == Method::GET => "sql.operations.get",
        _ => return None,
    })
}

/// Handles a request `method` recognised.
pub async fn handle(app: &Arc<App>, r: &SqlRequest<'_>, method: &str) -> Result<Value, ApiError> {
    match method {
        "sql.operations.get" => {
            let st = lock(&app.state);
            let op =
                st.ops.get(r.rest[1]).filter(|o| o.api == OpApi::Sql && o.project == r.project).ok_or_else(|| {
                    ApiError::not_found(format!("The Cloud SQL operation {} does not exist.", r.rest[1]))
                        .with_reason("operationDoesNotExist")
                })?;
            Ok(render_op(&r.link_base(app), op))
        }
        "sql.operations.list" => {
            let st = lock(&app.state);
            let instance = r.req.query("instance");
            let mut ops: Vec<&Operation> = st
                .ops
                .values()
                .filter(|o| o.api == OpApi::Sql && o.project == r.project && instance.is_none_or(|i| o.target == i))
                .collect();
            ops.sort_by(|a, b| b.insert_ms.cmp(&a.insert_ms).then(a.name.cmp(&b.name)));
            let base = r.link_base(app);
            let items: Vec<Value> = ops.into_iter().map(|o| render_op(&base, o)).collect();
            Ok(json!({"kind": "sql#operationsList", "items": items}))
        }
        m if m.starts_with("sql.instances.") => instances::handle(app, r, m).await,
        "sql.connect.get" => connect_settings(app, r),
        "sql.connect.generateEphemeralCert" => ephemeral_cert(app, r),
        m => children::handle(app, r, m).await,
    }
}

/// `connectSettings`: what the connectors need to dial an instance (see [`connect`]). With IAM
/// enforced, the router has checked `cloudsql.instances.connect` before ([`crate::access`]), as
/// for `generateEphemeralCert`.
fn connect_settings(app: &Arc<App>, r: &SqlRequest<'_>) -> Result<Value, ApiError> {
    let st = lock(&app.state);
    let inst = st.sql.instances.get(&format!("{}/{}", r.project, r.rest[1])).ok_or_else(instance_not_found)?;
    instances::require_runnable(inst)?;
    let region = inst.resource["region"].as_str().unwrap_or_default();
    Ok(json!({
        "kind": "sql#connectSettings",
        "serverCaCert": {
            "kind": "sql#sslCert",
            "cert": connectors(app).ca_pem(),
            "commonName": connectors(app).ca_name(),
            "instance": r.rest[1],
        },
        "ipAddresses": inst.resource["ipAddresses"],
        "region": region,
        "databaseVersion": inst.resource["databaseVersion"],
        "backendType": "SECOND_GEN",
        "pscEnabled": false,
        "dnsName": instances::dns_name(&r.project, region, r.rest[1]),
        "serverCaMode": "GOOGLE_MANAGED_CAS_CA",
    }))
}

/// `generateEphemeralCert`: a client certificate for the request's `public_key`.
fn ephemeral_cert(app: &Arc<App>, r: &SqlRequest<'_>) -> Result<Value, ApiError> {
    {
        let st = lock(&app.state);
        let inst = st.sql.instances.get(&format!("{}/{}", r.project, r.rest[1])).ok_or_else(instance_not_found)?;
        instances::require_runnable(inst)?;
    }
    let key = r.req.body["public_key"].as_str().or_else(|| r.req.body["publicKey"].as_str()).unwrap_or_default();
    if key.is_empty() {
        return Err(ApiError::invalid_argument("Invalid request: public_key is required.").with_reason("invalid"));
    }
    // Automatic IAM database authentication: the login token binds the certificate to its
    // principal (a token minted by the emulator's token endpoint or metadata server).
    let principal = match r.req.body["access_token"].as_str().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(app.tokens.principal(t).map(|p| p.email).ok_or_else(|| {
            ApiError::invalid_argument("Invalid request: the access token is not valid or has expired.")
                .with_reason("invalid")
        })?),
    };
    let e = connectors(app)
        .ephemeral_cert(&format!("{}/{}", r.project, r.rest[1]), key, principal.as_deref())
        .map_err(|m| ApiError::invalid_argument(format!("Invalid request: {m}.")).with_reason("invalid"))?;
    let expires = e.not_after.unix_timestamp().max(0) as u64 * 1000;
    Ok(json!({
        "ephemeralCert": {
            "kind": "sql#sslCert",
            "cert": e.pem,
            "commonName": "Google Cloud SQL Client",
            "instance": r.rest[1],
            "expirationTime": rfc3339(expires),
        }
    }))
}

/// Restarts the PostgreSQL server and the listeners of every instance that was running when the
/// state was saved (at start). A server comes back on the internal port whatever the state says
/// (states written before the relay had it on 5432), with a new certificate (the CA is new); an
/// instance saved before instances had addresses of their own gets one now.
pub async fn resume(app: &Arc<App>) {
    // A field Google never returns, which states saved by older emulators still carry.
    for i in lock(&app.state).sql.instances.values_mut() {
        if let Some(o) = i.resource.as_object_mut() {
            o.remove("emulatorPostgresPort");
        }
    }
    let todo: Vec<(String, std::path::PathBuf, Option<std::net::Ipv4Addr>, String, Value)> = lock(&app.state)
        .sql
        .instances
        .iter()
        .filter(|(_, i)| i.resource["state"] == "RUNNABLE")
        .filter_map(|(k, i)| {
            let r = &i.resource;
            let region = r["region"].as_str().unwrap_or_default().to_string();
            Some((k.clone(), i.pg_dir.clone()?, i.pg_host, region, r["settings"]["ipConfiguration"].clone()))
        })
        .collect();
    let port = address::SERVER_PORT;
    for (key, dir, host, region, ip_configuration) in todo {
        let host = match host {
            Some(h) => h,
            None => match address::allocate(app.config.sql_network) {
                Ok(h) => {
                    if let Some(i) = lock(&app.state).sql.instances.get_mut(&key) {
                        i.resource["ipAddresses"] = json!([{"type": "PRIMARY", "ipAddress": h.to_string()}]);
                    }
                    h
                }
                Err(e) => {
                    crate::app::tracing_err(&format!("no address for instance {key}: {e}"));
                    continue;
                }
            },
        };
        if let Some(i) = lock(&app.state).sql.instances.get_mut(&key) {
            (i.pg_host, i.pg_port) = (Some(host), Some(port));
        }
        let mode = network::ssl_mode(&ip_configuration);
        let setup = match instances::server_setup(app, &key, &region, host, mode) {
            Ok(s) => s,
            Err(e) => {
                crate::app::tracing_err(&format!("no certificate for instance {key}: {e}"));
                continue;
            }
        };
        // A previous emulator in this process may be letting go of the addresses (its listener
        // tasks end when the runtime next polls them): a short wait, then give up.
        let mut listening = instances::start_listeners(app, &key, host, port);
        for _ in 0..30 {
            match &listening {
                Err(e) if e.contains("in use") => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    listening = instances::start_listeners(app, &key, host, port);
                }
                _ => break,
            }
        }
        if let Err(e) = listening {
            crate::app::tracing_err(&format!("cannot listen for clients of instance {key}: {e}"));
        }
        if let Err(e) = pg(app).resume(&key, &dir, host.into(), port, &setup).await {
            crate::app::tracing_err(&format!("cannot restart PostgreSQL of instance {key}: {e}"));
            if let Some(i) = lock(&app.state).sql.instances.get_mut(&key) {
                i.resource["state"] = "FAILED".into();
            }
        }
    }
}

/// Stops every listener (connectors, relays) and every PostgreSQL server, data kept (at stop: the
/// addresses are free for the next emulator at once).
pub fn stop(app: &App) {
    connectors(app).stop_all();
    pg(app).stop_all();
}

/// Stops every listener (connectors, relays) and deletes every PostgreSQL server (admin reset).
pub async fn reset(app: &App) {
    connectors(app).stop_all();
    pg(app).destroy_all().await;
}

/// Renders an `sql#operation`. A failed operation is DONE with `error.errors[]` (contract §1.2).
pub fn render_op(base: &str, op: &Operation) -> Value {
    let mut v = json!({
        "kind": "sql#operation",
        "name": op.name,
        "selfLink": format!("{base}/operations/{}", op.name),
        "targetLink": format!("{base}/instances/{}", op.target),
        "targetId": op.target,
        "targetProject": op.project,
        "status": op.status.as_str(),
        "operationType": op.op_type,
        "user": "emulator@gcp-emulator.local",
        "insertTime": rfc3339(op.insert_ms),
    });
    if let Some(t) = op.start_ms {
        v["startTime"] = rfc3339(t).into();
    }
    if let Some(t) = op.end_ms {
        v["endTime"] = rfc3339(t).into();
    }
    if let Some(e) = &op.error {
        v["error"] = json!({
            "kind": "sql#operationErrors",
            "errors": [{"kind": "sql#operationError", "code": e.code, "message": e.message}],
        });
    }
    v
}

/// 404 for a missing instance.
pub fn instance_not_found() -> ApiError {
    ApiError::not_found("The Cloud SQL instance does not exist.").with_reason("instanceDoesNotExist")
}

/// 409 while another operation runs on the instance.
pub fn op_in_progress() -> ApiError {
    ApiError::new_conflict("Operation failed because another operation was already in progress.", "operationInProgress")
}

/// Fails with 409 `operationInProgress` when an operation on `instance` is unfinished.
pub fn check_no_op(st: &State, project: &str, instance: &str) -> Result<(), ApiError> {
    if st.op_in_progress(OpApi::Sql, project, instance) { Err(op_in_progress()) } else { Ok(()) }
}

/// A new Cloud SQL operation on `instance`.
pub fn new_op(project: &str, op_type: &str, instance: &str) -> Operation {
    Operation::new(OpApi::Sql, crate::util::uuid_like(), project, op_type, instance)
}
