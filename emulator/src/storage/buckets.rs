//! Cloud Storage buckets (API floor): insert, get, list by project, delete when empty.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{enc, no_bucket};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::{RawRequest, json_response};
use crate::state::Bucket;
use crate::util::{now_ms, project_number, rfc3339};

/// `buckets.list`: the project's buckets.
pub(super) fn list(app: &App, query: &[(String, String)], base: &str) -> Result<Response, ApiError> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let project = q("project").ok_or_else(|| ApiError::invalid_argument("Required parameter: project"))?;
    let st = lock(&app.state);
    let items: Vec<Value> =
        st.storage.buckets.values().filter(|b| b.project == project).map(|b| bucket_json(b, base)).collect();
    let mut v = json!({"kind": "storage#buckets"});
    if !items.is_empty() {
        v["items"] = json!(items);
    }
    Ok(json_response(StatusCode::OK, &v))
}

/// `buckets.insert`: a new bucket in the `project` parameter's project.
pub(super) fn insert(
    app: &App,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    base: &str,
) -> Result<Response, ApiError> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let project = q("project").ok_or_else(|| ApiError::invalid_argument("Required parameter: project"))?;
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    check_bucket_name(&name)?;
    let mut st = lock(&app.state);
    if let Some(b) = st.storage.buckets.get(&name) {
        return Err(if b.project == project {
            ApiError::new_conflict(
                "Your previous request to create the named bucket succeeded and you already own it.",
                "conflict",
            )
        } else {
            ApiError::new_conflict(
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
                "conflict",
            )
        });
    }
    let b = Bucket {
        name: name.clone(),
        project: project.to_string(),
        location: body.get("location").and_then(Value::as_str).unwrap_or("US").to_uppercase(),
        storage_class: body.get("storageClass").and_then(Value::as_str).unwrap_or("STANDARD").to_string(),
        created_ms: now_ms(),
        objects: BTreeMap::new(),
    };
    let v = bucket_json(&b, base);
    st.storage.buckets.insert(name, b);
    app.persist(&st);
    Ok(json_response(StatusCode::OK, &v))
}

/// `buckets.get`.
pub(super) fn get(app: &App, b: &str, base: &str) -> Result<Response, ApiError> {
    let st = lock(&app.state);
    let bucket = st.storage.buckets.get(b).ok_or_else(|| no_bucket(b))?;
    Ok(json_response(StatusCode::OK, &bucket_json(bucket, base)))
}

/// `buckets.delete`: only an empty bucket.
pub(super) fn delete(app: &App, b: &str) -> Result<Response, ApiError> {
    let mut st = lock(&app.state);
    let bucket = st.storage.buckets.get(b).ok_or_else(|| no_bucket(b))?;
    if !bucket.objects.is_empty() {
        return Err(ApiError::new_conflict("The bucket you tried to delete is not empty.", "conflict"));
    }
    st.storage.buckets.remove(b);
    app.persist(&st);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) fn bucket_json(b: &Bucket, base: &str) -> Value {
    json!({
        "kind": "storage#bucket",
        "id": b.name,
        "selfLink": format!("{base}storage/v1/b/{}", enc(&b.name)),
        "projectNumber": project_number(&b.project),
        "name": b.name,
        "timeCreated": rfc3339(b.created_ms),
        "updated": rfc3339(b.created_ms),
        "metageneration": "1",
        "iamConfiguration": {"bucketPolicyOnly": {"enabled": true}, "uniformBucketLevelAccess": {"enabled": true},
                             "publicAccessPrevention": "inherited"},
        "location": b.location,
        "locationType": if b.location.contains('-') { "region" } else { "multi-region" },
        "storageClass": b.storage_class,
        "etag": "CAE=",
    })
}

/// Bucket names: 3–63 characters of lowercase letters, digits, `-`, `_`, `.`, starting and ending
/// with a letter or digit.
fn check_bucket_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(ApiError::invalid_argument(format!("Invalid bucket name: '{name}'"))) }
}
