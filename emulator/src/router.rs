//! The router (its own floor, above the APIs, under the admin API and the server): every API
//! registers here, and every request outside the admin API goes through [`serve`].
//!
//! - Endpoints outside the API pipeline (no access token, not counted, no faults): the metadata
//!   server under `/_metadata/`, GKE's Kubernetes webhooks, the OAuth 2.0 token endpoint.
//! - The APIs' pipeline: authentication, routing to a method name, counting, Google's contract
//!   ([`crate::contract`]: the request refused as Google would, the answer checked), the IAM check,
//!   injected faults, the handler, one log line. [`RAW_APIS`] (Cloud Storage, binary bodies) are
//!   asked first, before any body is parsed; then the body is parsed as JSON and the first of
//!   [`JSON_APIS`] that owns the path routes it.
//! - Each API's runtime parts ([`extensions`]), and what start, reset and stop do to them.
//!
//! The one clash between JSON APIs (contract §7): IAM and Resource Manager v1 both live under
//! `/v1/projects/{p}`. Resource Manager owns the project itself (`/v1/projects/{p}` and
//! `/v1/projects/{p}:verb`); IAM owns everything under `/v1/projects/{p}/serviceAccounts`. Cloud
//! SQL v1 owns `instances` and `operations` under a project, GKE owns `locations` and `zones`,
//! Service Usage owns `services` and the top-level `/v1/operations`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::{JsonApi, RawApi};
use crate::app::{App, Extensions, lock};
use crate::contract::Found;
use crate::error::{ApiError, EmulatorError};
use crate::http::{ApiRequest, RawRequest, json_response, parse_query};
use crate::state::State;

/// The APIs with binary bodies, asked first: they route the raw request.
pub const RAW_APIS: &[&dyn RawApi] = &[&crate::storage::Storage];

/// The JSON APIs, in the order they are asked whether they own a path (their paths do not
/// overlap).
pub const JSON_APIS: &[&dyn JsonApi] =
    &[&crate::sql::Sql, &crate::iam::Iam, &crate::crm::Crm, &crate::gke::Gke, &crate::serviceusage::ServiceUsage];

/// The APIs' runtime parts, made at start: Cloud SQL's PostgreSQL servers (under `pg_root`, or a
/// temporary directory) and connector CA, Cloud Storage's object data (beside `state_file`, or in
/// memory) and upload sessions.
pub fn extensions(state_file: Option<&Path>, pg_root: Option<PathBuf>) -> Result<Extensions, EmulatorError> {
    let mut ext = Extensions::default();
    ext.insert(crate::sql::postgres::PgManager::new(pg_root)?);
    ext.insert(crate::sql::connect::Connectors::new().map_err(EmulatorError::Postgres)?);
    ext.insert(crate::storage::Blobs::new(state_file.map(|f| f.with_file_name("storage"))));
    ext.insert(crate::storage::Sessions::default());
    Ok(ext)
}

/// At start: restarts what the saved state says was running (Cloud SQL's servers).
pub async fn resume(app: &Arc<App>) {
    crate::sql::resume(app).await;
}

/// Forgets everything (admin reset): every resource and operation, and the APIs' runtime parts.
pub async fn reset(app: &Arc<App>) {
    app.generation.fetch_add(1, Ordering::SeqCst);
    *lock(&app.state) = State::default();
    crate::storage::reset(app);
    crate::sql::reset(app).await;
    app.persist(&lock(&app.state));
}

/// At stop: stops the APIs' servers (Cloud SQL's PostgreSQL; their data is kept when persisting).
pub fn stop(app: &App) {
    crate::sql::stop(app);
}

/// The JSON API and method name (`sql.instances.get`) of a request, or `None` for a route the
/// emulator does not serve.
pub fn route(req: &ApiRequest) -> Option<(&'static dyn JsonApi, &'static str)> {
    let api = JSON_APIS.iter().find(|a| a.owns(req))?;
    Some((*api, api.method(req)?))
}

