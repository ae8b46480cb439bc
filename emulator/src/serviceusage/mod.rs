//! Service Usage v1: services get/list/enable/disable/batchEnable/batchGet, operations get
//! (contract §5), on the API floor. Names use the project number, as the real API answers.
//!
//! Enabling is recorded only; the emulator does not refuse calls to disabled APIs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use crate::access::{Target, project_id};
use crate::api::{JsonApi, Reply};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::state::{OpApi, OpStatus, Operation, State};
use crate::util::{now_ms, project_number};

/// Services listed by `services.list` even before anything touched them.
const CATALOG: &[(&str, &str)] = &[
    ("cloudresourcemanager.googleapis.com", "Cloud Resource Manager API"),
    ("compute.googleapis.com", "Compute Engine API"),
    ("container.googleapis.com", "Kubernetes Engine API"),
    ("iam.googleapis.com", "Identity and Access Management (IAM) API"),
    ("iamcredentials.googleapis.com", "IAM Service Account Credentials API"),
    ("serviceusage.googleapis.com", "Service Usage API"),
    ("sql-component.googleapis.com", "Cloud SQL"),
    ("sqladmin.googleapis.com", "Cloud SQL Admin API"),
    ("storage.googleapis.com", "Cloud Storage API"),
];

/// Service Usage, as the router registers it.
#[derive(Debug)]
pub struct ServiceUsage;

impl JsonApi for ServiceUsage {
    fn owns(&self, req: &ApiRequest) -> bool {
        matches!(req.segs().as_slice(), ["v1", "projects", _, "services", ..] | ["v1", "operations", ..])
    }

    fn method(&self, req: &ApiRequest) -> Option<&'static str> {
        method(req)
    }

    fn authorize(&self, app: &App, req: &ApiRequest, method: &str) -> Result<(), ApiError> {
        crate::access::check_api(app, req, method, target, crate::access::denied)
    }

    fn handle<'a>(
        &'a self,
        app: &'a Arc<App>,
        req: &'a ApiRequest,
        method: &'a str,
    ) -> Reply<'a, Result<Value, ApiError>> {
        Box::pin(std::future::ready(handle(app, req, method)))
    }
}

/// What a Service Usage request acts on, for IAM enforcement: the operation (in its project), the
/// service, or the project.
fn target(st: &State, req: &ApiRequest) -> Target {
    let s = req.segs();
    match s.as_slice() {
        ["v1", "operations", id, ..] => Target {
            project: st.ops.get(*id).map(|o| o.project.clone()),
            resource: format!("operations/{id}"),
            account: None,
        },
        _ => {
            let p = s.get(2).map(|p| project_id(st, p)).unwrap_or_default();
            let resource = match s.get(4) {
                Some(svc) => format!("projects/{p}/services/{svc}"),
                None => format!("projects/{p}"),
            };
            Target { project: Some(p), resource, account: None }
        }
    }
}

/// The method name of a Service Usage request.
pub fn method(req: &ApiRequest) -> Option<&'static str> {
    let s = req.segs();
    let m = &req.method;
    Some(match (s.as_slice(), req.verb.as_deref()) {
        (["v1", "projects", _, "services"], None) if m == Method::GET => "serviceusage.services.list",
        (["v1", "projects", _, "services"], Some("batchEnable")) if m == Method::POST => {
            "serviceusage.services.batchEnable"
        }
        (["v1", "projects", _, "services"], Some("batchGet")) if m == Method::GET => "serviceusage.services.batchGet",
        (["v1", "projects", _, "services", _], None) if m == Method::GET => "serviceusage.services.get",
        (["v1", "projects", _, "services", _], Some("enable")) if m == Method::POST => "serviceusage.services.enable",
        (["v1", "projects", _, "services", _], Some("disable")) if m == Method::POST => "serviceusage.services.disable",
        (["v1", "operations", _], None) if m == Method::GET => "serviceusage.operations.get",
        _ => return None,
    })
}

fn render_service(project: &str, name: &str, enabled: bool) -> Value {
    let number = project_number(project);
    let title = CATALOG.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap_or(name);
    json!({
        "name": format!("projects/{number}/services/{name}"),
        "parent": format!("projects/{number}"),
        "config": {"name": name, "title": title, "documentation": {}, "usage": {}},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

fn valid_service(name: &str) -> Result<(), ApiError> {
    if name.ends_with(".googleapis.com") || name.ends_with(".goog") {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "Invalid service name {name:?}: expected e.g. sqladmin.googleapis.com."
        )))
    }
}

