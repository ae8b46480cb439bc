//! Cloud Storage objects (API floor): metadata get, patch and delete, list, downloads (JSON and
//! XML paths, a single `Range`), the preconditions of reads and writes, and storing a new
//! generation (for the uploads).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{blobs, enc, hash, no_bucket, no_object};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::{RawRequest, json_response};
use crate::state::{Object, StorageState};
use crate::util::{now_ms, rfc3339};

/// `objects.get`: the metadata, or the data with `alt=media` (and on `/download/` paths).
pub(super) fn get(
    app: &App,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    object: &str,
    media: bool,
    base: &str,
) -> Result<Response, ApiError> {
    let conds = Conditions::parse(query, req.headers)?;
    if media {
        download(app, bucket, object, &conds, req.headers, req.method == Method::HEAD)
    } else {
        let st = lock(&app.state);
        let o = live(&st.storage, bucket, object, &conds)?;
        if !conds.check_read(o)? {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        Ok(json_response(StatusCode::OK, &object_json(bucket, object, o, base)))
    }
}

/// `objects.get` on the XML API's path `/{bucket}/{object}`: the data.
pub(super) fn xml_get(
    app: &App,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    object: &str,
) -> Result<Response, ApiError> {
    let conds = Conditions::parse(query, req.headers)?;
    download(app, bucket, object, &conds, req.headers, req.method == Method::HEAD)
}

/// `objects.patch`: `contentType` and custom `metadata` (a null value removes a key).
pub(super) fn patch(
    app: &App,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    object: &str,
    base: &str,
) -> Result<Response, ApiError> {
    let conds = Conditions::parse(query, req.headers)?;
    let patch: Value = serde_json::from_slice(req.body)
        .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))?;
    let mut st = lock(&app.state);
    let o = st
        .storage
        .buckets
        .get_mut(bucket)
        .ok_or_else(|| no_bucket(bucket))?
        .objects
        .get_mut(object)
        .ok_or_else(|| no_object(bucket, object))?;
    if conds.generation.is_some_and(|g| g != o.generation) {
        return Err(no_object(bucket, object));
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
    let v = object_json(bucket, object, o, base);
    app.persist(&st);
    Ok(json_response(StatusCode::OK, &v))
}

/// `objects.delete`: the live generation (or `generation=G` if that is the live one).
pub(super) fn delete(
    app: &App,
    req: &RawRequest<'_>,
    query: &[(String, String)],
    bucket: &str,
    object: &str,
) -> Result<Response, ApiError> {
    let conds = Conditions::parse(query, req.headers)?;
    let mut st = lock(&app.state);
    let b = st.storage.buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
    let o = b.objects.get(object).ok_or_else(|| no_object(bucket, object))?;
    if conds.generation.is_some_and(|g| g != o.generation) {
        return Err(no_object(bucket, object));
    }
    conds.check_write(Some(o))?;
    let live_gen = o.generation;
    b.objects.remove(object);
    blobs(app).remove(bucket, live_gen);
    app.persist(&st);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The request's preconditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Conditions {
    pub(super) generation_match: Option<i64>,
    pub(super) generation_not_match: Option<i64>,
    pub(super) metageneration_match: Option<i64>,
    pub(super) metageneration_not_match: Option<i64>,
    /// `generation=G`: that generation, not the live one.
    pub(super) generation: Option<i64>,
}

