//! Cloud Storage: the JSON API subset that a state backend and `gcloud storage` use, on the same
//! port as the other APIs (contract: `shared/reference/kwok-and-gcs-backend.md`, part B2).
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
//! memory; the metadata is part of the state file.

pub mod hash;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::json_response;
use crate::util::{now_ms, project_number, random_hex, rfc3339};

/// Buckets by name (one global namespace, as in Cloud Storage).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageState {
    /// The buckets.
    pub buckets: BTreeMap<String, Bucket>,
    /// The last generation handed out (generations are unique across the emulator).
    pub last_generation: i64,
}

/// One bucket and the live version of each of its objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// Its name.
    pub name: String,
    /// The project id that owns it.
    pub project: String,
    /// `location` (upper case).
    pub location: String,
    /// `storageClass`.
    pub storage_class: String,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Objects by name.
    pub objects: BTreeMap<String, Object>,
}

/// One object's metadata (its data is in the blob store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object {
    /// Changes with every new content.
    pub generation: i64,
    /// Changes with every metadata update of this generation.
    pub metageneration: i64,
    /// Bytes.
    pub size: u64,
    /// `contentType`.
    pub content_type: String,
    /// `md5Hash` (base64).
    pub md5: String,
    /// `crc32c` (base64).
    pub crc32c: String,
    /// Creation time of this generation, ms.
    pub created_ms: u64,
    /// Last metadata update, ms.
    pub updated_ms: u64,
    /// Custom metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Object data by `(bucket, generation)`.
type BlobMap = HashMap<(String, i64), Arc<Vec<u8>>>;

/// Object data by `(bucket, generation)`: in memory, written through to files when persisting.
#[derive(Debug, Default)]
pub struct Blobs {
    dir: Option<PathBuf>,
    mem: Mutex<BlobMap>,
}

