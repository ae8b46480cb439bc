//! Google's published contract (shared floor, above HTTP and errors and the config): the discovery
//! documents of the APIs the emulator serves (`scripts/discovery-docs` caches them from one pinned
//! `google-api-python-client` wheel), loaded at start. The router hands every request it
//! dispatches to [`Contract::check_request`], which finds the discovery method by HTTP method and
//! path template and refuses, as Google does (400 INVALID_ARGUMENT with a `BadRequest` detail), an
//! unknown query parameter, an unknown body field, a JSON value of the wrong type or outside an
//! enum; each refusal is recorded as a defect of the client. [`Contract::check_response`] holds
//! the emulator's own answers to the method's response schema, recorded as response defects.
//! Both lists are served by the admin API (`GET /_emulator/contract`).
//!
//! Here: the documents, finding a method, query parameters and the record; `schema` checks a
//! JSON value against a schema.

mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use axum::http::Method;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, EmulatorError};
pub use schema::Violation;

/// The pinned version of PyPI's `google-api-python-client` whose documents `scripts/discovery-docs`
/// caches (the script pins the same version and the wheel's sha256).
pub const CLIENT_VERSION: &str = "2.202.0";

/// The documents the emulator loads (`<name>.json` in the discovery directory), with the protobuf
/// package Google names in its messages and whether the request body is the request message's
/// `body` field (Cloud SQL's `body: "body"` HTTP rule) or the whole message (`body: "*"`).
const DOCUMENTS: &[(&str, &str, &str)] = &[
    ("sqladmin.v1beta4", "google.cloud.sql.v1beta4", "body"),
    ("sqladmin.v1", "google.cloud.sql.v1", "body"),
    ("iam.v1", "google.iam.admin.v1", ""),
    ("cloudresourcemanager.v1", "google.cloudresourcemanager.v1", ""),
    ("cloudresourcemanager.v3", "google.cloud.resourcemanager.v3", ""),
    ("container.v1", "google.container.v1", ""),
    ("serviceusage.v1", "google.api.serviceusage.v1", ""),
    ("storage.v1", "google.storage.v1", ""),
];

/// System parameters every Google API accepts with a `$` prefix (https://cloud.google.com/apis/docs/system-parameters),
/// beside the documents' own standard `parameters` (`alt`, `fields`, `key`, ...).
const DOLLAR_SYSTEM_PARAMETERS: &[&str] = &[
    "$alt",
    "$callback",
    "$ct",
    "$fields",
    "$key",
    "$outputDefaults",
    "$prettyPrint",
    "$quotaUser",
    "$requestReason",
    "$unique",
    "$userProject",
    "$.xgafv",
];

/// The discovery directory: `configured` (`Config::discovery_dir`), else `SKYFORM_DISCOVERY_DIR`,
/// else `$HOME/.cache/skyform/discovery/<CLIENT_VERSION>` (where `scripts/discovery-docs` puts them).
pub fn resolve_dir(configured: Option<&Path>) -> PathBuf {
    if let Some(d) = configured {
        return d.to_path_buf();
    }
    if let Some(d) = std::env::var_os("SKYFORM_DISCOVERY_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/skyform/discovery").join(CLIENT_VERSION)
}

/// For this workspace's tests and tools: makes sure the documents are cached where
/// [`resolve_dir`]`(None)` looks, running `scripts/discovery-docs` (idempotent, locked) once per
/// process when they are missing. Panics when the script fails: no test can run without them.
pub fn ensure_documents() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = resolve_dir(None);
        if missing(&dir).is_none() {
            return dir;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/discovery-docs");
        let out = std::process::Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        let printed = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(missing(&printed).is_none(), "{} did not produce the documents", script.display());
        printed
    })
    .clone()
}

/// The first document missing from `dir`, if any.
fn missing(dir: &Path) -> Option<PathBuf> {
    DOCUMENTS.iter().map(|(n, _, _)| dir.join(format!("{n}.json"))).find(|p| !p.is_file())
}

/// One loaded discovery document.
#[derive(Debug)]
struct Document {
    name: &'static str,
    package: &'static str,
    body_field: &'static str,
    /// The standard query parameters (the document's top-level `parameters`).
    standard: BTreeSet<String>,
    methods: Vec<DiscoveryMethod>,
    schemas: HashMap<String, Value>,
}