/// Serves a request that is not the admin API's (`started`: when it came in, for the log line).
pub async fn serve(app: &Arc<App>, parts: &Parts, bytes: &[u8], started: Instant) -> Response {
    let (method, path) = (&parts.method, parts.uri.path());
    if let Some((resp, label)) = endpoint(app, parts, bytes).await {
        eprintln!("{method} {path} -> {} {label}", resp.status().as_u16());
        return resp;
    }
    let (name, resp) = api_response(app, parts, bytes).await;
    // One line per request; paths and method names carry no secrets (passwords travel in bodies).
    eprintln!("{method} {path} -> {} {name} {}ms", resp.status().as_u16(), started.elapsed().as_millis());
    resp
}

/// The endpoints outside the API pipeline, and the label of their log line.
async fn endpoint(app: &Arc<App>, parts: &Parts, bytes: &[u8]) -> Option<(Response, &'static str)> {
    let path = parts.uri.path();
    if path.starts_with("/_metadata/") {
        return Some((crate::metadata::handle(app, path, &parts.headers).await, "metadata"));
    }
    // GKE's Kubernetes webhooks: the kube-apiserver calls them without an Authorization header.
    if parts.method == Method::POST {
        if let Some(resp) = crate::gke::identity::handle(app, path, parts.uri.query(), bytes) {
            return Some((resp, "gke.webhook"));
        }
    }
    if path == "/token" && parts.method == Method::POST {
        return Some((crate::metadata::oauth::handle(app, bytes), "oauth2.token"));
    }
    None
}

/// The APIs' pipeline: the method name (for the log line) and the response.
async fn api_response(app: &Arc<App>, parts: &Parts, bytes: &[u8]) -> (&'static str, Response) {
    if let Err(resp) = authenticated(app, parts) {
        return ("unauthenticated", *resp);
    }
    let raw = RawRequest {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: bytes,
        caller: caller(app, parts),
    };
    for api in RAW_APIS {
        if let Some(name) = api.method(app, &raw) {
            count(app, name, raw.caller.as_deref());
            let found = match raw_contract(app, &raw, name) {
                Ok(f) => f,
                Err(e) => return (name, e.into_response()),
            };
            if let Err(resp) = api.authorize(app, &raw, name) {
                return (name, *resp);
            }
            if let Some(resp) = injected_fault(app, name).await {
                return (name, resp);
            }
            let resp = api.handle(app, &raw, name).await;
            return (name, raw_response_contract(app, &raw, found, resp).await);
        }
    }
    let mut req = match ApiRequest::parse(parts.method.clone(), parts.uri.path(), parts.uri.query(), bytes) {
        Ok(r) => r,
        Err(e) => return ("invalid", e.into_response()),
    };
    req.caller = raw.caller;
    let Some((api, name)) = route(&req) else {
        count(app, "unimplemented", req.caller.as_deref());
        return ("unimplemented", ApiError::unimplemented(req.method.as_str(), &req.path).into_response());
    };
    count(app, name, req.caller.as_deref());
    // The published contract first: Google's front end parses the request before the API sees it.
    let body = (!req.body.is_null()).then_some(&req.body);
    let found = match app.contract.check_request(name, &req.method, &req.path, &req.query, body) {
        Ok(f) => f,
        Err(e) => return (name, e.into_response()),
    };
    // Then permission, before anything else the API does, as Google checks it.
    if let Err(e) = api.authorize(app, &req, name) {
        return (name, e.into_response());
    }
    if let Some(resp) = injected_fault(app, name).await {
        return (name, resp);
    }
    match api.handle(app, &req, name).await {
        Ok(v) => {
            if let Some(f) = found {
                app.contract.check_response(f, &req.method, &req.path, &v);
            }
            (name, json_response(StatusCode::OK, &v))
        }
        Err(e) => (name, e.into_response()),
    }
}