impl Blobs {
    /// Data kept under `dir` (`None`: in memory only).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Blobs { dir, mem: Mutex::default() }
    }

    fn path(&self, bucket: &str, generation: i64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(bucket).join(generation.to_string()))
    }

    fn put(&self, bucket: &str, generation: i64, data: Vec<u8>) -> Result<(), ApiError> {
        if let Some(p) = self.path(bucket, generation) {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(p.parent().expect("a bucket directory"))?;
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, &data)?;
                std::fs::rename(&tmp, &p)
            };
            write().map_err(|e| ApiError::internal(format!("cannot store the object's data: {e}")))?;
        }
        lock(&self.mem).insert((bucket.to_string(), generation), Arc::new(data));
        Ok(())
    }

    fn get(&self, bucket: &str, generation: i64) -> Option<Arc<Vec<u8>>> {
        if let Some(b) = lock(&self.mem).get(&(bucket.to_string(), generation)) {
            return Some(b.clone());
        }
        let data = Arc::new(std::fs::read(self.path(bucket, generation)?).ok()?);
        lock(&self.mem).insert((bucket.to_string(), generation), data.clone());
        Some(data)
    }

    fn remove(&self, bucket: &str, generation: i64) {
        lock(&self.mem).remove(&(bucket.to_string(), generation));
        if let Some(p) = self.path(bucket, generation) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Forgets every object's data (admin reset).
    pub fn clear(&self) {
        lock(&self.mem).clear();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Resumable upload sessions by id (in memory: a restarted emulator forgets them, as a session
/// can expire on the real service).
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

#[derive(Debug, Clone)]
struct Session {
    bucket: String,
    name: String,
    content_type: String,
    metadata: BTreeMap<String, String>,
    conditions: Conditions,
    data: Vec<u8>,
}

/// A request to the Storage API, as the server hands it over.
pub struct StorageRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// The raw (percent-encoded) path.
    pub path: &'a str,
    /// The raw query.
    pub query: Option<&'a str>,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
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
const OTHER_PREFIXES: &[&str] =
    &["v1", "v1beta1", "v1beta4", "v3", "sql", "_emulator", "_metadata", "token", "computeMetadata", "storage", "upload", "download", "resumable"];

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
        ("GET", ["storage" | "download", "v1", "b", b, "o", o]) | ("GET", ["download", "storage", "v1", "b", b, "o", o]) => {
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

/// Whether a request is for the Storage API (so the server hands it to [`handle`]). A path that
/// could be the XML API's `/{bucket}/{object}` is one only when that bucket exists: any other
/// unknown path stays a 501 of the emulator, not a 404 of a bucket.
pub fn is_storage(app: &App, method: &Method, path: &str, query: Option<&str>) -> bool {
    match route(method, path, &query_pairs(query)) {
        Some(Route::XmlGet(bucket, _)) => lock(&app.state).storage.buckets.contains_key(&bucket),
        Some(_) => true,
        None => false,
    }
}

/// The API method name of a Storage request (`storage.objects.get`), for stats and faults.
pub fn method_name(req: &StorageRequest<'_>) -> Option<&'static str> {
    route(req.method, req.path, &query_pairs(req.query)).map(|r| r.method_name())
}

/// What a Storage request acts on, for IAM enforcement ([`crate::access::check_storage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// A project: `buckets.insert` and `buckets.list` name it in `project` (`None`: missing).
    Project(Option<String>),
    /// A bucket (or an object in it).
    Bucket(String),
}

/// The scope of a Storage request, or `None` when it is not one.
pub fn scope(req: &StorageRequest<'_>) -> Option<Scope> {
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

/// The request's preconditions.
#[derive(Debug, Clone, Default, PartialEq)]
struct Conditions {
    generation_match: Option<i64>,
    generation_not_match: Option<i64>,
    metageneration_match: Option<i64>,
    metageneration_not_match: Option<i64>,
    /// `generation=G`: that generation, not the live one.
    generation: Option<i64>,
}

impl Conditions {
    fn parse(query: &[(String, String)], headers: &HeaderMap) -> Result<Conditions, ApiError> {
        let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let num = |k: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
            match v {
                None => Ok(None),
                Some(v) => v
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| ApiError::invalid_argument(format!("Invalid argument for {k}: {v:?} is not a number"))),
            }
        };
        Ok(Conditions {
            generation_match: num("ifGenerationMatch", q("ifGenerationMatch").or_else(|| h("x-goog-if-generation-match")))?,
            generation_not_match: num("ifGenerationNotMatch", q("ifGenerationNotMatch"))?,
            metageneration_match: num(
                "ifMetagenerationMatch",
                q("ifMetagenerationMatch").or_else(|| h("x-goog-if-metageneration-match")),
            )?,
            metageneration_not_match: num("ifMetagenerationNotMatch", q("ifMetagenerationNotMatch"))?,
            generation: num("generation", q("generation"))?,
        })
    }

    /// Checks a write (or delete) against the live object: 412 on a mismatch.
    fn check_write(&self, live: Option<&Object>) -> Result<(), ApiError> {
        let live_gen = live.map(|o| o.generation).unwrap_or(0);
        let ok = self.generation_match.is_none_or(|g| g == live_gen)
            && self.generation_not_match.is_none_or(|g| g != live_gen)
            && self.metageneration_match.is_none_or(|m| live.is_some_and(|o| o.metageneration == m))
            && self.metageneration_not_match.is_none_or(|m| live.is_none_or(|o| o.metageneration != m));
        if ok { Ok(()) } else { Err(precondition_failed()) }
    }

    /// Checks a read: 412 for the `Match` conditions, `Ok(false)` (304) for the `NotMatch` ones.
    fn check_read(&self, o: &Object) -> Result<bool, ApiError> {
        if self.generation_match.is_some_and(|g| g != o.generation)
            || self.metageneration_match.is_some_and(|m| m != o.metageneration)
        {
            return Err(precondition_failed());
        }
        Ok(!(self.generation_not_match == Some(o.generation) || self.metageneration_not_match == Some(o.metageneration)))
    }
}

fn precondition_failed() -> ApiError {
    ApiError::precondition_failed("At least one of the pre-conditions you specified did not hold.")
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

fn bucket_json(b: &Bucket, base: &str) -> Value {
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

fn object_json(bucket: &str, name: &str, o: &Object, base: &str) -> Value {
    let mut v = json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/{}", o.generation),
        "selfLink": format!("{base}storage/v1/b/{}/o/{}", enc(bucket), enc(name)),
        "mediaLink": format!("{base}download/storage/v1/b/{}/o/{}?generation={}&alt=media", enc(bucket), enc(name), o.generation),
        "name": name,
        "bucket": bucket,
        "generation": o.generation.to_string(),
        "metageneration": o.metageneration.to_string(),
        "contentType": o.content_type,
        "storageClass": "STANDARD",
        "size": o.size.to_string(),
        "md5Hash": o.md5,
        "crc32c": o.crc32c,
        "etag": etag(o),
        "timeCreated": rfc3339(o.created_ms),
        "updated": rfc3339(o.updated_ms),
        "timeStorageClassUpdated": rfc3339(o.created_ms),
    });
    if !o.metadata.is_empty() {
        v["metadata"] = json!(o.metadata);
    }
    v
}

/// An etag that changes with the generation and the metageneration.
fn etag(o: &Object) -> String {
    crate::util::b64(format!("{}/{}", o.generation, o.metageneration).as_bytes())
}

/// Serves one Storage request; `None` when it is not one.
pub async fn handle(app: &Arc<App>, req: &StorageRequest<'_>) -> Option<(&'static str, Response)> {
    let query = query_pairs(req.query);
    let r = route(req.method, req.path, &query)?;
    let name = r.method_name();
    let resp = match serve(app, req, &query, r).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    Some((name, resp))
}

async fn serve(app: &Arc<App>, req: &StorageRequest<'_>, query: &[(String, String)], r: Route) -> Result<Response, ApiError> {
    let base = base(app, req.headers);
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match r {
        Route::BucketsList => {
            let project = q("project").ok_or_else(|| ApiError::invalid_argument("Required parameter: project"))?;
            let st = lock(&app.state);
            let items: Vec<Value> =
                st.storage.buckets.values().filter(|b| b.project == project).map(|b| bucket_json(b, &base)).collect();
            let mut v = json!({"kind": "storage#buckets"});
            if !items.is_empty() {
                v["items"] = json!(items);
            }
            Ok(json_response(StatusCode::OK, &v))
        }
        Route::BucketsInsert => {
            let project = q("project").ok_or_else(|| ApiError::invalid_argument("Required parameter: project"))?;
            let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            check_bucket_name(&name)?;
            let mut st = lock(&app.state);
            if let Some(b) = st.storage.buckets.get(&name) {
                return Err(if b.project == project {
                    ApiError::new_conflict("Your previous request to create the named bucket succeeded and you already own it.", "conflict")
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
            let v = bucket_json(&b, &base);
            st.storage.buckets.insert(name, b);
            app.persist(&st);
            Ok(json_response(StatusCode::OK, &v))
        }
        Route::BucketsGet(b) => {
            let st = lock(&app.state);
            let bucket = st.storage.buckets.get(&b).ok_or_else(|| no_bucket(&b))?;
            Ok(json_response(StatusCode::OK, &bucket_json(bucket, &base)))
        }
        Route::BucketsDelete(b) => {
            let mut st = lock(&app.state);
            let bucket = st.storage.buckets.get(&b).ok_or_else(|| no_bucket(&b))?;
            if !bucket.objects.is_empty() {
                return Err(ApiError::new_conflict("The bucket you tried to delete is not empty.", "conflict"));
            }
            st.storage.buckets.remove(&b);
            app.persist(&st);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Route::ObjectsList(b) => list(app, &b, query, &base),
        Route::ObjectsGet { bucket, object, media } => {
            let conds = Conditions::parse(query, req.headers)?;
            if media {
                download(app, &bucket, &object, &conds, req.headers, req.method == Method::HEAD)
            } else {
                let st = lock(&app.state);
                let o = live(&st.storage, &bucket, &object, &conds)?;
                if !conds.check_read(o)? {
                    return Ok(StatusCode::NOT_MODIFIED.into_response());
                }
                Ok(json_response(StatusCode::OK, &object_json(&bucket, &object, o, &base)))
            }
        }
        Route::XmlGet(bucket, object) => {
            let conds = Conditions::parse(query, req.headers)?;
            download(app, &bucket, &object, &conds, req.headers, req.method == Method::HEAD)
        }
        Route::ObjectsPatch(bucket, object) => {
            let conds = Conditions::parse(query, req.headers)?;
            let patch: Value = serde_json::from_slice(req.body)
                .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))?;
            let mut st = lock(&app.state);
            let o = st
                .storage
                .buckets
                .get_mut(&bucket)
                .ok_or_else(|| no_bucket(&bucket))?
                .objects
                .get_mut(&object)
                .ok_or_else(|| no_object(&bucket, &object))?;
            if conds.generation.is_some_and(|g| g != o.generation) {
                return Err(no_object(&bucket, &object));
            }
            conds.check_write(Some(o))?;
            if let Some(ct) = patch.get("contentType").and_then(Value::as_str) {
                o.content_type = ct.to_string();
            }
            if let Some(m) = patch.get("metadata").and_then(Value::as_object) {
                for (k, v) in m {
                    match v.as_str() {
                        Some(s) => o.metadata.insert(k.clone(), s.to_string()),
                        None => o.metadata.remove(k),
                    };
                }
            }
            o.metageneration += 1;
            o.updated_ms = now_ms();
            let v = object_json(&bucket, &object, o, &base);
            app.persist(&st);
            Ok(json_response(StatusCode::OK, &v))
        }
        Route::ObjectsDelete(bucket, object) => {
            let conds = Conditions::parse(query, req.headers)?;
            let mut st = lock(&app.state);
            let b = st.storage.buckets.get_mut(&bucket).ok_or_else(|| no_bucket(&bucket))?;
            let o = b.objects.get(&object).ok_or_else(|| no_object(&bucket, &object))?;
            if conds.generation.is_some_and(|g| g != o.generation) {
                return Err(no_object(&bucket, &object));
            }
            conds.check_write(Some(o))?;
            let live_gen = o.generation;
            b.objects.remove(&object);
            app.storage_blobs.remove(&bucket, live_gen);
            app.persist(&st);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Route::Upload(bucket) => upload(app, req, query, &bucket, &base),
        Route::UploadChunk(bucket) => upload_chunk(app, req, query, &bucket, &base),
    }
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

fn live<'a>(st: &'a StorageState, bucket: &str, object: &str, conds: &Conditions) -> Result<&'a Object, ApiError> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    let o = b.objects.get(object).ok_or_else(|| no_object(bucket, object))?;
    if conds.generation.is_some_and(|g| g != o.generation) {
        return Err(no_object(bucket, object));
    }
    Ok(o)
}

fn list(app: &App, bucket: &str, query: &[(String, String)], base: &str) -> Result<Response, ApiError> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let prefix = q("prefix").unwrap_or("");
    let delimiter = q("delimiter").filter(|d| !d.is_empty());
    let max = q("maxResults").and_then(|m| m.parse::<usize>().ok()).unwrap_or(1000).clamp(1, 1000);
    let after = q("pageToken").map(|t| {
        String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, t).unwrap_or_default())
            .unwrap_or_default()
    });
    let start = q("startOffset").unwrap_or("");
    let end = q("endOffset");
    let st = lock(&app.state);
    let b = st.storage.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    let mut items = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut next = None;
    let mut last_key = String::new();
    for (name, o) in b.objects.range(prefix.to_string()..) {
        if !name.starts_with(prefix) {
            break;
        }
        if name.as_str() < start || end.is_some_and(|e| name.as_str() >= e) {
            continue;
        }
        // A key is an object, or the common prefix it rolls up into.
        let key = match delimiter.and_then(|d| name[prefix.len()..].find(d).map(|i| (i, d))) {
            Some((i, d)) => format!("{prefix}{}{d}", &name[prefix.len()..prefix.len() + i]),
            None => name.clone(),
        };
        if after.as_deref().is_some_and(|a| key.as_str() <= a) || key == last_key {
            continue;
        }
        if items.len() + prefixes.len() == max {
            next = Some(last_key.clone());
            break;
        }
        if key != *name {
            prefixes.push(key.clone());
        } else {
            items.push(object_json(bucket, name, o, base));
        }
        last_key = key;
    }
    let mut v = json!({"kind": "storage#objects"});
    if !items.is_empty() {
        v["items"] = json!(items);
    }
    if !prefixes.is_empty() {
        v["prefixes"] = json!(prefixes);
    }
    if let Some(n) = next {
        v["nextPageToken"] = json!(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, n));
    }
    Ok(json_response(StatusCode::OK, &v))
}

fn download(
    app: &App,
    bucket: &str,
    object: &str,
    conds: &Conditions,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let o = {
        let st = lock(&app.state);
        live(&st.storage, bucket, object, conds)?.clone()
    };
    if !conds.check_read(&o)? {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let data = app
        .storage_blobs
        .get(bucket, o.generation)
        .ok_or_else(|| ApiError::internal(format!("the data of {bucket}/{object} is missing")))?;
    let total = data.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|r| parse_range(r, total));
    let (status, slice) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, data[a as usize..=b as usize].to_vec()),
        None => (StatusCode::OK, data.to_vec()),
    };
    let mut resp = if head { Response::new(Body::empty()) } else { Response::new(Body::from(slice.clone())) };
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(h, "content-type", o.content_type.clone());
    set(h, "content-length", slice.len().to_string());
    set(h, "x-goog-generation", o.generation.to_string());
    set(h, "x-goog-metageneration", o.metageneration.to_string());
    set(h, "x-goog-stored-content-length", total.to_string());
    set(h, "x-goog-stored-content-encoding", "identity".into());
    set(h, "x-goog-hash", format!("crc32c={},md5={}", o.crc32c, o.md5));
    set(h, "etag", format!("\"{}\"", etag(&o)));
    set(h, "accept-ranges", "bytes".into());
    if let Some((a, b)) = range {
        set(h, "content-range", format!("bytes {a}-{b}/{total}"));
    }
    Ok(resp)
}