/// One method of a document.
#[derive(Debug)]
struct DiscoveryMethod {
    id: String,
    http: String,
    /// The path templates, split at `/` (the `flatPath`, or the service path and `path`; for
    /// media uploads also the upload paths).
    templates: Vec<Vec<String>>,
    /// The query parameters by name.
    query: BTreeMap<String, Value>,
    /// The names of the path parameters.
    path_params: Vec<String>,
    request: Option<String>,
    response: Option<String>,
}

/// A method found for a request, to check its response with.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    doc: usize,
    method: usize,
}

/// A request refused for the contract, or a response outside it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Defect {
    /// The discovery method id, e.g. `sql.instances.insert`.
    pub method: String,
    /// The document, e.g. `sqladmin.v1beta4`.
    pub api: String,
    /// `POST /sql/v1beta4/projects/p/instances`.
    pub request: String,
    /// What is outside the contract, in Google's words.
    pub violations: Vec<String>,
}

/// What the contract recorded since start (or the last clear).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Requests refused: the clients' defects.
    pub defects: Vec<Defect>,
    /// Answers of the emulator outside the response schema: the emulator's defects.
    pub response_defects: Vec<Defect>,
    /// Emulator methods served on paths no document knows (`sql.instances.get GET /v1/...`).
    pub unmatched: BTreeSet<String>,
}

/// The loaded contract and its record.
#[derive(Debug)]
pub struct Contract {
    docs: Vec<Document>,
    record: Mutex<Record>,
}

impl Contract {
    /// Loads the documents from `dir`; a clear error naming `scripts/discovery-docs` when missing.
    pub fn load(dir: &Path) -> Result<Contract, EmulatorError> {
        if let Some(p) = missing(dir) {
            return Err(EmulatorError::Discovery(format!(
                "{} is missing: run scripts/discovery-docs (it caches Google's discovery documents of \
                 google-api-python-client {CLIENT_VERSION}), or point --discovery-dir / SKYFORM_DISCOVERY_DIR \
                 at its output",
                p.display()
            )));
        }
        let mut docs = Vec::new();
        for (name, package, body_field) in DOCUMENTS {
            let path = dir.join(format!("{name}.json"));
            let text = std::fs::read_to_string(&path)
                .map_err(|e| EmulatorError::Discovery(format!("cannot read {}: {e}", path.display())))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| EmulatorError::Discovery(format!("{} is not JSON: {e}", path.display())))?;
            docs.push(Document::parse(name, package, body_field, &v));
        }
        Ok(Contract { docs, record: Mutex::new(Record::default()) })
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was recorded.
    pub fn recorded(&self) -> Record {
        self.record().clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        *self.record() = Record::default();
    }

