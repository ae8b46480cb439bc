//! The network floor: one HTTP client for the whole process, the TLS crypto set-up, and where the
//! bearer token of every Google call comes from.
//!
//! [`Net`] is made once at the top (the CLI, or a test) and handed down: the providers (through
//! the registry), the state backend, the checks and `drift --notify` all send through its
//! connection pool. Each caller sets its own per-request timeout and `User-Agent` (see
//! [`Net::request`]); the client itself only bounds connecting.
//!
//! Tokens ([`TokenSource`]), in order: none at all when `[provider.gcp] anonymous = true` (an
//! emulator that does not check tokens, like gcloud's `auth/disable_credentials`); the environment
//! variable `SKYFORM_GCP_ACCESS_TOKEN` (tests, CI); otherwise Application Default Credentials through
//! `google-cloud-auth` (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, the metadata
//! server), which caches and refreshes the token itself.

use std::sync::{Arc, Once};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::trust::{CredentialRefused, credential_may_go_to};
use crate::value::Value;

/// The environment variable holding a ready access token.
pub const TOKEN_ENV: &str = "SKYFORM_GCP_ACCESS_TOKEN";

/// The OAuth scope of every call.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long connecting to any server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Installs `ring` as the process-wide rustls provider (reqwest and google-cloud-auth are built
/// without a default one). Idempotent; [`Net::new`] calls it, and so does anything that builds a
/// TLS client of its own (the Kubernetes client, the PostgreSQL connector).
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Why the network floor could not do what was asked. No request was sent in either case.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The HTTP client could not be built (the TLS set-up failed; the cause is in the message).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A request failed on its way: no answer (connection refused, timeout, TLS). The text has
    /// no URL.
    #[error("{0}")]
    Transport(String),
    /// A credential would have gone where it must not (see [`super::trust`]).
    #[error(transparent)]
    Refused(#[from] CredentialRefused),
    /// An answer longer than its caller's limit (a hostile or broken server); the rest was not read.
    #[error("the answer is longer than {limit} bytes; refusing to read more")]
    TooLarge {
        /// The caller's limit.
        limit: usize,
    },
    /// No Google credentials could be found or used.
    #[error(
        "no usable Google credentials ({0}). Set up Application Default Credentials with `gcloud auth \
         application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file, \
         or run where a metadata server answers (GCE, GKE with Workload Identity); {TOKEN_ENV} may also hold \
         a ready access token"
    )]
    Credentials(String),
}

/// The process's HTTP client, shared (cheap to clone: one connection pool).
#[derive(Clone)]
pub struct Net {
    /// The client, or why it could not be built (reported at the first request, so that commands
    /// that send nothing never fail for it).
    http: Result<reqwest::Client, NetError>,
    /// The token source for `[provider.gcp]`-less callers (the state bucket, the Kubernetes
    /// client on GKE): one ADC cache for all of them.
    default_tokens: Arc<TokenSource>,
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").finish_non_exhaustive()
    }
}

impl Net {
    /// The client (installs the crypto provider first).
    pub fn new() -> Net {
        install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("skyform/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NetError::Client(error_chain(&e)));
        Net { http, default_tokens: Arc::new(TokenSource::from_config(&Value::Null)) }
    }

    /// The same set-up with a connection pool of its own, for a caller that runs its requests on
    /// a runtime of its own (the state bucket's): a pooled connection is driven by the runtime
    /// that opened it, and a caller blocked on another runtime must never wait on it. Shares the
    /// default token source (one credential cache).
    pub fn detached(&self) -> Net {
        Net { default_tokens: self.default_tokens.clone(), ..Net::new() }
    }

    /// The underlying client: every request through it shares the pool.
    pub fn http(&self) -> Result<&reqwest::Client, NetError> {
        self.http.as_ref().map_err(Clone::clone)
    }

    /// A request with its timeout and the caller's `User-Agent` suffix (`skyform/0.1.0 state`).
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        timeout: Duration,
        agent: &str,
    ) -> Result<reqwest::RequestBuilder, NetError> {
        Ok(self.http()?.request(method, url).timeout(timeout).header(
            reqwest::header::USER_AGENT,
            if agent.is_empty() {
                concat!("skyform/", env!("CARGO_PKG_VERSION")).to_string()
            } else {
                format!(concat!("skyform/", env!("CARGO_PKG_VERSION"), " {}"), agent)
            },
        ))
    }