/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range within `total`.
fn parse_range(r: &str, total: u64) -> Option<(u64, u64)> {
    let spec = r.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => (a.parse().ok()?, total - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total - 1)),
    };
    (a <= b && a < total).then_some((a, b))
}

/// Stores `data` as the new generation of `bucket/name` if the preconditions hold.
#[allow(clippy::too_many_arguments)]
fn store(
    app: &App,
    bucket: &str,
    name: &str,
    content_type: &str,
    metadata: BTreeMap<String, String>,
    conds: &Conditions,
    data: Vec<u8>,
    base: &str,
) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid_argument("Required parameter: name"));
    }
    let mut st = lock(&app.state);
    let b = st.storage.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    let previous = b.objects.get(name).cloned();
    conds.check_write(previous.as_ref())?;
    let now = now_ms();
    let generation = (now as i64 * 1000).max(st.storage.last_generation + 1);
    st.storage.last_generation = generation;
    let o = Object {
        generation,
        metageneration: 1,
        size: data.len() as u64,
        content_type: if content_type.is_empty() { "application/octet-stream".into() } else { content_type.to_string() },
        md5: hash::md5_b64(&data),
        crc32c: hash::crc32c_b64(&data),
        created_ms: now,
        updated_ms: now,
        metadata,
    };
    // Data first, then the metadata that points at it: a crash in between leaves an unreferenced
    // file, never an object without data.
    app.storage_blobs.put(bucket, generation, data)?;
    let v = object_json(bucket, name, &o, base);
    st.storage.buckets.get_mut(bucket).expect("checked above").objects.insert(name.to_string(), o);
    app.persist(&st);
    drop(st);
    if let Some(p) = previous {
        app.storage_blobs.remove(bucket, p.generation);
    }
    Ok(json_response(StatusCode::OK, &v))
}