    /// Checks a request the router dispatches to emulator method `emulator_method` (whose prefix
    /// names the API: `sql.`, `iam.`, `cloudresourcemanager.v1.`, ...): its query parameters and,
    /// when given, its JSON body. `Ok(None)`: no document knows the path (served as before, noted
    /// in the record). A refusal is recorded and answered in Google's shape.
    pub fn check_request(
        &self,
        emulator_method: &str,
        http: &Method,
        raw_path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Option<Found>, ApiError> {
        let Some(found) = self.find(emulator_method, http, raw_path) else {
            let mut r = self.record();
            let key = format!("{emulator_method} {http} {}", template_of(raw_path));
            if r.unmatched.insert(key.clone()) {
                eprintln!("contract: no discovery method for {key}; not validated");
            }
            return Ok(None);
        };
        let doc = &self.docs[found.doc];
        let m = &doc.methods[found.method];
        let mut violations = doc.check_query(m, query, raw_path.contains("/upload/"));
        if let (Some(body), Some(request)) = (body, &m.request) {
            // With `body: "*"` the body is the whole request message, whose path-bound fields
            // (`resource`, `name`, `parent`) the discovery schema leaves out; clients generated
            // from the protos (Google's Rust SDK) send them, and Google accepts them.
            let path_fields: &[String] = if doc.body_field.is_empty() { &m.path_params } else { &[] };
            violations.extend(schema::Checker::request(doc).check_ref(body, request, doc.body_field, path_fields));
        } else if let Some(body) = body.filter(|b| !b.is_null() && b.as_object().is_none_or(|o| !o.is_empty())) {
            // A body on a method that takes none: every field is unknown.
            if let Some(o) = body.as_object() {
                for k in o.keys() {
                    violations.push(Violation::unknown(k, ""));
                }
            }
        }
        if violations.is_empty() {
            return Ok(Some(found));
        }
        self.record().defects.push(Defect {
            method: m.id.clone(),
            api: doc.name.to_string(),
            request: format!("{http} {raw_path}"),
            violations: violations.iter().map(|v| v.description.clone()).collect(),
        });
        eprintln!("contract: refused {} {http} {raw_path}: {}", m.id, violations[0].description);
        Err(refusal(&violations))
    }

    /// Checks an answer of the emulator to a request [`Contract::check_request`] found: recorded
    /// as a response defect when outside the method's response schema.
    pub fn check_response(&self, found: Found, http: &Method, raw_path: &str, body: &Value) {
        let doc = &self.docs[found.doc];
        let m = &doc.methods[found.method];
        let Some(response) = &m.response else { return };
        let violations = schema::Checker::response(doc).check_ref(body, response, "", &[]);
        if violations.is_empty() {
            return;
        }
        eprintln!("contract: the emulator's answer to {} is outside the contract: {}", m.id, violations[0].description);
        self.record().response_defects.push(Defect {
            method: m.id.clone(),
            api: doc.name.to_string(),
            request: format!("{http} {raw_path}"),
            violations: violations.into_iter().map(|v| v.description).collect(),
        });
    }

    /// The document of an emulator method and the discovery method of the request's path.
    fn find(&self, emulator_method: &str, http: &Method, raw_path: &str) -> Option<Found> {
        let name = document_of(emulator_method, raw_path)?;
        let doc = self.docs.iter().position(|d| d.name == name)?;
        let path = raw_path.strip_prefix("/download/").map(|p| format!("/{p}"));
        let segments = split(path.as_deref().unwrap_or(raw_path));
        let d = &self.docs[doc];
        // The match with the most literal segments wins (`b/{bucket}/o` over `b/{bucket}/{x}`).
        d.methods
            .iter()
            .enumerate()
            .filter(|(_, m)| m.http == http.as_str())
            .filter_map(|(i, m)| m.templates.iter().filter_map(|t| matches(t, &segments)).max().map(|s| (s, i)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, method)| Found { doc, method })
    }
}

/// The refusal of a request with these violations, in Google's shape (contract: 400
/// INVALID_ARGUMENT, the messages joined by newlines, one `fieldViolation` each).
fn refusal(violations: &[Violation]) -> ApiError {
    let message = violations.iter().map(|v| v.description.as_str()).collect::<Vec<_>>().join("\n");
    let fields: Vec<Value> = violations
        .iter()
        .map(|v| {
            if v.field.is_empty() {
                json!({"description": v.description})
            } else {
                json!({"field": v.field, "description": v.description})
            }
        })
        .collect();
    ApiError::invalid_argument(message).with_reason("invalid").with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": fields,
    }))
}

/// The document whose method an emulator method name is.
fn document_of(emulator_method: &str, raw_path: &str) -> Option<&'static str> {
    let api = emulator_method.split('.').next()?;
    Some(match api {
        "sql" if raw_path.starts_with("/sql/v1beta4/") => "sqladmin.v1beta4",
        "sql" => "sqladmin.v1",
        "iam" => "iam.v1",
        "cloudresourcemanager" if emulator_method.starts_with("cloudresourcemanager.v3.") => "cloudresourcemanager.v3",
        "cloudresourcemanager" => "cloudresourcemanager.v1",
        "container" => "container.v1",
        "serviceusage" => "serviceusage.v1",
        "storage" => "storage.v1",
        _ => return None,
    })
}

/// The percent-decoded segments of a path.
fn split(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect()
}

