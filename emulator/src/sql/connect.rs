//! The endpoint the Cloud SQL Auth Proxy and the language connectors use (Cloud SQL, API floor)
//! (`docs/emulator.md`, contract in shared/reference/cloud-sql-connector.md):
//!
//! - `GET …/instances/{i}/connectSettings`: the instance's addresses, region, version, the CA
//!   that signs its server certificate (`serverCaCert`), and `dnsName` with
//!   `serverCaMode: GOOGLE_MANAGED_CAS_CA` (so that a client verifies the server by that DNS
//!   name: rustls refuses the legacy SNI `project:region:instance`).
//! - `POST …/instances/{i}:generateEphemeralCert`: a client certificate for the request's public
//!   key (PKIX SubjectPublicKeyInfo, whatever its PEM label says), valid one hour, signed by the
//!   same CA.
//! - A TLS 1.3 listener on `<instance ip>:3307` that requires such a client certificate; after
//!   the handshake the stream is the raw PostgreSQL protocol, bridged to the instance's server
//!   on `<ip>:5433` from the instance's own address (which `pg_hba.conf` lets in with a password
//!   whatever the instance's `sslMode`: the tunnel is the encryption; the bridge answers
//!   `SSLRequest` with `N` and forwards `CancelRequest` itself). Authorized networks do not apply
//!   here, as on Cloud SQL: IAM does (`generateEphemeralCert`).
//!
//! The same CA is every instance's `serverCaCert` (and `listServerCas`), and signs the certificate
//! PostgreSQL itself serves to direct clients ([`Connectors::postgres_tls`]). One CA per emulator
//! process, made at start: certificates issued before a restart no longer verify, and the
//! connectors fetch new ones, as after a CA rotation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration as TimeDuration, OffsetDateTime};

use super::address::CONNECTOR_PORT;

/// How long an ephemeral client certificate is valid (Cloud SQL: one hour).
pub const EPHEMERAL_CERT_LIFETIME: TimeDuration = TimeDuration::hours(1);

/// The CA and the 3307 listeners of one emulator.
pub struct Connectors {
    ca: Ca,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The listener tasks of each instance (`project/instance`): the 3307 endpoint and the 5432
    /// relay ([`super::network`]).
    listeners: Mutex<HashMap<String, Vec<tokio::task::JoinHandle<()>>>>,
    /// Ephemeral certificates issued: certificate DER → the instance (`project/instance`) it
    /// was issued for, the principal its login token named (automatic IAM authentication), and
    /// its expiry. A certificate opens only its own instance's port.
    issued: Mutex<HashMap<Vec<u8>, Issued>>,
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
    serial: u64,
}

/// What an ephemeral certificate was issued for.
#[derive(Debug, Clone)]
struct Issued {
    instance: String,
    principal: Option<String>,
    not_after: OffsetDateTime,
}

/// Certificates remembered at most (the oldest are dropped beyond it).
const MAX_ISSUED: usize = 10_000;

