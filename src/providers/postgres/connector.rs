//! The Cloud SQL connector: how the `postgres` provider reaches an instance named by its
//! connection name (`instance = "<project>:<region>:<name>"`), exactly as the Cloud SQL Auth Proxy
//! and Google's Go/Java/Python connectors do, so that no authorized network is needed and nothing
//! crosses the network in clear:
//!
//! 1. `GET sql/v1beta4/projects/{p}/instances/{i}/connectSettings`: the instance's PRIMARY
//!    address, its server CA, `dnsName` and `serverCaMode` (the region must match the connection
//!    name's);
//! 2. `POST …/instances/{i}:generateEphemeralCert` with the public half of an RSA-2048 key made
//!    here (and, for IAM login, the caller's access token, which Cloud SQL binds into the
//!    certificate): a client certificate valid for an hour;
//! 3. TLS 1.3 to `<address>:3307` with that certificate, trusting only the instance's CA and
//!    checking the server's identity (its DNS name with a CAS-based CA, else its common name
//!    `project:instance`, as connector v1.13 does);
//! 4. the PostgreSQL session inside the tunnel, without a second TLS layer (`sslmode=disable`
//!    inside, as the proxy's clients use it): a password login, or, with `auth = "iam"`, the
//!    principal's IAM database user and no password.
//!
//! The operator needs `cloudsql.instances.connect` (`roles/cloudsql.client`), as with the proxy.
//! The certificate is kept until four minutes before it expires; the key for the provider's life.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value as Json, json};
use tokio::sync::Mutex;

use super::tls;
use crate::foundation::net::{Net, TokenSource};
use crate::providers::ProviderError;

/// The port Cloud SQL's server-side proxy listens on, for connectors only.
pub const CONNECTOR_PORT: u16 = 3307;

/// Google's Cloud SQL Admin API.
const SQLADMIN: &str = "https://sqladmin.googleapis.com/";

/// How long one Admin API call may take.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest Admin API answer read (a certificate and settings: a few kilobytes).
const API_BODY_LIMIT: usize = 1 << 20;

/// A certificate is renewed this long before it expires (as the connectors do).
const RENEW_BEFORE: Duration = Duration::from_secs(4 * 60);

/// An instance's connection name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionName {
    /// The project.
    pub project: String,
    /// The region.
    pub region: String,
    /// The instance.
    pub name: String,
}

impl std::str::FromStr for ConnectionName {
    type Err = ProviderError;
    fn from_str(s: &str) -> Result<Self, ProviderError> {
        let parts: Vec<&str> = s.split(':').collect();
        let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
        // A domain-scoped project (`example.com:proj`) has four parts.
        let (project, region, name) = match parts.as_slice() {
            [p, r, n] if [p, r, n].iter().all(|x| ok(x)) => (p.to_string(), r.to_string(), n.to_string()),
            [d, p, r, n] if [d, p, r, n].iter().all(|x| ok(x)) => (format!("{d}:{p}"), r.to_string(), n.to_string()),
            _ => {
                return Err(ProviderError::Config(format!(
                    "`instance` {s:?} is not a connection name `<project>:<region>:<instance>` (the instance's \
                     `connection_name`)"
                )));
            }
        };
        Ok(ConnectionName { project, region, name })
    }
}

impl std::fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.project, self.region, self.name)
    }
}

/// How the session logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// A built-in user and its password, inside the tunnel.
    Password,
    /// Automatic IAM database authentication: the access token is bound into the certificate;
    /// the user is the principal's IAM database user; no password.
    Iam,
}

/// What `connectSettings` says about an instance.
#[derive(Debug, Clone)]
struct Settings {
    address: std::net::IpAddr,
    server_ca: String,
    dns_name: Option<String>,
    cas_mode: bool,
}

/// A usable client certificate.
struct Issued {
    settings: Settings,
    config: Arc<rustls::ClientConfig>,
    renew_at: SystemTime,
}

/// The connector of one provider instance.
pub struct Connector {
    net: Net,
    base: String,
    /// A token source of its own (tests, benchmarks), else the network floor's default one.
    tokens: Option<TokenSource>,
    instance: ConnectionName,
    login: Login,
    key: Mutex<Option<Arc<rsa::RsaPrivateKey>>>,
    issued: Mutex<Option<Issued>>,
}

impl Connector {
    /// A connector to `instance` through the Admin API at `$SKYFORM_GCP_ENDPOINT` (an emulator),
    /// else Google's.
    pub fn new(net: Net, instance: ConnectionName, login: Login) -> Connector {
        let base =
            std::env::var("SKYFORM_GCP_ENDPOINT").ok().filter(|e| !e.is_empty()).unwrap_or_else(|| SQLADMIN.into());
        Connector::with_admin_api(net, &base, None, instance, login)
    }

