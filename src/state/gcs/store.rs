//! The Cloud Storage JSON API calls the state needs (get, download, conditional upload,
//! conditional metadata patch, conditional delete, list), with retries, on the backend's own
//! runtime.
//!
//! Retrying a conditional write is not idempotent by itself: when an attempt was performed but its
//! answer lost (a reset connection, a 503 from a proxy after the write), the retry meets its own
//! object and gets 412. So every upload carries a random write ID in its custom metadata
//! (`skyform-write-id`), and a 412 after a retried attempt reads the object: if it holds this
//! upload's write ID, the write succeeded, with that generation ([`Client::upload`]).

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::foundation::net::{Net, NetError, TokenSource, error_chain, read_limited};
use crate::timings;

/// Requests a failing call is tried (transient errors only: 429, 5xx, no answer).
const ATTEMPTS: u32 = 5;

/// The most pages a listing is followed for (1,000 objects each: far more than a state has).
const MAX_PAGES: usize = 10_000;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest object or answer read: a snapshot of 10,000 resources is a few megabytes.
const BODY_LIMIT: usize = 512 << 20;

/// Why a Storage call failed (after its retries). No secret is ever in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The API refused the request.
    #[error("HTTP {status}: {message}")]
    Refused {
        /// Its status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// Every attempt failed for a transient reason.
    #[error("{last} (after {ATTEMPTS} attempts)")]
    Unreachable {
        /// The last attempt's failure.
        last: String,
    },
    /// The bucket is not there.
    #[error("bucket {0} does not exist")]
    NoBucket(String),
    /// An answer that is not what the API documents.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// Nothing could be sent (no credentials, no client).
    #[error(transparent)]
    Net(#[from] NetError),
}

/// What one request got back.
#[derive(Debug)]
enum Reply {
    /// 2xx: the body, and the server's clock (its `Date` header) when it answered.
    Ok(Vec<u8>, Option<SystemTime>),
    NotFound,
    /// 412; `retried`: an earlier attempt of this call may have been performed (its answer was
    /// lost or transient), so the precondition may have failed on this call's own write.
    PreconditionFailed {
        retried: bool,
    },
}

/// The custom metadata key of an upload's write ID.
const WRITE_ID: &str = "skyform-write-id";

/// An object's metadata, as the state needs it.
#[derive(Debug, Clone)]
pub(super) struct ObjectMeta {
    pub(super) generation: i64,
    pub(super) metageneration: i64,
    /// When the object or its metadata last changed (server clock, RFC 3339).
    pub(super) updated: Option<String>,
    /// The write ID of the upload that made this generation.
    pub(super) write_id: Option<String>,
    /// The server's clock when it answered.
    pub(super) server_now: Option<SystemTime>,
}

/// The runtime the HTTP calls run on (the engine's own may be single-threaded, or busy).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("skyform-gcs")
            .enable_all()
            .build()
            .expect("the state backend's runtime starts")
    })
}

/// Runs `f` on the backend's runtime and waits for it, without stalling the caller's runtime.
pub(super) fn block<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    blocking(move || rx.recv().expect("the state backend's runtime answers"))
}

/// Runs `wait` (which blocks) so that a multi-threaded caller runtime moves its other tasks to
/// another thread meanwhile: the engine's other steps go on while one waits for the bucket.
pub(super) fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A minimal JSON-API client (the calls state needs), with retries.
pub(super) struct Client {
    /// The network floor's client, with a pool of its own (see [`Net::detached`]).
    net: Net,
    /// `https://storage.googleapis.com/` or an emulator's base URL (with a trailing `/`).
    base: String,
    /// A fixed token, or `None` for the network floor's default source.
    token: Option<TokenSource>,
    /// Requests made, for the benchmark and tests.
    pub(super) requests: std::sync::atomic::AtomicU64,
}

impl Client {
    pub(super) fn new(net: &Net, endpoint: Option<String>, token: Option<String>) -> Client {
        let base = endpoint.unwrap_or_else(|| "https://storage.googleapis.com/".into());
        let base = if base.ends_with('/') { base } else { format!("{base}/") };
        Client { net: net.detached(), base, token: token.map(TokenSource::Static), requests: Default::default() }
    }

