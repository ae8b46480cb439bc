//! Cloud Storage (API floor): the JSON API subset that a state backend and `gcloud storage` use,
//! on the same port as the other APIs (contract: `shared/reference/kwok-and-gcs-backend.md`, part
//! B2). Its bodies are binary, so it registers with the router as a [`RawApi`]: routed before
//! any body is parsed.
//!
//! - Buckets: insert, get, list (by project), delete (only when empty).
//! - Objects: upload (`uploadType=media`, `multipart`, and `resumable` sessions), download
//!   (`alt=media` on the JSON path, `/download/storage/v1/…`, and the XML path `/{bucket}/{object}`,
//!   with a single `Range`), metadata get and patch, list (`prefix`, `delimiter`, `pageToken`,
//!   `maxResults`, `startOffset`, `endOffset`), delete.
//! - Preconditions: `ifGenerationMatch` (`0`: only if no live object), `ifGenerationNotMatch`,
//!   `ifMetagenerationMatch`, `ifMetagenerationNotMatch` (and the XML `x-goog-if-*` headers): 412
//!   `conditionNotMet` on a mismatch, 304 for the `NotMatch` ones on a read. `generation=G` reads
//!   or deletes that generation (only the live one is kept: no versioning).
//! - `md5Hash` and `crc32c` of every object, `X-Goog-Hash`/`X-Goog-Generation` on downloads.
//! - Errors in the JSON API's shape; 404 `notFound` ("No such object: b/o").
//!
//! Object data lives beside the state (`--state-dir`: `storage/<bucket>/<generation>`), or in
//! memory ([`Blobs`], an extension of the `App`); the metadata is part of the state file
//! ([`crate::state::StorageState`]).
//!
//! Here: routing and dispatch; `enforce` checks IAM, `buckets`, `objects` and `upload` serve.

mod blobs;
mod buckets;
mod enforce;
pub mod hash;
mod objects;
mod upload;

use std::sync::Arc;

use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::api::{RawApi, Reply};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::RawRequest;
pub use blobs::Blobs;
pub use upload::Sessions;

/// Cloud Storage, as the router registers it.
#[derive(Debug)]
pub struct Storage;

impl RawApi for Storage {
    /// A path that could be the XML API's `/{bucket}/{object}` is Storage's only when that bucket
    /// exists: any other unknown path stays a 501 of the emulator, not a 404 of a bucket.
    fn method(&self, app: &App, req: &RawRequest<'_>) -> Option<&'static str> {
        match route(req.method, req.path, &query_pairs(req.query))? {
            Route::XmlGet(bucket, _) if !lock(&app.state).storage.buckets.contains_key(&bucket) => None,
            r => Some(r.method_name()),
        }
    }

    fn authorize(&self, app: &App, req: &RawRequest<'_>, method: &str) -> Result<(), Box<Response>> {
        match enforce::scope(req) {
            Some(scope) => enforce::authorize(app, req.caller.as_deref(), method, scope),
            None => Ok(()),
        }
    }

    fn handle<'a>(&'a self, app: &'a Arc<App>, req: &'a RawRequest<'a>, _method: &'static str) -> Reply<'a, Response> {
        Box::pin(async move {
            let query = query_pairs(req.query);
            let Some(r) = route(req.method, req.path, &query) else {
                return ApiError::unimplemented(req.method.as_str(), req.path).into_response();
            };
            match serve(app, req, &query, r).await {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            }
        })
    }
}

/// The object data (an extension of the `App`).
pub fn blobs(app: &App) -> &Blobs {
    app.ext()
}

/// The resumable upload sessions (an extension of the `App`).
pub fn sessions(app: &App) -> &Sessions {
    app.ext()
}

/// What a request is, once routed.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    BucketsList,
    BucketsInsert,
    BucketsGet(String),
    BucketsDelete(String),
    ObjectsList(String),
    ObjectsGet { bucket: String, object: String, media: bool },
    ObjectsPatch(String, String),
    ObjectsDelete(String, String),
    Upload(String),
    UploadChunk(String),
    XmlGet(String, String),
}

impl Route {
    fn method_name(&self) -> &'static str {
        match self {
            Route::BucketsList => "storage.buckets.list",
            Route::BucketsInsert => "storage.buckets.insert",
            Route::BucketsGet(_) => "storage.buckets.get",
            Route::BucketsDelete(_) => "storage.buckets.delete",
            Route::ObjectsList(_) => "storage.objects.list",
            Route::ObjectsGet { .. } | Route::XmlGet(..) => "storage.objects.get",
            Route::ObjectsPatch(..) => "storage.objects.patch",
            Route::ObjectsDelete(..) => "storage.objects.delete",
            Route::Upload(_) | Route::UploadChunk(_) => "storage.objects.insert",
        }
    }
}

/// First path segments that belong to the other APIs (never an XML bucket path).
const OTHER_PREFIXES: &[&str] = &[
    "v1",
    "v1beta1",
    "v1beta4",
    "v3",
    "sql",
    "_emulator",
    "_metadata",
    "token",
    "computeMetadata",
    "storage",
    "upload",
    "download",
    "resumable",
];

fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect()
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    crate::http::parse_query(query.unwrap_or(""))
}

