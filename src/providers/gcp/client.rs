//! The HTTP layer shared by every GCP resource: one `reqwest` client, one base URL
//! per API (or one override for all, the emulator), bearer tokens from
//! [`crate::foundation::net`], the google.rpc error envelope, and retries.
//!
//! Retries: 429, 500, 502, 503, 504 and connection errors are retried with full
//! jitter, exponential backoff capped at [`RetryPolicy::cap`], honouring a
//! `RetryInfo.retryDelay` when the API sends one, for at most
//! [`RetryPolicy::attempts`] attempts. Everything else is returned at once as an
//! [`ApiError`] for the caller to judge (409 `operationInProgress`, eventual
//! consistency and etag conflicts are retried where their meaning is known).

use std::time::Duration;

use rand::Rng;
use serde_json::{Value as Json, json};

use crate::foundation::net::{Net, NetError, TokenSource, error_chain, read_text_limited};
use crate::providers::ProviderError;
use crate::timings;

/// The Google APIs this provider talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Cloud SQL Admin (v1).
    Sql,
    /// IAM (service accounts, keys, their policies).
    Iam,
    /// Resource Manager (projects and their policies).
    Crm,
    /// Kubernetes Engine.
    Container,
    /// Service Usage.
    ServiceUsage,
}

impl Api {
    fn host(self) -> &'static str {
        match self {
            Api::Sql => "https://sqladmin.googleapis.com/",
            Api::Iam => "https://iam.googleapis.com/",
            Api::Crm => "https://cloudresourcemanager.googleapis.com/",
            Api::Container => "https://container.googleapis.com/",
            Api::ServiceUsage => "https://serviceusage.googleapis.com/",
        }
    }
}

/// An error answered by a Google API (or a transport failure, `status == 0`).
#[derive(Debug, Clone, Default)]
pub struct ApiError {
    /// HTTP status (0: no response).
    pub status: u16,
    /// The google.rpc status name (`ALREADY_EXISTS`), if given.
    pub rpc: String,
    /// The legacy `errors[0].reason` (`operationInProgress`, `instanceAlreadyExists`).
    pub reason: String,
    /// The API's message.
    pub message: String,
    /// `RetryInfo.retryDelay`, if given.
    pub retry_delay: Option<Duration>,
    /// Nothing was sent (no credentials, no HTTP client): the message says what to do, and
    /// retrying cannot help.
    pub no_request: bool,
}

impl ApiError {
    /// Parses the google.rpc envelope.
    pub fn from_body(status: u16, body: &str) -> ApiError {
        let j: Json = serde_json::from_str(body).unwrap_or(Json::Null);
        let e = &j["error"];
        let message = e["message"].as_str().map(str::to_string).unwrap_or_else(|| {
            let t = body.trim();
            if t.is_empty() { format!("HTTP {status}") } else { t.chars().take(300).collect() }
        });
        let retry_delay = e["details"].as_array().and_then(|ds| {
            ds.iter()
                .find(|d| d["@type"].as_str().is_some_and(|t| t.ends_with("google.rpc.RetryInfo")))
                .and_then(|d| d["retryDelay"].as_str())
                .and_then(parse_duration)
        });
        ApiError {
            status,
            rpc: e["status"].as_str().unwrap_or_default().to_string(),
            reason: e["errors"][0]["reason"].as_str().unwrap_or_default().to_string(),
            message,
            retry_delay,
            no_request: false,
        }
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }
    /// 409 ALREADY_EXISTS (or Cloud SQL's `instanceAlreadyExists`).
    pub fn is_already_exists(&self) -> bool {
        self.status == 409
            && (self.rpc == "ALREADY_EXISTS"
                || self.reason == "alreadyExists"
                || self.reason == "instanceAlreadyExists")
    }
    /// Transient by HTTP status or transport failure.
    pub fn is_transient(&self) -> bool {
        !self.no_request && matches!(self.status, 0 | 429 | 500 | 502 | 503 | 504)
    }
    /// The message for the user (the API's own words, plus its reason).
    pub fn describe(&self) -> String {
        let mut s = self.message.clone();
        if self.no_request {
            return s;
        }
        if !self.reason.is_empty() && !s.contains(&self.reason) {
            s.push_str(&format!(" ({})", self.reason));
        } else if self.status != 0 && self.rpc.is_empty() && self.reason.is_empty() {
            s = format!("HTTP {}: {s}", self.status);
        }
        s
    }
}