/// An issued ephemeral certificate.
pub struct Ephemeral {
    /// PEM.
    pub pem: String,
    /// Valid until.
    pub not_after: OffsetDateTime,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Connectors {
    /// A new CA; no listener yet.
    pub fn new() -> Result<Connectors, String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // A name of its own per emulator: two emulators' CAs are never taken for one another.
        dn.push(
            DnType::CommonName,
            format!("Google Cloud SQL Server CA (gcp-emulator {})", crate::util::random_hex(8)),
        );
        dn.push(DnType::OrganizationName, "gcp-emulator");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - TimeDuration::days(1);
        params.not_after = now + TimeDuration::days(3650);
        let serial = rand::random::<u64>() >> 1;
        params.serial_number = Some(serial.into());
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Connectors {
            ca: Ca { pem: cert.pem(), der: cert.der().clone(), params, key, serial },
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            listeners: Mutex::new(HashMap::new()),
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// The CA's common name.
    pub fn ca_name(&self) -> String {
        self.ca
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(|v| match v {
                rcgen::DnValue::Utf8String(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default()
    }

    /// The CA certificate (PEM), the instances' `serverCaCert`.
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// The CA's SHA-1 fingerprint, lowercase hex (`sha1Fingerprint`, `activeVersion`).
    pub fn ca_sha1(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, self.ca.der.as_ref());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The CA as the `SslCert` of instance `instance` (`serverCaCert`, `listServerCas`).
    pub fn server_ca_cert(&self, instance: &str) -> serde_json::Value {
        let ms = |t: OffsetDateTime| (t.unix_timestamp().max(0) as u64) * 1000;
        serde_json::json!({
            "kind": "sql#sslCert",
            "certSerialNumber": self.ca.serial.to_string(),
            "cert": self.ca.pem,
            "commonName": self.ca_name(),
            "sha1Fingerprint": self.ca_sha1(),
            "instance": instance,
            "createTime": crate::util::rfc3339(ms(self.ca.params.not_before)),
            "expirationTime": crate::util::rfc3339(ms(self.ca.params.not_after)),
        })
    }

    /// The certificate and key (PEM) PostgreSQL serves to direct clients of an instance: CN
    /// `project:instance`, SAN `dns_name`, signed by the CA (what `sslmode=verify-ca` checks).
    pub fn postgres_tls(&self, common_name: &str, dns_name: &str) -> Result<(String, String), String> {
        let (cert, key) =
            self.signed_server_cert(common_name, vec![SanType::DnsName(dns_name.try_into().map_err(err)?)])?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate for `public_key_pem` (an SPKI, whatever the PEM label), valid for
    /// [`EPHEMERAL_CERT_LIFETIME`].
    /// With `principal` (automatic IAM database authentication), the certificate is bound to it:
    /// a 3307 connection presenting it may log in as that principal's IAM database user only.
    pub fn ephemeral_cert(
        &self,
        instance: &str,
        public_key_pem: &str,
        principal: Option<&str>,
    ) -> Result<Ephemeral, String> {
        let der = pem_body(public_key_pem).ok_or("public_key is not a PEM block")?;
        let spki = SubjectPublicKeyInfo::from_der(&der).map_err(|e| format!("public_key is not a public key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Google Cloud SQL Client");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - TimeDuration::minutes(5);
        params.not_after = now + EPHEMERAL_CERT_LIFETIME;
        params.serial_number = Some(rand::random::<u64>().into());
        let issuer = Issuer::from_params(&self.ca.params, &self.ca.key);
        let cert = params.signed_by(&spki, &issuer).map_err(err)?;
        {
            let mut m = self.issued.lock().unwrap_or_else(|e| e.into_inner());
            let now = OffsetDateTime::now_utc();
            m.retain(|_, i| i.not_after > now);
            if m.len() >= MAX_ISSUED
                && let Some(oldest) = m.iter().min_by_key(|(_, i)| i.not_after).map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            let issued = Issued {
                instance: instance.to_string(),
                principal: principal.map(str::to_string),
                not_after: params.not_after,
            };
            m.insert(cert.der().to_vec(), issued);
        }
        Ok(Ephemeral { pem: cert.pem(), not_after: params.not_after })
    }

    /// The server TLS configuration of an instance: a certificate with CN `project:instance`
    /// and SAN `dns_name` (both connector generations verify one of them), TLS 1.3, and a
    /// client certificate from this CA required.
    fn server_config(&self, common_name: &str, dns_name: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let (cert, key) = self.server_cert(common_name, vec![SanType::DnsName(dns_name.try_into().map_err(err)?)])?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der.clone()).map_err(err)?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(err)?;
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert, self.ca.der.clone()], key)
            .map_err(err)?;
        Ok(Arc::new(config))
    }

    /// A server certificate (a new key, CN `common_name`, `sans`, EKU serverAuth, ten years)
    /// signed by the CA, with its key.
    fn server_cert(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
        let (cert, key) = self.signed_server_cert(common_name, sans)?;
        Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
    }

    fn signed_server_cert(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
    ) -> Result<(rcgen::Certificate, KeyPair), String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - TimeDuration::days(1);
        params.not_after = now + TimeDuration::days(3650);
        let issuer = Issuer::from_params(&self.ca.params, &self.ca.key);
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok((cert, key))
    }

    /// What a client certificate was issued for, if this emulator issued it and it is valid.
    fn issued_for(&self, cert: &[u8]) -> Option<Issued> {
        let m = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        m.get(cert).filter(|i| i.not_after > OffsetDateTime::now_utc()).cloned()
    }

    /// The HTTPS configuration of the API server itself: a certificate for `ip`, 127.0.0.1 and
    /// localhost signed by the CA; no client certificate.
    pub fn https_config(&self, ip: &IpAddr) -> Result<Arc<rustls::ServerConfig>, String> {
        let sans = vec![
            SanType::DnsName("localhost".try_into().map_err(err)?),
            SanType::IpAddress(*ip),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        ];
        let (cert, key) = self.server_cert("gcp-emulator", sans)?;
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_no_client_auth()
            .with_single_cert(vec![cert, self.ca.der.clone()], key)
            .map_err(err)?;
        Ok(Arc::new(config))
    }

    /// Starts the TLS listener of instance `key` on `ip:3307`, bridged to its server on
    /// `ip:postgres_port` (from `ip`). `app` gives the checks of automatic IAM database
    /// authentication their state (weak: the listener must not keep the emulator alive).
    pub fn listen(
        &self,
        app: std::sync::Weak<crate::app::App>,
        key: &str,
        ip: IpAddr,
        postgres_port: u16,
        common_name: &str,
        dns_name: &str,
    ) -> Result<(), String> {
        let config = self.server_config(common_name, dns_name)?;
        let std_listener = std::net::TcpListener::bind(SocketAddr::new(ip, CONNECTOR_PORT))
            .map_err(|e| format!("cannot listen on {ip}:{CONNECTOR_PORT}: {e}"))?;
        std_listener.set_nonblocking(true).map_err(err)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(err)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let backend = SocketAddr::new(ip, postgres_port);
        let instance_key = key.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, app, key) = (acceptor.clone(), app.clone(), instance_key.clone());
                tokio::spawn(async move {
                    // A client without a certificate from the CA fails the handshake here; an
                    // idle one is dropped.
                    let limit = std::time::Duration::from_secs(30);
                    let Ok(Ok(tls)) = tokio::time::timeout(limit, acceptor.accept(stream)).await else { return };
                    let _ = serve(tls, app, &key, backend).await;
                });
            }
        });
        self.track(key, task);
        Ok(())
    }

    /// Keeps a listener task of instance `key`, stopped with the instance's others.
    pub fn track(&self, key: &str, task: tokio::task::JoinHandle<()>) {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_default().push(task);
    }

    /// Stops the listeners of instance `key` (deleted, or about to be started again).
    pub fn stop(&self, key: &str) {
        for t in self.listeners.lock().unwrap_or_else(|e| e.into_inner()).remove(key).unwrap_or_default() {
            t.abort();
        }
    }

    /// Stops every listener.
    pub fn stop_all(&self) {
        for (_, ts) in self.listeners.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            for t in ts {
                t.abort();
            }
        }
    }
}