/// The Storage route of a request, or `None` when it belongs to another API.
fn route(method: &Method, path: &str, query: &[(String, String)]) -> Option<Route> {
    let s = segments(path);
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let has = |k: &str| query.iter().any(|(q, _)| q == k);
    let media = query.iter().any(|(k, v)| k == "alt" && v == "media");
    Some(match (method.as_str(), s.as_slice()) {
        ("GET", ["storage", "v1", "b"]) => Route::BucketsList,
        ("POST", ["storage", "v1", "b"]) => Route::BucketsInsert,
        ("GET", ["storage", "v1", "b", b]) => Route::BucketsGet(b.to_string()),
        ("DELETE", ["storage", "v1", "b", b]) => Route::BucketsDelete(b.to_string()),
        ("GET", ["storage", "v1", "b", b, "o"]) => Route::ObjectsList(b.to_string()),
        ("GET", ["storage" | "download", "v1", "b", b, "o", o])
        | ("GET", ["download", "storage", "v1", "b", b, "o", o]) => {
            Route::ObjectsGet { bucket: b.to_string(), object: o.to_string(), media: media || s[0] == "download" }
        }
        ("PATCH", ["storage", "v1", "b", b, "o", o]) => Route::ObjectsPatch(b.to_string(), o.to_string()),
        ("DELETE", ["storage", "v1", "b", b, "o", o]) => Route::ObjectsDelete(b.to_string(), o.to_string()),
        // gcloud (apitools) starts resumable uploads under `/resumable/upload/...`.
        ("POST", ["upload" | "resumable", .., "b", b, "o"]) if !has("upload_id") && upload_path(&s) => {
            Route::Upload(b.to_string())
        }
        ("PUT" | "POST", ["upload" | "resumable", .., "b", b, "o"]) if has("upload_id") && upload_path(&s) => {
            Route::UploadChunk(b.to_string())
        }
        ("GET" | "HEAD", [b, rest @ ..]) if !rest.is_empty() && !OTHER_PREFIXES.contains(b) => {
            Route::XmlGet(b.to_string(), rest.join("/"))
        }
        _ => return None,
    })
}

/// `upload/storage/v1/b/{b}/o` or `resumable/upload/storage/v1/b/{b}/o`.
fn upload_path(s: &[&str]) -> bool {
    matches!(s, ["upload", "storage", "v1", "b", _, "o"] | ["resumable", "upload", "storage", "v1", "b", _, "o"])
}

async fn serve(
    app: &Arc<App>,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    r: Route,
) -> Result<Response, ApiError> {
    let base = base(app, req.headers);
    match r {
        Route::BucketsList => buckets::list(app, query, &base),
        Route::BucketsInsert => buckets::insert(app, req, query, &base),
        Route::BucketsGet(b) => buckets::get(app, &b, &base),
        Route::BucketsDelete(b) => buckets::delete(app, &b),
        Route::ObjectsList(b) => objects::list(app, &b, query, &base),
        Route::ObjectsGet { bucket, object, media } => objects::get(app, req, query, &bucket, &object, media, &base),
        Route::XmlGet(bucket, object) => objects::xml_get(app, req, query, &bucket, &object),
        Route::ObjectsPatch(bucket, object) => objects::patch(app, req, query, &bucket, &object, &base),
        Route::ObjectsDelete(bucket, object) => objects::delete(app, req, query, &bucket, &object),
        Route::Upload(bucket) => upload::upload(app, req, query, &bucket, &base),
        Route::UploadChunk(bucket) => upload::upload_chunk(app, req, query, &bucket, &base),
    }
}

/// Forgets every object's data (admin reset).
pub fn reset(app: &App) {
    blobs(app).clear();
}

fn no_bucket(b: &str) -> ApiError {
    ApiError::not_found(format!("The specified bucket does not exist: {b}"))
}

fn no_object(b: &str, o: &str) -> ApiError {
    ApiError::not_found(format!("No such object: {b}/{o}"))
}

/// `https://host/` as the client reached the emulator (for links and session URLs).
fn base(app: &App, headers: &HeaderMap) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("{}://{host}/", if app.base_url.starts_with("https") { "https" } else { "http" }),
        None => app.base_url.clone(),
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str) -> Option<Route> {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        route(&method, p, &query_pairs(Some(q)))
    }

    #[test]
    fn routes() {
        assert_eq!(r(Method::GET, "/storage/v1/b?project=p"), Some(Route::BucketsList));
        assert_eq!(
            r(Method::GET, "/storage/v1/b/bk/o/a%2Fb.json?alt=media"),
            Some(Route::ObjectsGet { bucket: "bk".into(), object: "a/b.json".into(), media: true })
        );
        assert_eq!(
            r(Method::PUT, "/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=x"),
            Some(Route::UploadChunk("bk".into()))
        );
        assert_eq!(
            r(Method::POST, "/resumable/upload/storage/v1/b/bk/o?uploadType=resumable"),
            Some(Route::Upload("bk".into()))
        );
        assert_eq!(r(Method::POST, "/upload/x/v1/b/bk/o"), None);
        assert_eq!(r(Method::GET, "/bk/a/b.json"), Some(Route::XmlGet("bk".into(), "a/b.json".into())));
        assert_eq!(r(Method::GET, "/v1/projects/p"), None, "other APIs keep their paths");
        assert_eq!(r(Method::GET, "/sql/v1beta4/projects/p/instances"), None);
    }
}
