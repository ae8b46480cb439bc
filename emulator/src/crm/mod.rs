//! Cloud Resource Manager v1 and v3: projects get and project IAM policies (contract §3), on the
//! API floor. Policy semantics are shared with IAM ([`crate::policy`]).
//!
//! Every project id exists: the emulator has no project lifecycle, and a project's number is
//! derived from its id ([`crate::util::project_number`]).

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use crate::access::{Target, project_id};
use crate::api::{JsonApi, Reply};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::state::State;
use crate::util::project_number;

/// Cloud Resource Manager, as the router registers it.
#[derive(Debug)]
pub struct Crm;

impl JsonApi for Crm {
    fn owns(&self, req: &ApiRequest) -> bool {
        matches!(req.segs().as_slice(), ["v1" | "v3", "projects", _])
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

/// What a Resource Manager request acts on, for IAM enforcement: the project.
fn target(st: &State, req: &ApiRequest) -> Target {
    let p = req.segs().get(2).map(|p| project_id(st, p)).unwrap_or_default();
    Target { resource: format!("//cloudresourcemanager.googleapis.com/projects/{p}"), project: Some(p), account: None }
}

/// The method name of a Resource Manager request: `/v1/projects/{p}` or `/v3/projects/{p}`, with
/// an optional `:verb`.
pub fn method(req: &ApiRequest) -> Option<&'static str> {
    let s = req.segs();
    let ["v1" | "v3", "projects", _] = s.as_slice() else {
        return None;
    };
    let v1 = s[0] == "v1";
    Some(match (&req.method, req.verb.as_deref()) {
        (&Method::GET, None) if v1 => "cloudresourcemanager.v1.projects.get",
        (&Method::GET, None) => "cloudresourcemanager.v3.projects.get",
        (&Method::POST, Some("getIamPolicy")) if v1 => "cloudresourcemanager.v1.projects.getIamPolicy",
        (&Method::POST, Some("getIamPolicy")) => "cloudresourcemanager.v3.projects.getIamPolicy",
        (&Method::POST, Some("setIamPolicy")) if v1 => "cloudresourcemanager.v1.projects.setIamPolicy",
        (&Method::POST, Some("setIamPolicy")) => "cloudresourcemanager.v3.projects.setIamPolicy",
        (&Method::POST, Some("testIamPermissions")) if v1 => "cloudresourcemanager.v1.projects.testIamPermissions",
        (&Method::POST, Some("testIamPermissions")) => "cloudresourcemanager.v3.projects.testIamPermissions",
        _ => return None,
    })
}

/// Handles a request `method` recognised.
pub fn handle(app: &Arc<App>, req: &ApiRequest, method: &str) -> Result<Value, ApiError> {
    let mut st = lock(&app.state);
    let project = st.project_id(&req.segments[2]);
    let number = project_number(&project);
    let op = method.rsplit('.').next().unwrap_or("");
    match op {
        "get" if method.contains(".v1.") => Ok(json!({
            "projectNumber": number,
            "projectId": project,
            "lifecycleState": "ACTIVE",
            "name": project,
            "createTime": "2024-01-01T00:00:00.000Z",
        })),
        "get" => Ok(json!({
            "name": format!("projects/{number}"),
            "projectId": project,
            "state": "ACTIVE",
            "displayName": project,
            "createTime": "2024-01-01T00:00:00.000Z",
            "etag": "W/\"emulator\"",
        })),
        "getIamPolicy" => Ok(crate::policy::render(st.crm_policies.get(&project).unwrap_or(&Default::default()))),
        "setIamPolicy" => {
            let mut policy = st.crm_policies.get(&project).cloned().unwrap_or_default();
            let delay = app.settings().sa_visibility_delay_ms;
            crate::policy::set(&mut policy, &req.body, |m| crate::policy::check_member(&st, m, delay))?;
            let out = crate::policy::render(&policy);
            st.crm_policies.insert(project, policy);
            app.persist(&st);
            Ok(out)
        }
        "testIamPermissions" => Ok(crate::policy::test_permissions(&req.body, |p| {
            crate::access::caller_holds(app, &st, req.caller.as_deref(), &project, None, p)
        })),
        _ => Err(ApiError::unimplemented(req.method.as_str(), &req.path)),
    }
}
