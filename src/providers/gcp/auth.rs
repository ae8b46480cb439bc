//! Credentials: where the bearer token of every GCP call comes from.
//!
//! In order: the environment variable `SKYFORM_GCP_ACCESS_TOKEN` (tests, CI);
//! none at all when `[provider.gcp] anonymous = true` (an emulator that does not
//! check tokens, like gcloud's `auth/disable_credentials`); otherwise Application
//! Default Credentials through `google-cloud-auth` (`GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's user credentials, the metadata server), which caches and refreshes
//! the token itself.
//!
//! Other providers (the Kubernetes provider talking to GKE with the GCP access
//! token) call [`access_token`] with the same `[provider.gcp]` configuration.

use std::sync::Once;

use tokio::sync::OnceCell;

use crate::providers::ProviderError;
use crate::value::Value;

/// The environment variable holding a ready access token.
pub const TOKEN_ENV: &str = "SKYFORM_GCP_ACCESS_TOKEN";

/// The OAuth scope of every call.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Installs `ring` as the process-wide rustls provider (reqwest and
/// google-cloud-auth are built without a default one). Idempotent.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
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
    /// From the provider configuration and the environment.
    pub fn from_config(config: &Value) -> TokenSource {
        if let Ok(t) = std::env::var(TOKEN_ENV)
            && !t.trim().is_empty()
        {
            return TokenSource::Static(t.trim().to_string());
        }
        if config.get("anonymous").and_then(Value::as_bool) == Some(true) {
            return TokenSource::Anonymous;
        }
        TokenSource::Adc(OnceCell::new())
    }

    /// The current token (`None`: send no header). Never logged.
    pub async fn token(&self) -> Result<Option<String>, ProviderError> {
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
                            .map_err(|e| {
                                ProviderError::Config(format!(
                                    "no GCP credentials: {e}. Run `gcloud auth application-default login`, set \
                                     GOOGLE_APPLICATION_CREDENTIALS, or set {TOKEN_ENV}"
                                ))
                            })
                    })
                    .await?;
                let t = creds
                    .access_token()
                    .await
                    .map_err(|e| ProviderError::Config(format!("getting a GCP access token: {e}")))?;
                Ok(Some(t.token))
            }
        }
    }
}

/// The access token the `[provider.gcp]` configuration `config` would use, for
/// other providers (e.g. Kubernetes on GKE). Returns an empty string when the
/// configuration is anonymous (`anonymous = true`, emulator only).
pub async fn access_token(config: &Value) -> Result<String, ProviderError> {
    Ok(TokenSource::from_config(config).token().await?.unwrap_or_default())
}