impl Conditions {
    pub(super) fn parse(query: &[(String, String)], headers: &HeaderMap) -> Result<Conditions, ApiError> {
        let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let num = |k: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
            match v {
                None => Ok(None),
                Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                    ApiError::invalid_argument(format!("Invalid argument for {k}: {v:?} is not a number"))
                }),
            }
        };
        Ok(Conditions {
            generation_match: num(
                "ifGenerationMatch",
                q("ifGenerationMatch").or_else(|| h("x-goog-if-generation-match")),
            )?,
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
    pub(super) fn check_write(&self, live: Option<&Object>) -> Result<(), ApiError> {
        let live_gen = live.map(|o| o.generation).unwrap_or(0);
        let ok = self.generation_match.is_none_or(|g| g == live_gen)
            && self.generation_not_match.is_none_or(|g| g != live_gen)
            && self.metageneration_match.is_none_or(|m| live.is_some_and(|o| o.metageneration == m))
            && self.metageneration_not_match.is_none_or(|m| live.is_none_or(|o| o.metageneration != m));
        if ok { Ok(()) } else { Err(precondition_failed()) }
    }

    /// Checks a read: 412 for the `Match` conditions, `Ok(false)` (304) for the `NotMatch` ones.
    pub(super) fn check_read(&self, o: &Object) -> Result<bool, ApiError> {
        if self.generation_match.is_some_and(|g| g != o.generation)
            || self.metageneration_match.is_some_and(|m| m != o.metageneration)
        {
            return Err(precondition_failed());
        }
        Ok(!(self.generation_not_match == Some(o.generation)
            || self.metageneration_not_match == Some(o.metageneration)))
    }
}

fn precondition_failed() -> ApiError {
    ApiError::precondition_failed("At least one of the pre-conditions you specified did not hold.")
}

pub(super) fn object_json(bucket: &str, name: &str, o: &Object, base: &str) -> Value {
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

fn live<'a>(st: &'a StorageState, bucket: &str, object: &str, conds: &Conditions) -> Result<&'a Object, ApiError> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    let o = b.objects.get(object).ok_or_else(|| no_object(bucket, object))?;
    if conds.generation.is_some_and(|g| g != o.generation) {
        return Err(no_object(bucket, object));
    }
    Ok(o)
}

pub(super) fn list(app: &App, bucket: &str, query: &[(String, String)], base: &str) -> Result<Response, ApiError> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let prefix = q("prefix").unwrap_or("");
    let delimiter = q("delimiter").filter(|d| !d.is_empty());
    let max = q("maxResults").and_then(|m| m.parse::<usize>().ok()).unwrap_or(1000).clamp(1, 1000);
    let after = q("pageToken").map(|t| {
        String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, t).unwrap_or_default(),
        )
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
    let data = blobs(app)
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
pub(super) fn store(
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
        content_type: if content_type.is_empty() {
            "application/octet-stream".into()
        } else {
            content_type.to_string()
        },
        md5: hash::md5_b64(&data),
        crc32c: hash::crc32c_b64(&data),
        created_ms: now,
        updated_ms: now,
        metadata,
    };
    // Data first, then the metadata that points at it: a crash in between leaves an unreferenced
    // file, never an object without data.
    blobs(app).put(bucket, generation, data)?;
    let v = object_json(bucket, name, &o, base);
    st.storage.buckets.get_mut(bucket).expect("checked above").objects.insert(name.to_string(), o);
    app.persist(&st);
    drop(st);
    if let Some(p) = previous {
        blobs(app).remove(bucket, p.generation);
    }
    Ok(json_response(StatusCode::OK, &v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=12-", 10), None);
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
        let c = |g: Option<i64>, m: Option<i64>| Conditions {
            generation_match: g,
            metageneration_match: m,
            ..Default::default()
        };
        assert!(c(Some(0), None).check_write(None).is_ok(), "ifGenerationMatch=0 creates");
        assert_eq!(c(Some(0), None).check_write(Some(&o)).unwrap_err().http, 412);
        assert!(c(Some(5), Some(2)).check_write(Some(&o)).is_ok());
        assert_eq!(c(Some(4), None).check_write(Some(&o)).unwrap_err().http, 412);
        assert_eq!(c(Some(5), None).check_write(None).unwrap_err().http, 412, "a match on a missing object fails");
        let not = Conditions { generation_not_match: Some(5), ..Default::default() };
        assert!(!not.check_read(&o).unwrap(), "304");
    }
}
