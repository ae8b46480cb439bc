//! IAM enforcement of Cloud Storage requests (API floor, Storage's folder): the method's
//! permission on the bucket's project, and the JSON API's refusal.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{Route, query_pairs, route};
use crate::app::{App, lock};
use crate::http::{RawRequest, json_response};

/// What a Storage request acts on, for IAM enforcement ([`authorize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scope {
    /// A project: `buckets.insert` and `buckets.list` name it in `project` (`None`: missing).
    Project(Option<String>),
    /// A bucket (or an object in it).
    Bucket(String),
}

/// The scope of a Storage request, or `None` when it is not one.
pub(super) fn scope(req: &RawRequest<'_>) -> Option<Scope> {
    let query = query_pairs(req.query);
    let project = || query.iter().find(|(k, _)| k == "project").map(|(_, v)| v.clone());
    Some(match route(req.method, req.path, &query)? {
        Route::BucketsList | Route::BucketsInsert => Scope::Project(project()),
        Route::BucketsGet(b)
        | Route::BucketsDelete(b)
        | Route::ObjectsList(b)
        | Route::ObjectsGet { bucket: b, .. }
        | Route::ObjectsPatch(b, _)
        | Route::ObjectsDelete(b, _)
        | Route::Upload(b)
        | Route::UploadChunk(b)
        | Route::XmlGet(b, _) => Scope::Bucket(b),
    })
}

/// With IAM enforced, a principal's Cloud Storage request needs the method's permission on the
/// bucket's project (for `buckets.insert` and `buckets.list`, the `project` parameter's): 403 in
/// the JSON API's shape otherwise. A bucket that does not exist, or a missing `project`, is left to
/// the handler (404, 400).
pub(super) fn authorize(app: &App, caller: Option<&str>, method: &str, scope: Scope) -> Result<(), Box<Response>> {
    let Some(email) = caller.filter(|_| app.config.enforce_iam) else { return Ok(()) };
    let permission = crate::access::permission(method).unwrap_or(method);
    let st = lock(&app.state);
    let project = match &scope {
        Scope::Project(p) => p.clone(),
        Scope::Bucket(b) => st.storage.buckets.get(b).map(|b| b.project.clone()),
    };
    let Some(project) = project else { return Ok(()) };
    if crate::access::project_grants(&st, &project, email, permission) {
        return Ok(());
    }
    eprintln!("iam: refused {email} {permission} on storage project {project}");
    let what = match permission {
        "storage.buckets.create" | "storage.buckets.list" => "the Google Cloud project",
        p if p.starts_with("storage.buckets.") || p == "storage.objects.list" => "the Google Cloud Storage bucket",
        _ => "the Google Cloud Storage object",
    };
    let message = format!(
        "{email} does not have {permission} access to {what}. Permission '{permission}' denied on resource (or it may not exist)."
    );
    Err(Box::new(json_response(
        StatusCode::FORBIDDEN,
        &json!({"error": {"code": 403, "message": message, "errors": [{"message": message, "domain": "global", "reason": "forbidden"}]}}),
    )))
}