    /// A request to `url` carrying `token` as bearer token, when the token may go there (TLS, or a
    /// loopback or operator-named host: [`super::trust`]). Every caller that sends a Google token
    /// goes through here, so that no spec, environment or API answer can send it elsewhere.
    pub fn request_with_token(
        &self,
        method: reqwest::Method,
        url: &str,
        timeout: Duration,
        agent: &str,
        token: Option<String>,
    ) -> Result<reqwest::RequestBuilder, NetError> {
        let rb = self.request(method, url, timeout, agent)?;
        match token {
            Some(t) => {
                credential_may_go_to(url)?;
                Ok(rb.bearer_auth(t))
            }
            None => Ok(rb),
        }
    }

    /// The token source of callers that have no `[provider.gcp]` configuration of their own.
    pub fn default_tokens(&self) -> &TokenSource {
        &self.default_tokens
    }
}

/// Reads an answer's body, at most `limit` bytes: a longer one is an error, and is not read to its end
/// (a hostile or broken server cannot make skyform hold gigabytes).
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, NetError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(NetError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| NetError::Transport(error_chain(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(NetError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_limited`], as text (invalid UTF-8 replaced).
pub async fn read_text_limited(resp: reqwest::Response, limit: usize) -> Result<String, NetError> {
    let body = read_limited(resp, limit).await?;
    Ok(match String::from_utf8(body) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A reqwest error with its causes, without the URL (a URL may hold a credential).
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.without_url_ref();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text.replace(&format!(" for url ({u})"), "").replace(u.as_str(), "<url>"),
            None => text,
        }
    }
}

/// Where tokens come from.
pub enum TokenSource {
    /// A fixed token.
    Static(String),
    /// No `Authorization` header.
    Anonymous,
    /// Application Default Credentials, built on first use.
    Adc(OnceCell<google_cloud_auth::credentials::AccessTokenCredentials>),
}

impl TokenSource {
    /// From a `[provider.gcp]` configuration (or `Value::Null`) and the environment.
    pub fn from_config(config: &Value) -> TokenSource {
        // `anonymous = true` first: a configuration that asks to send no credential is never sent
        // one, whatever the environment holds.
        if config.get("anonymous").and_then(Value::as_bool) == Some(true) {
            return TokenSource::Anonymous;
        }
        if let Ok(t) = std::env::var(TOKEN_ENV)
            && !t.trim().is_empty()
        {
            return TokenSource::Static(t.trim().to_string());
        }
        TokenSource::Adc(OnceCell::new())
    }

    /// The current token (`None`: send no header). Never logged.
    pub async fn token(&self) -> Result<Option<String>, NetError> {
        match self {
            TokenSource::Static(t) => Ok(Some(t.clone())),
            TokenSource::Anonymous => Ok(None),
            TokenSource::Adc(cell) => {
                let creds = cell
                    .get_or_try_init(|| async {
                        install_crypto();
                        google_cloud_auth::credentials::Builder::default()
                            .with_scopes([SCOPE])
                            .build_access_token_credentials()
                            .map_err(|e| NetError::Credentials(e.to_string()))
                    })
                    .await?;
                let t = creds.access_token().await.map_err(|e| {
                    NetError::Credentials(format!("getting an access token: {}", first_sentence(&e.to_string())))
                })?;
                Ok(Some(t.token))
            }
        }
    }
}

/// The library's first sentence: its retry advice ("future attempts may succeed") does not apply
/// when there are no credentials at all.
fn first_sentence(s: &str) -> &str {
    match s.find(". ") {
        Some(i) => &s[..i],
        None => s.trim_end_matches('.'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_error_says_what_to_do_and_claims_no_status() {
        let e =
            NetError::Credentials("getting an access token: Fetching the token resulted in transient errors".into());
        let text = e.to_string();
        assert!(text.contains("gcloud auth application-default login"), "{text}");
        assert!(text.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{text}");
        assert!(!text.contains("HTTP"), "{text}");
        assert_eq!(first_sentence("A failed. Subsequent calls might succeed."), "A failed");
    }

    #[test]
    fn the_user_agent_names_the_caller() {
        let net = Net::new();
        let r = net
            .request(reqwest::Method::GET, "http://127.0.0.1:9/", Duration::from_secs(1), "state")
            .unwrap()
            .build()
            .unwrap();
        let ua = r.headers()[reqwest::header::USER_AGENT].to_str().unwrap();
        assert_eq!(ua, concat!("skyform/", env!("CARGO_PKG_VERSION"), " state"));
        assert_eq!(r.timeout(), Some(&Duration::from_secs(1)));
    }
}
