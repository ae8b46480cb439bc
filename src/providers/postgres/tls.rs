//! TLS for PostgreSQL sessions: the verifiers Cloud SQL's server certificates need, which are not
//! the web's.
//!
//! A Cloud SQL server certificate is issued by the instance's own CA (`serverCaCert`) and names
//! the instance, not a host: with the per-instance CA its common name is `project:instance`; with
//! a CAS-based CA (`serverCaMode: GOOGLE_MANAGED_CAS_CA`) it also carries the instance's
//! `dnsName`. So a client verifies the chain to that CA and then either the DNS name (standard
//! WebPKI verification) or the common name — never the IP address it dialled (`sslmode=verify-ca`
//! in libpq terms). rustls has no "chain only" verifier, so [`ChainVerifier`] is written here on
//! rustls's own chain check (`verify_server_cert_signed_by_trust_anchor`), with x509-parser for
//! the common name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::providers::ProviderError;

/// The process's crypto provider (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM text (one or several `CERTIFICATE` blocks), as a root store.
pub fn roots(pem: &str) -> Result<RootCertStore, ProviderError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| ProviderError::Config(format!("the server CA certificate is not PEM: {e}")))?;
        roots.add(cert).map_err(|e| ProviderError::Config(format!("the server CA certificate is not usable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ProviderError::Config("the server CA certificate holds no certificate".into()));
    }
    Ok(roots)
}

/// Accepts a server certificate that chains to `roots` (and, with `common_name`, whose subject's
/// common name is exactly that), whatever name or address the client dialled. The handshake's
/// signatures are always verified.
#[derive(Debug)]
pub struct ChainVerifier {
    roots: Arc<RootCertStore>,
    common_name: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl ChainVerifier {
    /// A verifier for `roots`, checking the common name when given.
    pub fn new(roots: RootCertStore, common_name: Option<String>) -> ChainVerifier {
        ChainVerifier { roots: Arc::new(roots), common_name, provider: provider() }
    }
}

/// The subject common name of a certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string)
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if let Some(want) = &self.common_name {
            let got = common_name(end_entity);
            if got.as_deref() != Some(want.as_str()) {
                return Err(rustls::Error::General(format!(
                    "the server certificate names {} (expected the instance {want})",
                    got.unwrap_or_else(|| "no common name".into())
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=require`: encryption without knowing who answers (as libpq's `require` without a root
/// certificate). The handshake's signatures are still verified.
#[derive(Debug)]
pub struct EncryptOnly(Arc<CryptoProvider>);

impl Default for EncryptOnly {
    fn default() -> Self {
        EncryptOnly(provider())
    }
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