impl Drop for Connectors {
    /// The listeners go with the emulator that made them (a stopped emulator's addresses are
    /// free for the next one at once, as after a restart with the same state).
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.listeners.lock().map(|l| l.len()).unwrap_or(0);
        write!(f, "Connectors {{ listeners: {n} }}")
    }
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Serves one connection that passed the TLS handshake: PostgreSQL's first messages are read
/// here (an `SSLRequest`/`GSSENCRequest` is answered `N`: the tunnel is the encryption); a
/// client certificate bound to an IAM principal logs in as that principal's IAM database user
/// without a password (over the server's local socket), after the checks Cloud SQL makes;
/// anything else is bridged to the server's TCP port, where PostgreSQL authenticates it.
async fn serve(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    app: std::sync::Weak<crate::app::App>,
    key: &str,
    backend: SocketAddr,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = app.upgrade() else { return Ok(()) };
    let issued = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| super::connectors(&app).issued_for(c.as_ref()));
    // A certificate opens only the instance it was issued for.
    let Some(issued) = issued.filter(|i| i.instance == key) else {
        tls.write_all(&fatal("28000", "the client certificate was not issued for this instance")).await?;
        return Ok(());
    };
    let principal = issued.principal;
    let startup = loop {
        let len = tls.read_u32().await? as usize;
        if !(8..=10_000).contains(&len) {
            return Ok(());
        }
        let mut body = vec![0u8; len - 4];
        tls.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => tls.write_all(b"N").await?,
            _ => {
                let mut msg = (len as u32).to_be_bytes().to_vec();
                msg.extend_from_slice(&body);
                if code == CANCEL_REQUEST {
                    let mut db = bridge_connect(backend).await?;
                    db.write_all(&msg).await?;
                    return Ok(());
                }
                break msg;
            }
        };
    };
    match principal {
        None => {
            let mut db = bridge_connect(backend).await?;
            db.write_all(&startup).await?;
            tokio::io::copy_bidirectional(&mut tls, &mut db).await?;
        }
        Some(p) => {
            // Logged in without a password: the message the server gets is rebuilt from the
            // checked parameters (a repeated key, or a replication connection, is refused, or a
            // second `user` could name another role).
            let params = match startup_params(&startup) {
                Some(ps) if !ps.iter().any(|(k, _)| k == "replication") => ps,
                _ => {
                    tls.write_all(&fatal("08P01", "invalid startup packet")).await?;
                    return Ok(());
                }
            };
            let user = params.iter().find(|(k, _)| k == "user").map(|(_, v)| v.clone()).unwrap_or_default();
            if let Err(message) = super::instances::check_iam_login(&app, key, &p, &user) {
                tls.write_all(&fatal("28000", &message)).await?;
                tls.shutdown().await?;
                return Ok(());
            }
            let Some(server) = super::pg(&app).get(key) else { return Ok(()) };
            let socket = server.socket_dir().join(format!(".s.PGSQL.{}", server.port()));
            drop(app);
            let mut db = tokio::net::UnixStream::connect(socket).await?;
            db.write_all(&startup_message(&params)).await?;
            tokio::io::copy_bidirectional(&mut tls, &mut db).await?;
        }
    }
    Ok(())
}