/// A path with its variable-looking segments hidden, for the record of unmatched paths.
fn template_of(raw_path: &str) -> String {
    let segs: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        // Collections at even positions after the version (`projects/{p}/instances/{i}`).
        let keep = i == 0 || (i % 2 == 1 && !s.contains(['@', '.'])) || (segs[0] == "sql" && i % 2 == 0);
        out.push(if keep { (*s).to_string() } else { "{}".to_string() });
    }
    format!("/{}", out.join("/"))
}

/// How well `template` matches the request's segments: the number of literal segments, or `None`.
/// A template segment is a literal, `{var}`, or either with a `:verb` suffix.
fn matches(template: &[String], segments: &[String]) -> Option<usize> {
    if template.len() != segments.len() {
        return None;
    }
    let mut literals = 0;
    for (t, s) in template.iter().zip(segments) {
        let (t_base, s_base) = match t.rsplit_once(':').filter(|(_, v)| !v.contains('}')) {
            Some((base, verb)) => (base, s.strip_suffix(verb)?.strip_suffix(':')?),
            None => (t.as_str(), s.as_str()),
        };
        if t_base.starts_with('{') && t_base.ends_with('}') {
            if s_base.is_empty() {
                return None;
            }
        } else if t_base == s_base {
            literals += 1;
        } else {
            return None;
        }
    }
    Some(literals)
}

impl Document {
    fn parse(name: &'static str, package: &'static str, body_field: &'static str, v: &Value) -> Document {
        let service_path = v["servicePath"].as_str().unwrap_or_default().to_string();
        let mut methods = Vec::new();
        collect(v, &service_path, &mut methods);
        let standard = v["parameters"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let schemas = v["schemas"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Document { name, package, body_field, standard, methods, schemas }
    }

    /// The violations of a request's query parameters: each must be one of the method's query
    /// parameters, a standard parameter of the document, or a `$` system parameter; typed ones
    /// must parse.
    fn check_query(&self, m: &DiscoveryMethod, query: &[(String, String)], upload: bool) -> Vec<Violation> {
        let mut out = Vec::new();
        for (k, v) in query {
            if self.standard.contains(k) || DOLLAR_SYSTEM_PARAMETERS.contains(&k.as_str()) {
                continue;
            }
            // The upload protocol's own session id (resumable uploads).
            if upload && k == "upload_id" {
                continue;
            }
            match m.query.get(k) {
                Some(p) => {
                    if let Some(bad) = schema::query_value(p, k, v) {
                        out.push(bad);
                    }
                }
                None => out.push(Violation {
                    field: String::new(),
                    description: format!(
                        "Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter. Field '{k}' could not be found in request message."
                    ),
                }),
            }
        }
        out
    }
}

/// The methods of a document's resources, recursively.
fn collect(resource: &Value, service_path: &str, out: &mut Vec<DiscoveryMethod>) {
    if let Some(methods) = resource["methods"].as_object() {
        for m in methods.values() {
            let path = match m["flatPath"].as_str() {
                Some(p) => format!("{service_path}{p}"),
                None => format!("{service_path}{}", m["path"].as_str().unwrap_or_default()),
            };
            let mut templates = vec![split_template(&path)];
            if let Some(protocols) = m["mediaUpload"]["protocols"].as_object() {
                for p in protocols.values() {
                    if let Some(path) = p["path"].as_str() {
                        templates.push(split_template(path));
                    }
                }
            }
            let query = m["parameters"]
                .as_object()
                .map(|o| {
                    o.iter().filter(|(_, p)| p["location"] == "query").map(|(k, p)| (k.clone(), p.clone())).collect()
                })
                .unwrap_or_default();
            out.push(DiscoveryMethod {
                id: m["id"].as_str().unwrap_or_default().to_string(),
                http: m["httpMethod"].as_str().unwrap_or_default().to_string(),
                templates,
                query,
                path_params: m["parameters"]
                    .as_object()
                    .map(|o| o.iter().filter(|(_, p)| p["location"] == "path").map(|(k, _)| k.clone()).collect())
                    .unwrap_or_default(),
                request: m["request"]["$ref"].as_str().map(str::to_string),
                response: m["response"]["$ref"].as_str().map(str::to_string),
            });
        }
    }
    if let Some(resources) = resource["resources"].as_object() {
        for r in resources.values() {
            collect(r, service_path, out);
        }
    }
}

fn split_template(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests;