    /// One call with retries.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(Vec<u8>, String)>,
    ) -> Result<Reply, StoreError> {
        let mut delay = Duration::from_millis(100);
        let mut last = String::new();
        // Whether an earlier attempt may have reached the server and been performed.
        let mut retried = false;
        let tokens = self.token.as_ref().unwrap_or_else(|| self.net.default_tokens());
        let _t = timings::span("state", || {
            format!("{method} {}", url.rsplit("/o/").next().unwrap_or_default().split('?').next().unwrap_or_default())
        });
        for attempt in 1..=ATTEMPTS {
            self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let token = tokens.token().await?;
            let mut req = self.net.request_with_token(method.clone(), url, REQUEST_TIMEOUT, "state", token)?;
            if let Some((data, ctype)) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, ctype.as_str()).body(data.clone());
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let date = resp
                        .headers()
                        .get(reqwest::header::DATE)
                        .and_then(|d| d.to_str().ok())
                        .and_then(|d| httpdate::parse_http_date(d).ok());
                    match read_limited(resp, BODY_LIMIT).await {
                        // Longer than any state skyform writes: not an answer to retry.
                        Err(e @ NetError::TooLarge { .. }) => return Err(e.into()),
                        // The answer was cut off: as good as none (the request may have been performed).
                        Err(e) => last = e.to_string(),
                        Ok(bytes) => match status {
                            200..=299 => return Ok(Reply::Ok(bytes, date)),
                            404 => return Ok(Reply::NotFound),
                            412 => return Ok(Reply::PreconditionFailed { retried }),
                            408 | 429 | 500..=599 => last = format!("HTTP {status}: {}", api_message(&bytes)),
                            _ => return Err(StoreError::Refused { status, message: api_message(&bytes) }),
                        },
                    }
                }
                Err(e) => last = error_chain(&e),
            }
            retried = true;
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(4));
            }
        }
        Err(StoreError::Unreachable { last })
    }

    fn object_url(&self, bucket: &str, object: &str) -> String {
        format!("{}storage/v1/b/{}/o/{}", self.base, enc(bucket), enc(object))
    }

    /// The live generation of an object, if it exists.
    pub(super) async fn generation(&self, bucket: &str, object: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.meta(bucket, object).await?.map(|m| m.generation))
    }

    /// The live object's metadata, if it exists.
    pub(super) async fn meta(&self, bucket: &str, object: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.call(reqwest::Method::GET, &self.object_url(bucket, object), None).await? {
            Reply::Ok(b, date) => Ok(Some(meta_of(&b, date)?)),
            Reply::NotFound => Ok(None),
            Reply::PreconditionFailed { .. } => Err(StoreError::Unexpected("412 on a read".into())),
        }
    }

    /// Whether the live object is at `generation` (a metadata read with `ifGenerationMatch`: the
    /// store decides, in one request).
    pub(super) async fn is_at(&self, bucket: &str, object: &str, generation: i64) -> Result<bool, StoreError> {
        let url = format!("{}?ifGenerationMatch={generation}", self.object_url(bucket, object));
        match self.call(reqwest::Method::GET, &url, None).await? {
            Reply::Ok(..) => Ok(true),
            Reply::NotFound | Reply::PreconditionFailed { .. } => Ok(false),
        }
    }

    /// Sets custom metadata of the object if its live generation is `generation` (the generation
    /// stays, the metageneration goes up); false if it is not (or is gone).
    pub(super) async fn patch_metadata(
        &self,
        bucket: &str,
        object: &str,
        generation: i64,
        metadata: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let url = format!("{}?ifGenerationMatch={generation}", self.object_url(bucket, object));
        let body = serde_json::to_vec(&serde_json::json!({ "metadata": metadata })).expect("JSON serializes");
        match self.call(reqwest::Method::PATCH, &url, Some((body, "application/json".into()))).await? {
            Reply::Ok(..) => Ok(true),
            Reply::NotFound | Reply::PreconditionFailed { .. } => Ok(false),
        }
    }

    /// The data of one generation of an object; `None` if that generation is gone.
    pub(super) async fn download(
        &self,
        bucket: &str,
        object: &str,
        generation: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let url = format!("{}?alt=media&generation={generation}", self.object_url(bucket, object));
        match self.call(reqwest::Method::GET, &url, None).await? {
            Reply::Ok(b, _) => Ok(Some(b)),
            Reply::NotFound => Ok(None),
            Reply::PreconditionFailed { .. } => Err(StoreError::Unexpected("412 on a read".into())),
        }
    }

    /// Writes an object if its live generation is `if_generation` (0: if there is none);
    /// `Ok(None)` when it is not, else the new generation.
    ///
    /// Idempotent under retries: the upload (multipart, JSON metadata then the data) carries a
    /// fresh write ID; a 412 after an attempt whose answer was lost reads the live object, and if
    /// it is this upload's (same write ID), returns its generation as this call's success.
    pub(super) async fn upload(
        &self,
        bucket: &str,
        object: &str,
        data: Vec<u8>,
        if_generation: i64,
    ) -> Result<Option<i64>, StoreError> {
        let write_id = format!("{:032x}", rand::random::<u128>());
        let boundary = format!("skyform-{:032x}", rand::random::<u128>());
        let meta = serde_json::json!({
            "name": object,
            "contentType": "application/json",
            "metadata": { WRITE_ID: write_id },
        });
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(meta.to_string().as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n").as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = format!(
            "{}upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
            self.base,
            enc(bucket),
        );
        let ctype = format!("multipart/related; boundary={boundary}");
        match self.call(reqwest::Method::POST, &url, Some((body, ctype))).await? {
            Reply::Ok(b, date) => Ok(Some(meta_of(&b, date)?.generation)),
            Reply::PreconditionFailed { retried: false } => Ok(None),
            Reply::PreconditionFailed { retried: true } => match self.meta(bucket, object).await? {
                // Our own write, performed by an attempt whose answer was lost.
                Some(m) if m.write_id.as_deref() == Some(write_id.as_str()) => Ok(Some(m.generation)),
                _ => Ok(None),
            },
            Reply::NotFound => Err(StoreError::NoBucket(bucket.to_string())),
        }
    }

    /// Deletes an object (only generation `if_generation`, and only metageneration
    /// `if_metageneration`, when given); false if it was not there (or not at that generation).
    pub(super) async fn delete(
        &self,
        bucket: &str,
        object: &str,
        if_generation: Option<i64>,
        if_metageneration: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut url = self.object_url(bucket, object);
        let mut sep = '?';
        if let Some(g) = if_generation {
            url.push_str(&format!("{sep}ifGenerationMatch={g}"));
            sep = '&';
        }
        if let Some(m) = if_metageneration {
            url.push_str(&format!("{sep}ifMetagenerationMatch={m}"));
        }
        match self.call(reqwest::Method::DELETE, &url, None).await? {
            Reply::Ok(..) => Ok(true),
            Reply::NotFound | Reply::PreconditionFailed { .. } => Ok(false),
        }
    }

    /// Every object under `prefix`, with its generation, in name order.
    pub(super) async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            items: Vec<Item>,
            #[serde(rename = "nextPageToken")]
            next: Option<String>,
        }
        #[derive(Deserialize)]
        struct Item {
            name: String,
            generation: String,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // The tokens followed so far: a store that names a page twice (or without end) is refused
        // rather than followed for ever.
        let mut followed = std::collections::HashSet::new();
        loop {
            let mut url = format!("{}storage/v1/b/{}/o?prefix={}", self.base, enc(bucket), enc(prefix));
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let bytes = match self.call(reqwest::Method::GET, &url, None).await? {
                Reply::Ok(b, _) => b,
                Reply::NotFound => return Err(StoreError::NoBucket(bucket.to_string())),
                Reply::PreconditionFailed { .. } => return Err(StoreError::Unexpected("412 on a list".into())),
            };
            let page: Page =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Unexpected(format!("a list page: {e}")))?;
            for i in page.items {
                let g =
                    i.generation.parse().map_err(|_| StoreError::Unexpected("a generation is not a number".into()))?;
                out.push((i.name, g));
            }
            match page.next {
                Some(t) if !t.is_empty() => {
                    if followed.len() >= MAX_PAGES {
                        return Err(StoreError::Unexpected(format!("a listing of more than {MAX_PAGES} pages")));
                    }
                    if !followed.insert(t.clone()) {
                        return Err(StoreError::Unexpected(format!("a listing that repeats its page token {t:?}")));
                    }
                    token = Some(t);
                }
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}

fn meta_of(object_json: &[u8], server_now: Option<SystemTime>) -> Result<ObjectMeta, StoreError> {
    let v: serde_json::Value =
        serde_json::from_slice(object_json).map_err(|e| StoreError::Unexpected(e.to_string()))?;
    let num = |k: &str| v.get(k).and_then(|g| g.as_str().and_then(|s| s.parse().ok()).or_else(|| g.as_i64()));
    Ok(ObjectMeta {
        generation: num("generation").ok_or_else(|| StoreError::Unexpected("an object without a generation".into()))?,
        metageneration: num("metageneration").unwrap_or(1),
        updated: v.get("updated").and_then(|u| u.as_str()).map(str::to_string),
        write_id: v.pointer(&format!("/metadata/{WRITE_ID}")).and_then(|w| w.as_str()).map(str::to_string),
        server_now,
    })
}

fn api_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}