/// Renders a Service Usage operation (`google.longrunning.Operation`).
pub fn render_op(st: &State, op: &Operation) -> Value {
    let mut v = json!({
        "name": format!("operations/{}", op.name),
        "metadata": {
            "@type": "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata",
            "resourceNames": op.target.split(',').map(|s| format!("projects/{}/services/{s}", project_number(&op.project))).collect::<Vec<_>>(),
        },
        "done": op.status == OpStatus::Done,
    });
    if op.status == OpStatus::Done {
        if let Some(e) = &op.error {
            v["error"] = json!({"code": crate::error::rpc_code(&e.code), "message": e.message});
        } else {
            let services: Vec<Value> = op
                .target
                .split(',')
                .map(|s| {
                    render_service(
                        &op.project,
                        s,
                        st.services.get(&op.project).and_then(|m| m.get(s)).copied().unwrap_or(false),
                    )
                })
                .collect();
            v["response"] = match op.op_type.as_str() {
                "BATCH_ENABLE" => {
                    json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse", "services": services})
                }
                "DISABLE" => {
                    json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse", "service": services[0]})
                }
                _ => {
                    json!({"@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse", "service": services[0]})
                }
            };
        }
    }
    v
}

/// Handles a request `method` recognised.
pub fn handle(app: &Arc<App>, req: &ApiRequest, method: &str) -> Result<Value, ApiError> {
    let mut st = lock(&app.state);
    let st = &mut *st;
    if method == "serviceusage.operations.get" {
        let op = st
            .ops
            .get(&req.segments[2])
            .filter(|o| o.api == OpApi::ServiceUsage)
            .ok_or_else(|| ApiError::not_found(format!("Operation operations/{} not found.", req.segments[2])))?;
        return Ok(render_op(st, op));
    }
    let project = st.project_id(&req.segments[2]);
    let enabled = |st: &State, s: &str| st.services.get(&project).and_then(|m| m.get(s)).copied().unwrap_or(false);
    match method {
        "serviceusage.services.get" => {
            valid_service(&req.segments[4])?;
            Ok(render_service(&project, &req.segments[4], enabled(st, &req.segments[4])))
        }
        "serviceusage.services.list" => {
            let mut names: BTreeMap<String, bool> = CATALOG.iter().map(|(n, _)| (n.to_string(), false)).collect();
            if let Some(m) = st.services.get(&project) {
                names.extend(m.iter().map(|(k, v)| (k.clone(), *v)));
            }
            let want = req.query("filter").unwrap_or("").replace(' ', "");
            let services: Vec<Value> = names
                .iter()
                .filter(|(_, on)| match want.as_str() {
                    "state:ENABLED" => **on,
                    "state:DISABLED" => !**on,
                    _ => true,
                })
                .map(|(n, on)| render_service(&project, n, *on))
                .collect();
            Ok(if services.is_empty() { json!({}) } else { json!({"services": services}) })
        }
        "serviceusage.services.batchGet" => {
            let services: Vec<Value> = req
                .query_all("names")
                .iter()
                .map(|n| {
                    let s = n.rsplit('/').next().unwrap_or(n);
                    render_service(&project, s, enabled(st, s))
                })
                .collect();
            Ok(json!({"services": services}))
        }
        "serviceusage.services.enable" | "serviceusage.services.disable" | "serviceusage.services.batchEnable" => {
            let (op_type, services, on) = match method {
                "serviceusage.services.enable" => ("ENABLE", vec![req.segments[4].clone()], true),
                "serviceusage.services.disable" => ("DISABLE", vec![req.segments[4].clone()], false),
                _ => {
                    let ids: Vec<String> = req
                        .body
                        .get("serviceIds")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    if ids.is_empty() || ids.len() > 20 {
                        return Err(ApiError::field_violation(
                            "service_ids",
                            "Between 1 and 20 service ids are required.",
                        ));
                    }
                    ("BATCH_ENABLE", ids, true)
                }
            };
            for s in &services {
                valid_service(s)?;
            }
            let name = format!("acf.p2-{}-{}", project_number(&project), crate::util::uuid_like());
            let op = Operation::new(OpApi::ServiceUsage, name.clone(), &project, op_type, &services.join(","));
            let apply = move |st: &mut State, project: &str| {
                let m = st.services.entry(project.to_string()).or_default();
                for s in &services {
                    m.insert(s.clone(), on);
                }
            };
            let duration = app.settings().op_durations.lookup("serviceusage", op_type);
            if duration.is_zero() {
                // The contract (§5) has Service Usage answer `done: true` at once; so it does,
                // unless a duration was configured for it.
                let mut op = op;
                op.status = OpStatus::Done;
                op.start_ms = Some(now_ms());
                op.end_ms = op.start_ms;
                apply(st, &project);
                st.ops.insert(name.clone(), op);
            } else {
                let p = project.clone();
                app.run_op(st, op, async { Ok(()) }, move |st, r| {
                    if r.is_ok() {
                        apply(st, &p);
                    }
                    Ok(())
                });
            }
            app.persist(st);
            let op = st.ops.get(&name).cloned().ok_or_else(|| ApiError::internal("operation vanished"))?;
            Ok(render_op(st, &op))
        }
        _ => Err(ApiError::unimplemented(req.method.as_str(), &req.path)),
    }
}