/// Whether a request with a binary body is a JSON one (metadata, not media): its body is then
/// held to the contract too.
fn json_body(raw: &RawRequest<'_>) -> Option<Value> {
    let json = raw
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let upload = raw.path.starts_with("/upload/") || raw.path.starts_with("/resumable/");
    if !json || upload || raw.body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice(raw.body).ok()
}

/// The contract's check of a request with a binary body (its query, and its body when JSON).
fn raw_contract(app: &App, raw: &RawRequest<'_>, name: &str) -> Result<Option<Found>, ApiError> {
    let query = raw.query.map(parse_query).unwrap_or_default();
    let body = json_body(raw);
    app.contract.check_request(name, raw.method, raw.path, &query, body.as_ref())
}

/// The contract's check of a JSON answer (not media) to a request with a binary body.
async fn raw_response_contract(app: &App, raw: &RawRequest<'_>, found: Option<Found>, resp: Response) -> Response {
    let media = raw.path.starts_with("/download/")
        || raw.query.map(parse_query).unwrap_or_default().iter().any(|(k, v)| k == "alt" && v == "media");
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let Some(found) = found.filter(|_| !media && json && resp.status() == StatusCode::OK) else {
        return resp;
    };
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        app.contract.check_response(found, raw.method, raw.path, &v);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The configured token or one the token endpoint minted, when the emulator requires one.
fn authenticated(app: &App, parts: &Parts) -> Result<(), Box<Response>> {
    if let Some(token) = &app.config.access_token {
        let expected = format!("Bearer {token}");
        let given = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // The configured token, or one the token endpoint minted.
        let minted = given.and_then(|g| g.strip_prefix("Bearer ")).is_some_and(|t| app.tokens.principal(t).is_some());
        if given != Some(expected.as_str()) && !minted {
            let e = ApiError::unauthenticated(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
            return Err(Box::new(e.into_response()));
        }
    }
    Ok(())
}

/// The principal of the request's bearer token, when the emulator minted it (`None`: the
/// configured admin token, or no token where none is required).
fn caller(app: &App, parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| app.tokens.principal(t))
        .map(|p| p.email)
}

/// The injected latency (slept here) and fault of method `name`, if any: the fault's response.
async fn injected_fault(app: &App, name: &str) -> Option<Response> {
    let (latency, fault) = lock(&app.faults).decide(name);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let e = fault?;
    *lock(&app.stats).faults_injected.entry(name.to_string()).or_default() += 1;
    Some(e.into_response())
}

fn count(app: &App, name: &str, caller: Option<&str>) {
    let mut s = lock(&app.stats);
    s.total += 1;
    *s.requests.entry(name.to_string()).or_default() += 1;
    if let Some(c) = caller {
        *s.by_caller.entry(c.to_string()).or_default().entry(name.to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Need, narrowest_role, need, permission, role};
    use axum::http::Method;

    fn name(method: Method, path: &str) -> Option<&'static str> {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        route(&ApiRequest::parse(method, p, Some(q), b"").unwrap()).map(|r| r.1)
    }

    #[test]
    fn routes_every_api() {
        assert_eq!(name(Method::POST, "/sql/v1beta4/projects/p/instances"), Some("sql.instances.insert"));
        assert_eq!(name(Method::GET, "/v1/projects/p/instances/i1"), Some("sql.instances.get"));
        assert_eq!(name(Method::DELETE, "/v1/projects/p/instances/i1/users?name=a%40p.iam"), Some("sql.users.delete"));
        assert_eq!(name(Method::GET, "/sql/v1beta4/projects/p/operations/x"), Some("sql.operations.get"));
        assert_eq!(
            name(Method::POST, "/v1/projects/p:getIamPolicy"),
            Some("cloudresourcemanager.v1.projects.getIamPolicy")
        );
        assert_eq!(
            name(Method::POST, "/v3/projects/p:setIamPolicy"),
            Some("cloudresourcemanager.v3.projects.setIamPolicy")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/-/serviceAccounts/a%40p.iam.gserviceaccount.com:getIamPolicy"),
            Some("iam.serviceAccounts.getIamPolicy")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com/keys"),
            Some("iam.serviceAccounts.keys.create")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/p/locations/us-central1/clusters"),
            Some("container.clusters.create")
        );
        assert_eq!(
            name(Method::GET, "/v1/projects/p/zones/us-central1-a/operations/op-1"),
            Some("container.operations.get")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/p/services/sqladmin.googleapis.com:enable"),
            Some("serviceusage.services.enable")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/p/services:batchEnable"),
            Some("serviceusage.services.batchEnable")
        );
        assert_eq!(name(Method::GET, "/v1/operations/acf.p2-1"), Some("serviceusage.operations.get"));
    }

    #[test]
    fn unknown_routes_are_none() {
        assert_eq!(name(Method::GET, "/v1/projects/p/roles"), None);
        assert_eq!(name(Method::POST, "/sql/v1beta4/projects/p/instances/i/clone"), None);
        assert_eq!(name(Method::GET, "/compute/v1/projects/p/zones"), None);
    }

    /// Every string literal in the APIs that looks like a method name (`"sql.instances.get"`).
    fn router_method_names() -> Vec<String> {
        let sources = [
            include_str!("sql/mod.rs"),
            include_str!("iam/mod.rs"),
            include_str!("crm/mod.rs"),
            include_str!("gke/mod.rs"),
            include_str!("serviceusage/mod.rs"),
            include_str!("storage/mod.rs"),
        ];
        let prefixes = ["sql.", "iam.", "cloudresourcemanager.", "container.", "serviceusage.", "storage."];
        let mut names = Vec::new();
        for src in sources {
            for prefix in prefixes {
                for (at, _) in src.match_indices(&format!("\"{prefix}")) {
                    let rest = &src[at + 1..];
                    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(rest.len());
                    let name = &rest[..len];
                    let literal = rest[len..].starts_with('"');
                    if literal && !name.ends_with('.') && !name.ends_with(".com") && name.split('.').count() >= 3 {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn every_router_method_has_a_permission() {
        let names = router_method_names();
        assert!(names.len() > 60, "{names:?}");
        for n in &names {
            assert!(need(n).is_some(), "no permission for method {n}");
        }
        assert_eq!(permission("sql.instances.get"), Some("cloudsql.instances.get"));
        assert_eq!(permission("sql.instances.insert"), Some("cloudsql.instances.create"));
        assert_eq!(permission("sql.instances.patch"), Some("cloudsql.instances.update"));
        assert_eq!(permission("sql.operations.get"), Some("cloudsql.instances.get"));
        assert_eq!(permission("sql.connect.generateEphemeralCert"), Some("cloudsql.instances.connect"));
        assert_eq!(permission("iam.serviceAccounts.keys.create"), Some("iam.serviceAccountKeys.create"));
        assert_eq!(
            permission("cloudresourcemanager.v3.projects.setIamPolicy"),
            Some("resourcemanager.projects.setIamPolicy")
        );
        assert_eq!(permission("container.operations.get"), Some("container.operations.get"));
        assert_eq!(permission("serviceusage.services.batchEnable"), Some("serviceusage.services.enable"));
        assert_eq!(permission("storage.objects.patch"), Some("storage.objects.update"));
        assert_eq!(permission("storage.buckets.insert"), Some("storage.buckets.create"));
        assert_eq!(need("cloudresourcemanager.v1.projects.testIamPermissions"), Some(Need::Nothing));
        assert_eq!(need("sql.instances.clone"), None);
    }

    #[test]
    fn every_needed_permission_is_granted_by_owner_and_some_narrower_role() {
        for n in router_method_names() {
            if let Some(p) = permission(&n) {
                assert!(role("roles/owner").is_some_and(|r| r.grants(p)), "{p}");
                let narrowest = narrowest_role(p).unwrap_or_default();
                assert!(narrowest != "roles/owner" && narrowest != "roles/editor", "{n}: {p} only by {narrowest}");
            }
        }
    }
}