impl From<ApiError> for ProviderError {
    fn from(e: ApiError) -> Self {
        if e.is_transient() { ProviderError::Transient(e.describe()) } else { ProviderError::Permanent(e.describe()) }
    }
}

/// `"1.5s"` → 1.5 s (protobuf Duration JSON form). An API's value is not trusted: anything
/// negative, not finite or too large for a `Duration` is `None` (`"1e20s"` must not panic).
pub fn parse_duration(s: &str) -> Option<Duration> {
    s.strip_suffix('s').and_then(|n| n.parse::<f64>().ok()).and_then(|f| Duration::try_from_secs_f64(f).ok())
}

/// How transient errors and polling back off. Injected so that tests run fast.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First backoff.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
    /// Attempts per request (transient errors).
    pub attempts: u32,
    /// First poll interval of a long-running operation.
    pub poll_initial: Duration,
    /// Longest poll interval.
    pub poll_cap: Duration,
    /// How long "just created, not visible yet" errors are retried.
    pub consistency_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(16),
            attempts: 10,
            poll_initial: Duration::from_millis(200),
            poll_cap: Duration::from_secs(10),
            consistency_window: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter backoff for attempt `n` (0-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << n.min(16)).min(self.cap);
        let ms = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest answer read: the largest the five APIs give skyform (a page of operations, an IAM
/// policy) is tens of kilobytes.
const BODY_LIMIT: usize = 16 << 20;

/// The HTTP client of one configured provider: the process's shared [`Net`], this provider's
/// endpoint and token source.
pub struct Client {
    net: Net,
    endpoint: Option<String>,
    token: TokenSource,
    /// Backoff and polling.
    pub retry: RetryPolicy,
}

impl Client {
    /// A client for `endpoint` (one base URL for all APIs) or the real hosts.
    pub fn new(net: Net, endpoint: Option<String>, token: TokenSource, retry: RetryPolicy) -> Client {
        let endpoint = endpoint.map(|e| if e.ends_with('/') { e } else { format!("{e}/") });
        Client { net, endpoint, token, retry }
    }

    /// The URL of `path` (which starts with `v1/…`) on `api`.
    pub fn url(&self, api: Api, path: &str) -> String {
        let base = self.endpoint.as_deref().unwrap_or(api.host());
        format!("{base}{}", path.trim_start_matches('/'))
    }

    /// GET.
    pub async fn get(&self, api: Api, path: &str) -> Result<Json, ApiError> {
        self.call(reqwest::Method::GET, api, path, None).await
    }
    /// GET, with 404 as `None`.
    pub async fn get_opt(&self, api: Api, path: &str) -> Result<Option<Json>, ApiError> {
        match self.get(api, path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// POST with a JSON body.
    pub async fn post(&self, api: Api, path: &str, body: &Json) -> Result<Json, ApiError> {
        self.call(reqwest::Method::POST, api, path, Some(body)).await
    }
    /// PATCH with a JSON body.
    pub async fn patch(&self, api: Api, path: &str, body: &Json) -> Result<Json, ApiError> {
        self.call(reqwest::Method::PATCH, api, path, Some(body)).await
    }
    /// PUT with a JSON body.
    pub async fn put(&self, api: Api, path: &str, body: &Json) -> Result<Json, ApiError> {
        self.call(reqwest::Method::PUT, api, path, Some(body)).await
    }
    /// DELETE.
    pub async fn delete(&self, api: Api, path: &str) -> Result<Json, ApiError> {
        self.call(reqwest::Method::DELETE, api, path, None).await
    }

    /// One API call with transient-error retries. Bodies (which may hold
    /// passwords) are never logged nor put in errors.
    pub async fn call(
        &self,
        method: reqwest::Method,
        api: Api,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, ApiError> {
        let url = self.url(api, path);
        let mut attempt = 0;
        loop {
            let err = match self.once(method.clone(), &url, body).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempt += 1;
            if !err.is_transient() || attempt >= self.retry.attempts {
                return Err(err);
            }
            let wait =
                err.retry_delay.map(|d| d.min(self.retry.cap)).unwrap_or_else(|| self.retry.backoff(attempt - 1));
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(&self, method: reqwest::Method, url: &str, body: Option<&Json>) -> Result<Json, ApiError> {
        // Neither failure below sent anything: they are final, and claim no HTTP status.
        let local = |e: NetError| ApiError { message: e.to_string(), no_request: true, ..Default::default() };
        let _t = timings::span("gcp", || {
            format!(
                "{method} {}",
                url.split_once("://")
                    .map_or(url, |(_, r)| r)
                    .split_once('/')
                    .map_or("", |(_, p)| p)
                    .split('?')
                    .next()
                    .unwrap_or_default()
            )
        });
        let token = self.token.token().await.map_err(local)?;
        let mut rb = self.net.request_with_token(method, url, REQUEST_TIMEOUT, "", token).map_err(local)?;
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| {
            let message = error_chain(&e);
            // An untrusted certificate does not get better by retrying: say so at once.
            if message.contains("invalid peer certificate") {
                return ApiError {
                    status: 495,
                    rpc: "TLS".into(),
                    message: format!(
                        "TLS: {message}; if the endpoint uses a private CA (an emulator, a corporate proxy), trust it \
                         with SSL_CERT_FILE=<its CA bundle>"
                    ),
                    ..Default::default()
                };
            }
            ApiError { status: 0, message: format!("connection error: {message}"), ..Default::default() }
        })?;
        let status = resp.status().as_u16();
        let text = read_text_limited(resp, BODY_LIMIT).await.map_err(|e| ApiError {
            status: 0,
            message: format!("reading response: {e}"),
            ..Default::default()
        })?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(json!({}));
            }
            return serde_json::from_str(&text).map_err(|e| ApiError {
                status: 502,
                message: format!("unparseable response: {e}"),
                ..Default::default()
            });
        }
        Err(ApiError::from_body(status, &text))
    }
}

/// Percent-encodes one path segment (emails, role names). A segment that is only dots stays
/// encoded, so that it can never be read as `.` or `..` and resolve to another URL.
pub fn seg(s: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    if s.chars().all(|c| c == '.') {
        return encoded;
    }
    encoded.replace("%2D", "-").replace("%2E", ".").replace("%5F", "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_retry_delays_do_not_panic() {
        for bad in ["1e20s", "-1s", "NaNs", "infs", "s", "1e400s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("0.25s"), Some(Duration::from_millis(250)));
        let e = ApiError::from_body(
            429,
            r#"{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1e20s"}]}}"#,
        );
        assert_eq!(e.retry_delay, None);
    }

    #[test]
    fn parses_envelope_with_retry_info() {
        let body = r#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED",
            "errors":[{"reason":"rateLimitExceeded"}],
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}"#;
        let e = ApiError::from_body(429, body);
        assert!(e.is_transient());
        assert_eq!(e.retry_delay, Some(Duration::from_millis(1500)));
        assert_eq!(e.reason, "rateLimitExceeded");
        let e = ApiError::from_body(409, r#"{"error":{"message":"x","errors":[{"reason":"instanceAlreadyExists"}]}}"#);
        assert!(e.is_already_exists() && !e.is_transient());
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy::default();
        for n in 0..40 {
            assert!(p.backoff(n) <= p.cap);
        }
        assert_eq!(seg("a@b.iam.gserviceaccount.com"), "a%40b.iam.gserviceaccount.com");
        assert_eq!(seg(".."), "%2E%2E", "a dot segment never resolves to its parent");
        assert_eq!(seg("."), "%2E");
        assert_eq!(seg("a..b"), "a..b");
    }
}