    /// A connector whose Admin API and tokens are given (tests and benchmarks inject them).
    pub fn with_admin_api(
        net: Net,
        base: &str,
        tokens: Option<TokenSource>,
        instance: ConnectionName,
        login: Login,
    ) -> Connector {
        let base = if base.ends_with('/') { base.to_string() } else { format!("{base}/") };
        Connector { net, base, tokens, instance, login, key: Mutex::new(None), issued: Mutex::new(None) }
    }

    fn tokens(&self) -> &TokenSource {
        self.tokens.as_ref().unwrap_or_else(|| self.net.default_tokens())
    }

    /// The instance it connects to.
    pub fn instance(&self) -> &ConnectionName {
        &self.instance
    }

    /// A TLS stream to the instance's server-side proxy, after the whole handshake; the caller
    /// speaks PostgreSQL over it.
    pub async fn dial(
        &self,
        timeout: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ProviderError> {
        let (settings, config) = self.certificate().await?;
        let at = std::net::SocketAddr::new(settings.address, CONNECTOR_PORT);
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(at))
            .await
            .map_err(|_| ProviderError::Transient(format!("connecting to {} ({at}): timed out", self.instance)))?
            .map_err(|e| ProviderError::Transient(format!("connecting to {} ({at}): {e}", self.instance)))?;
        let _ = tcp.set_nodelay(true);
        // With a CAS-based CA the name sent and checked is the instance's DNS name; otherwise the
        // verifier checks the common name and the name sent is only a placeholder (rustls cannot
        // send the legacy `project:region:instance`).
        let name = match (&settings.dns_name, settings.cas_mode) {
            (Some(d), true) => ServerName::try_from(d.clone()).map_err(|_| {
                ProviderError::Permanent(format!("{}: its dnsName {d:?} is not a DNS name", self.instance))
            })?,
            _ => ServerName::IpAddress(settings.address.into()),
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let handshake = tokio::time::timeout(timeout, connector.connect(name, tcp)).await.map_err(|_| {
            ProviderError::Transient(format!("TLS to {} ({at}): the handshake timed out", self.instance))
        })?;
        handshake.map_err(|e| {
            // A certificate refused by the server (expired, another CA after a rotation) gets a new
            // one on the next attempt.
            if let Ok(mut g) = self.issued.try_lock() {
                *g = None;
            }
            ProviderError::Transient(format!("TLS to {} ({at}): {e}", self.instance))
        })
    }

    /// The instance's settings and a client configuration with a valid certificate, made anew when
    /// the last one is about to expire.
    async fn certificate(&self) -> Result<(Settings, Arc<rustls::ClientConfig>), ProviderError> {
        let mut issued = self.issued.lock().await;
        if let Some(i) = issued.as_ref()
            && SystemTime::now() < i.renew_at
        {
            return Ok((i.settings.clone(), i.config.clone()));
        }
        let settings = self.connect_settings().await?;
        let key = self.key().await?;
        let (cert, not_after) = self.ephemeral_cert(&key).await?;
        let config = client_config(&settings, &self.instance, cert, &key)?;
        let renew_at = not_after.checked_sub(RENEW_BEFORE).unwrap_or(not_after);
        *issued = Some(Issued { settings: settings.clone(), config: config.clone(), renew_at });
        Ok((settings, config))
    }

    /// The RSA-2048 key of this provider's certificates (made once, off the async threads).
    async fn key(&self) -> Result<Arc<rsa::RsaPrivateKey>, ProviderError> {
        let mut key = self.key.lock().await;
        if let Some(k) = key.as_ref() {
            return Ok(k.clone());
        }
        let made = tokio::task::spawn_blocking(|| rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 2048))
            .await
            .map_err(|e| ProviderError::Permanent(format!("making a key: {e}")))?
            .map_err(|e| ProviderError::Permanent(format!("making a key: {e}")))?;
        let made = Arc::new(made);
        *key = Some(made.clone());
        Ok(made)
    }

    fn instance_path(&self) -> String {
        format!(
            "{}sql/v1beta4/projects/{}/instances/{}",
            self.base,
            seg(&self.instance.project),
            seg(&self.instance.name)
        )
    }

    /// One Admin API call; errors in the API's own words.
    async fn call(&self, method: reqwest::Method, url: &str, body: Option<&Json>) -> Result<Json, ProviderError> {
        let token = self.tokens().token().await?;
        let mut req = self.net.request_with_token(method, url, API_TIMEOUT, "cloudsql-connector", token)?;
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = format!("Cloud SQL Admin API for {}", self.instance);
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Transient(format!("{what}: {}", crate::foundation::net::error_chain(&e))))?;
        let status = resp.status().as_u16();
        let text = crate::foundation::net::read_text_limited(resp, API_BODY_LIMIT)
            .await
            .map_err(|e| ProviderError::Transient(format!("{what}: {e}")))?;
        let j: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if (200..300).contains(&status) {
            return Ok(j);
        }
        let message = j["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
        let e = format!("{what}: {message}");
        Err(if status == 429 || status >= 500 { ProviderError::Transient(e) } else { ProviderError::Permanent(e) })
    }