fn metadata_of(v: &Value) -> BTreeMap<String, String> {
    v.get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

fn upload(
    app: &App,
    req: &StorageRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    base: &str,
) -> Result<Response, ApiError> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let conds = Conditions::parse(query, req.headers)?;
    let content_type =
        req.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    match q("uploadType").as_deref().unwrap_or("media") {
        "media" => {
            let name = q("name").unwrap_or_default();
            store(app, bucket, &name, &content_type, BTreeMap::new(), &conds, req.body.to_vec(), base)
        }
        "multipart" => {
            let (meta, data, data_type) = multipart(&content_type, req.body)?;
            let name = q("name").or_else(|| meta.get("name").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
            let ct = meta.get("contentType").and_then(Value::as_str).map(str::to_string).unwrap_or(data_type);
            store(app, bucket, &name, &ct, metadata_of(&meta), &conds, data, base)
        }
        "resumable" => {
            let meta: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
            let name = q("name").or_else(|| meta.get("name").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
            if name.is_empty() {
                return Err(ApiError::invalid_argument("Required parameter: name"));
            }
            if !lock(&app.state).storage.buckets.contains_key(bucket) {
                return Err(no_bucket(bucket));
            }
            let ct = meta
                .get("contentType")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| req.headers.get("x-upload-content-type").and_then(|v| v.to_str().ok()).map(str::to_string))
                .unwrap_or_default();
            let id = random_hex(32);
            let session =
                Session { bucket: bucket.to_string(), name, content_type: ct, metadata: metadata_of(&meta), conditions: conds, data: Vec::new() };
            lock(&app.storage_sessions.0).insert(id.clone(), session);
            let location = format!("{base}upload/storage/v1/b/{}/o?uploadType=resumable&upload_id={id}", enc(bucket));
            let mut resp = StatusCode::OK.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        other => Err(ApiError::invalid_argument(format!("Invalid upload type: {other}"))),
    }
}

/// One `PUT` of a resumable session: `Content-Range: bytes a-b/total` (or `*/total` to finish or
/// ask how far it got). 308 with `Range: bytes=0-n` while incomplete; the object when complete.
fn upload_chunk(
    app: &App,
    req: &StorageRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    base: &str,
) -> Result<Response, ApiError> {
    let id = query.iter().find(|(k, _)| k == "upload_id").map(|(_, v)| v.clone()).unwrap_or_default();
    let range = req.headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut sessions = lock(&app.storage_sessions.0);
    let s = sessions
        .get_mut(&id)
        .filter(|s| s.bucket == bucket)
        .ok_or_else(|| ApiError::not_found("No such upload session (it may have completed or expired)"))?;
    // `bytes a-b/total`, `bytes */total`, `bytes a-b/*`; none: the whole object in one request.
    let (start, total) = match range.strip_prefix("bytes ") {
        Some(spec) => {
            let (span, total) = spec.split_once('/').unwrap_or((spec, "*"));
            let start = span.split_once('-').and_then(|(a, _)| a.parse::<usize>().ok());
            (start, total.parse::<usize>().ok())
        }
        None => (Some(0), Some(req.body.len())),
    };
    if let Some(start) = start {
        if start > s.data.len() {
            return Err(ApiError::invalid_argument(format!(
                "Invalid request. The chunk starts at {start}, but {} bytes were received so far.",
                s.data.len()
            )));
        }
        // A chunk sent again after a lost answer overlaps what was received: keep one copy.
        s.data.truncate(start);
        s.data.extend_from_slice(req.body);
    }
    if total.is_some_and(|t| t == s.data.len()) {
        let s = sessions.remove(&id).expect("present");
        drop(sessions);
        return store(app, bucket, &s.name, &s.content_type, s.metadata, &s.conditions, s.data, base);
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if !s.data.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes=0-{}", s.data.len() - 1)) {
            resp.headers_mut().insert(header::RANGE, v);
        }
    }
    Ok(resp)
}

/// The metadata (JSON) and the data of a `multipart/related` body, and the data part's type.
fn multipart(content_type: &str, body: &[u8]) -> Result<(Value, Vec<u8>, String), ApiError> {
    let bad = |why: &str| ApiError::invalid_argument(format!("Invalid multipart request: {why}"));
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .ok_or_else(|| bad("no boundary in Content-Type"))?;
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    // Split on the delimiter lines; each part is headers, a blank line, then content.
    while let Some(i) = find(rest, delim.as_bytes()) {
        rest = &rest[i + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let end = find(rest, delim.as_bytes()).ok_or_else(|| bad("no closing boundary"))?;
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    if parts.len() != 2 {
        return Err(bad(&format!("{} parts, expected 2 (metadata and media)", parts.len())));
    }
    let split = |p: &[u8]| -> Result<(String, Vec<u8>), ApiError> {
        let p = p.strip_prefix(b"\r\n").or_else(|| p.strip_prefix(b"\n")).unwrap_or(p);
        let (h, sep) = find(p, b"\r\n\r\n").map(|i| (i, 4)).or_else(|| find(p, b"\n\n").map(|i| (i, 2))).ok_or_else(|| bad("a part has no headers"))?;
        let headers = String::from_utf8_lossy(&p[..h]).to_string();
        let mut content = p[h + sep..].to_vec();
        if content.ends_with(b"\r\n") {
            content.truncate(content.len() - 2);
        } else if content.ends_with(b"\n") {
            content.truncate(content.len() - 1);
        }
        let ct = headers
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_default();
        Ok((ct, content))
    };
    let (_, meta) = split(parts[0])?;
    let (data_type, data) = split(parts[1])?;
    let meta: Value = if meta.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&meta).map_err(|e| bad(&format!("the metadata part is not JSON: {e}")))?
    };
    Ok((meta, data, data_type))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
        assert_eq!(r(Method::PUT, "/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=x"), Some(Route::UploadChunk("bk".into())));
        assert_eq!(r(Method::POST, "/resumable/upload/storage/v1/b/bk/o?uploadType=resumable"), Some(Route::Upload("bk".into())));
        assert_eq!(r(Method::POST, "/upload/x/v1/b/bk/o"), None);
        assert_eq!(r(Method::GET, "/bk/a/b.json"), Some(Route::XmlGet("bk".into(), "a/b.json".into())));
        assert_eq!(r(Method::GET, "/v1/projects/p"), None, "other APIs keep their paths");
        assert_eq!(r(Method::GET, "/sql/v1beta4/projects/p/instances"), None);
    }

    #[test]
    fn ranges_and_multipart() {
        assert_eq!(parse_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=12-", 10), None);
        let body = b"--XX\r\nContent-Type: application/json\r\n\r\n{\"name\":\"o\",\"metadata\":{\"k\":\"v\"}}\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX--\r\n";
        let (meta, data, ct) = multipart("multipart/related; boundary=XX", body).unwrap();
        // gcloud (Python's email package) quotes the boundary with single quotes.
        let quoted = String::from_utf8_lossy(body).replace("XX", "===1==");
        assert_eq!(multipart("multipart/related; boundary='===1=='", quoted.as_bytes()).unwrap().1, b"hello");
        assert_eq!(meta["name"], "o");
        assert_eq!(data, b"hello");
        assert_eq!(ct, "text/plain");
        assert_eq!(metadata_of(&meta).get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn preconditions() {
        let o = Object {
            generation: 5,
            metageneration: 2,
            size: 0,
            content_type: String::new(),
            md5: String::new(),
            crc32c: String::new(),
            created_ms: 0,
            updated_ms: 0,
            metadata: BTreeMap::new(),
        };
        let c = |g: Option<i64>, m: Option<i64>| Conditions { generation_match: g, metageneration_match: m, ..Default::default() };
        assert!(c(Some(0), None).check_write(None).is_ok(), "ifGenerationMatch=0 creates");
        assert_eq!(c(Some(0), None).check_write(Some(&o)).unwrap_err().http, 412);
        assert!(c(Some(5), Some(2)).check_write(Some(&o)).is_ok());
        assert_eq!(c(Some(4), None).check_write(Some(&o)).unwrap_err().http, 412);
        assert_eq!(c(Some(5), None).check_write(None).unwrap_err().http, 412, "a match on a missing object fails");
        let not = Conditions { generation_not_match: Some(5), ..Default::default() };
        assert!(!not.check_read(&o).unwrap(), "304");
    }
}