/// A connection to the instance's server at `backend` from the instance's own address (the
/// source `pg_hba.conf` knows as the bridge's: [`super::network::hba`]).
async fn bridge_connect(backend: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match backend {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(backend.ip(), 0))?;
    socket.connect(backend).await
}

/// The parameters of a PostgreSQL StartupMessage (`len, protocol 3.0, (name\0 value\0)*, \0`);
/// `None` when it is malformed, not protocol 3.0, or repeats a key.
fn startup_params(msg: &[u8]) -> Option<Vec<(String, String)>> {
    if msg.get(4..8)? != [0, 3, 0, 0] {
        return None;
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut parts = msg.get(8..)?.split(|b| *b == 0);
    loop {
        let k = parts.next()?;
        if k.is_empty() {
            return Some(out);
        }
        let v = parts.next()?;
        let k = String::from_utf8(k.to_vec()).ok()?;
        if out.iter().any(|(x, _)| *x == k) {
            return None;
        }
        out.push((k, String::from_utf8(v.to_vec()).ok()?));
    }
}

/// A StartupMessage (protocol 3.0) made of `params`.
fn startup_message(params: &[(String, String)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A PostgreSQL `ErrorResponse` with severity FATAL.
fn fatal(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (t, v) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', message)] {
        fields.push(t);
        fields.extend_from_slice(v.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// The DER body of the first PEM block of `text`.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let start = text.find("-----BEGIN ")?;
    let after = &text[start..];
    let body_start = after.find('\n')? + 1;
    let end = body_start + after.get(body_start..)?.find("-----END ")?;
    let b64: String = after.get(body_start..end)?.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_certs_take_any_pem_label_and_chain_to_the_ca() {
        let c = Connectors::new().unwrap();
        // The Go connector labels a PKIX key `RSA PUBLIC KEY`.
        let key = KeyPair::generate().unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        use base64::Engine;
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&spki)
        );
        let e = c.ephemeral_cert("p/i", &pem, None).unwrap();
        assert!(e.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(e.not_after > OffsetDateTime::now_utc() + TimeDuration::minutes(55));
        assert!(c.ephemeral_cert("p/i", "not a pem", None).is_err());
        assert!(c.ephemeral_cert("p/i", "-----BEGIN -----END \n", None).is_err(), "no panic on a hostile PEM");
        let msg = [&[0u8, 0, 0, 0, 0, 3, 0, 0][..], b"user\0sa@p.iam\0database\0db\0\0"].concat();
        let ps = startup_params(&msg).unwrap();
        assert_eq!(ps, [("user".into(), "sa@p.iam".into()), ("database".into(), "db".into())]);
        let rebuilt = startup_message(&ps);
        assert_eq!(&rebuilt[4..], &msg[4..]);
        assert_eq!(u32::from_be_bytes([rebuilt[0], rebuilt[1], rebuilt[2], rebuilt[3]]) as usize, rebuilt.len());
        // A second `user` (PostgreSQL would take the last) is refused, as is a short message.
        let twice = [&[0u8, 0, 0, 0, 0, 3, 0, 0][..], b"user\0sa@p.iam\0user\0cloudsqladmin\0\0"].concat();
        assert_eq!(startup_params(&twice), None);
        assert_eq!(startup_params(&[0, 0, 0, 9, 0, 3]), None);
        assert!(c.ca_pem().contains("BEGIN CERTIFICATE"));
    }
}