    async fn connect_settings(&self) -> Result<Settings, ProviderError> {
        let j = self.call(reqwest::Method::GET, &format!("{}/connectSettings", self.instance_path()), None).await?;
        let region = j["region"].as_str().unwrap_or_default();
        if region != self.instance.region {
            return Err(ProviderError::Permanent(format!(
                "{}: the instance is in region {region:?}, not {:?}: use its connection_name",
                self.instance, self.instance.region
            )));
        }
        let address = j["ipAddresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == "PRIMARY"))
            .and_then(|x| x["ipAddress"].as_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                ProviderError::Permanent(format!("{}: the instance has no public (PRIMARY) address", self.instance))
            })?;
        let server_ca = j["serverCaCert"]["cert"]
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ProviderError::Permanent(format!("{}: connectSettings has no serverCaCert", self.instance)))?
            .to_string();
        Ok(Settings {
            address,
            server_ca,
            dns_name: j["dnsName"].as_str().filter(|d| !d.is_empty()).map(|d| d.trim_end_matches('.').to_string()),
            cas_mode: j["serverCaMode"] == "GOOGLE_MANAGED_CAS_CA",
        })
    }

    /// A client certificate for `key` (PEM DER) and when it expires.
    async fn ephemeral_cert(
        &self,
        key: &rsa::RsaPrivateKey,
    ) -> Result<(CertificateDer<'static>, SystemTime), ProviderError> {
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| ProviderError::Permanent(format!("encoding the public key: {e}")))?;
        let mut body = json!({ "public_key": public });
        if self.login == Login::Iam {
            let token = self.tokens().token().await?.ok_or_else(|| {
                ProviderError::Config(
                    "`auth = \"iam\"` needs a Google access token (credentials), not anonymous".into(),
                )
            })?;
            body["access_token"] = Json::String(token);
        }
        let url = format!("{}:generateEphemeralCert", self.instance_path());
        let j = self.call(reqwest::Method::POST, &url, Some(&body)).await?;
        let pem = j["ephemeralCert"]["cert"].as_str().ok_or_else(|| {
            ProviderError::Permanent(format!("{}: generateEphemeralCert returned no certificate", self.instance))
        })?;
        use rustls::pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            ProviderError::Permanent(format!("{}: the ephemeral certificate is not PEM: {e}", self.instance))
        })?;
        let not_after = x509_parser::parse_x509_certificate(cert.as_ref())
            .map(|(_, c)| c.validity().not_after.timestamp())
            .ok()
            .and_then(|t| u64::try_from(t).ok())
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        Ok((cert, not_after))
    }
}

/// TLS 1.3 only, trusting only the instance's CA, presenting the ephemeral certificate.
fn client_config(
    settings: &Settings,
    instance: &ConnectionName,
    cert: CertificateDer<'static>,
    key: &rsa::RsaPrivateKey,
) -> Result<Arc<rustls::ClientConfig>, ProviderError> {
    let roots = tls::roots(&settings.server_ca)?;
    let der = key.to_pkcs8_der().map_err(|e| ProviderError::Permanent(format!("encoding the key: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()));
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ProviderError::Permanent(format!("TLS set-up: {e}")))?;
    let builder = match (&settings.dns_name, settings.cas_mode) {
        // A CAS-based CA: standard verification of the instance's DNS name.
        (Some(_), true) => builder.with_root_certificates(roots),
        // The per-instance CA: the chain, and the common name `project:instance`.
        _ => builder.dangerous().with_custom_certificate_verifier(Arc::new(tls::ChainVerifier::new(
            roots,
            Some(format!("{}:{}", instance.project, instance.name)),
        ))),
    };
    let config = builder
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| ProviderError::Permanent(format!("the ephemeral certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// Percent-encodes one path segment.
fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
}

#[cfg(test)]
mod tests {
    use super::ConnectionName;

    #[test]
    fn connection_names_parse_and_refuse() {
        let c: ConnectionName = "proj:us-central1:db".parse().unwrap();
        assert_eq!((c.project.as_str(), c.region.as_str(), c.name.as_str()), ("proj", "us-central1", "db"));
        assert_eq!(c.to_string(), "proj:us-central1:db");
        let d: ConnectionName = "example.com:proj:europe-west1:db".parse().unwrap();
        assert_eq!(d.project, "example.com:proj");
        for bad in ["", "db", "p:r", "p::db", "p:r:db/x", "../p:r:db", "p:r:d b"] {
            assert!(bad.parse::<ConnectionName>().is_err(), "{bad}");
        }
    }
}
