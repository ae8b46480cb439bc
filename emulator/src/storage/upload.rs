//! Cloud Storage uploads (API floor): `uploadType=media`, `multipart` (`multipart/related`) and
//! `resumable` sessions, whose state is an extension of the `App` ([`Sessions`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::objects::{Conditions, store};
use super::{enc, no_bucket, sessions};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::RawRequest;
use crate::util::random_hex;

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

fn metadata_of(v: &Value) -> BTreeMap<String, String> {
    v.get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// Starts or does an upload: `uploadType=media`, `multipart`, or a `resumable` session.
pub(super) fn upload(
    app: &App,
    req: &RawRequest<'_>,
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
            let name =
                q("name").or_else(|| meta.get("name").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
            let ct = meta.get("contentType").and_then(Value::as_str).map(str::to_string).unwrap_or(data_type);
            store(app, bucket, &name, &ct, metadata_of(&meta), &conds, data, base)
        }
        "resumable" => {
            let meta: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
            let name =
                q("name").or_else(|| meta.get("name").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
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
            let session = Session {
                bucket: bucket.to_string(),
                name,
                content_type: ct,
                metadata: metadata_of(&meta),
                conditions: conds,
                data: Vec::new(),
            };
            lock(&sessions(app).0).insert(id.clone(), session);
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
pub(super) fn upload_chunk(
    app: &App,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    base: &str,
) -> Result<Response, ApiError> {
    let id = query.iter().find(|(k, _)| k == "upload_id").map(|(_, v)| v.clone()).unwrap_or_default();
    let range = req.headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut sessions = lock(&sessions(app).0);
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
        let (h, sep) = find(p, b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| find(p, b"\n\n").map(|i| (i, 2)))
            .ok_or_else(|| bad("a part has no headers"))?;
        let headers = String::from_utf8_lossy(&p[..h]).to_string();
        let mut content = p[h + sep..].to_vec();
        if content.ends_with(b"\r\n") {
            content.truncate(content.len() - 2);
        } else if content.ends_with(b"\n") {
            content.truncate(content.len() - 1);
        }
        let ct = headers
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.trim().to_string())
            })
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

    #[test]
    fn multipart_bodies() {
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
}
