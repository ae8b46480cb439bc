//! HTTP (bottom floor, above [`crate::error`] only): the parsed form of a JSON API request
//! (percent-decoded path segments, `:verb` suffix, query, JSON body), the raw form of a request
//! with a binary body ([`RawRequest`]), and small response helpers (an [`ApiError`] as a
//! response).

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::error::ApiError;

/// One API request, decoded.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// The raw path, for messages.
    pub path: String,
    /// Percent-decoded path segments, the `:verb` suffix removed from the last one.
    pub segments: Vec<String>,
    /// The `:verb` suffix of the last segment (`getIamPolicy`, `enable`), if any.
    pub verb: Option<String>,
    /// Decoded query parameters in order (repeated keys kept).
    pub query: Vec<(String, String)>,
    /// The JSON body; `Value::Null` when empty.
    pub body: Value,
    /// Who calls: the principal of a token the emulator minted (`None`: the configured admin
    /// token, or no token where none is required; both act as the project owner).
    pub caller: Option<String>,
}

impl ApiRequest {
    /// Decodes path, query and body. Clients percent-encode reserved characters in `{+name}`
    /// expansions (`@` as `%40`, `:` as `%3A`), so segments are decoded before matching.
    pub fn parse(method: Method, path: &str, query: Option<&str>, body: &[u8]) -> Result<Self, ApiError> {
        let mut segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let mut verb = None;
        if let Some(last) = segments.last_mut() {
            // Resource ids never contain ':' (project ids, emails, instance and service names), so
            // the first ':' starts the custom verb.
            if let Some(i) = last.find(':') {
                verb = Some(last[i + 1..].to_string());
                last.truncate(i);
            }
        }
        let query = query.map(parse_query).unwrap_or_default();
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid_argument(format!("Invalid JSON payload received. {e}")))?
        };
        Ok(ApiRequest { method, path: path.to_string(), segments, verb, query, body, caller: None })
    }

    /// The first value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// All values of query parameter `key`.
    pub fn query_all(&self, key: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The path segments as `&str`, for slice patterns.
    pub fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// The body as an object (an empty one when there is no body).
    pub fn body_object(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        match &self.body {
            Value::Null => Ok(serde_json::Map::new()),
            Value::Object(m) => Ok(m.clone()),
            _ => Err(ApiError::invalid_argument("Invalid JSON payload received. Expected an object.")),
        }
    }
}

/// Parses `a=1&b=x%40y` (with `+` as space).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// A request whose body is not JSON (Cloud Storage's uploads and downloads), as the router hands
/// it over before parsing anything.
#[derive(Debug)]
pub struct RawRequest<'a> {
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
    /// Who calls, as in [`ApiRequest::caller`].
    pub caller: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, &self.body())
    }
}

/// A JSON response with Google's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments_and_verb() {
        let r = ApiRequest::parse(
            Method::POST,
            "/v1/projects/-/serviceAccounts/sa%40p.iam.gserviceaccount.com%3AgetIamPolicy",
            Some("alt=json&options.requestedPolicyVersion=3"),
            b"",
        )
        .unwrap();
        assert_eq!(r.segs(), ["v1", "projects", "-", "serviceAccounts", "sa@p.iam.gserviceaccount.com"]);
        assert_eq!(r.verb.as_deref(), Some("getIamPolicy"));
        assert_eq!(r.query("options.requestedPolicyVersion"), Some("3"));
        assert_eq!(r.body, Value::Null);
    }

    #[test]
    fn query_decodes_plus_and_percent() {
        let q = parse_query("name=a%40b.iam&host=&%24alt=json%3Benum-encoding%3Dint&x=a+b");
        assert_eq!(q[0], ("name".into(), "a@b.iam".into()));
        assert_eq!(q[1], ("host".into(), "".into()));
        assert_eq!(q[2], ("$alt".into(), "json;enum-encoding=int".into()));
        assert_eq!(q[3], ("x".into(), "a b".into()));
    }

    #[test]
    fn bad_json_is_invalid_argument() {
        let e = ApiRequest::parse(Method::POST, "/v1/x", None, b"{nope").unwrap_err();
        assert_eq!(e.http, 400);
    }
}
