//! The GKE metadata server, with Workload Identity, as `GCE_METADATA_HOST` clients (Google's
//! auth libraries, the Cloud SQL Auth Proxy's default credentials) reach it.
//!
//! A workload's identity is a Kubernetes service account. Processes outside pods name it in the
//! metadata host they are given (a path prefix the Go, Python and Java clients keep):
//!
//! ```text
//! GCE_METADATA_HOST=127.0.0.1:PORT/_metadata/<project>/<location>/<cluster>/<namespace>/<ksa>
//! ```
//!
//! (Pods on the testbed's node will be known by their source address instead.) Requests must
//! carry `Metadata-Flavor: Google`. The token of `instance/service-accounts/default/token` is for
//! the Google service account named in the KSA's `iam.gke.io/gcp-service-account` annotation,
//! and only when the cluster has Workload Identity with the project's pool, the KSA exists on the
//! cluster's apiserver and carries the annotation, and the Google account's policy grants
//! `roles/iam.workloadIdentityUser` to `serviceAccount:<pool>[<namespace>/<ksa>]`; otherwise the
//! answer is 403 with GKE's message.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::app::{App, lock};
use crate::http::json_response;
use crate::token::{Principal, TOKEN_LIFETIME};

/// The annotation GKE reads.
pub const ANNOTATION: &str = "iam.gke.io/gcp-service-account";

fn text(status: StatusCode, body: &str) -> Response {
    let mut r = Response::new(axum::body::Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert("Metadata-Flavor", "Google".parse().expect("header"));
    r.headers_mut().insert("Content-Type", "text/plain".parse().expect("header"));
    r
}

/// Handles `/_metadata/<project>/<location>/<cluster>/<namespace>/<ksa>/computeMetadata/v1/...`.
pub async fn handle(app: &Arc<App>, path: &str, headers: &HeaderMap) -> Response {
    if headers.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return text(StatusCode::FORBIDDEN, "Missing required header \"Metadata-Flavor\": \"Google\"\n");
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (project, location, cluster, namespace, ksa, rest) = match parts.as_slice() {
        ["_metadata", p, l, c, n, k, "computeMetadata", "v1", rest @ ..] => (*p, *l, *c, *n, *k, rest.join("/")),
        _ => return text(StatusCode::NOT_FOUND, "Not Found\n"),
    };
    // Kubernetes names (RFC 1123): nothing else reaches the apiserver's path or an IAM member.
    let k8s_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !k8s_name(namespace) || !k8s_name(ksa) {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    }
    match rest.as_str() {
        "project/project-id" => text(StatusCode::OK, project),
        "project/numeric-project-id" => text(StatusCode::OK, &crate::util::project_number(project)),
        "instance/service-accounts/default/email" | "instance/service-accounts/default/token" => {
            let email = match workload_identity(app, project, location, cluster, namespace, ksa).await {
                Ok(e) => e,
                Err(m) => return text(StatusCode::FORBIDDEN, &format!("{m}\n")),
            };
            if rest.ends_with("email") {
                return text(StatusCode::OK, &email);
            }
            let token = app.tokens.mint(Principal { email });
            let mut r = json_response(
                StatusCode::OK,
                &json!({"access_token": token, "expires_in": TOKEN_LIFETIME.as_secs() - 1, "token_type": "Bearer"}),
            );
            r.headers_mut().insert("Metadata-Flavor", "Google".parse().expect("header"));
            r
        }
        "instance/service-accounts/default/scopes" => {
            text(StatusCode::OK, "https://www.googleapis.com/auth/cloud-platform\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

/// The Google service account the KSA acts as, after GKE's checks; `Err` is the refusal.
async fn workload_identity(
    app: &Arc<App>,
    project: &str,
    location: &str,
    cluster: &str,
    namespace: &str,
    ksa: &str,
) -> Result<String, String> {
    let pool = format!("{project}.svc.id.goog");
    {
        let st = lock(&app.state);
        let c = st
            .gke_clusters
            .get(&format!("{project}/{location}/{cluster}"))
            .ok_or_else(|| format!("cluster {project}/{location}/{cluster} does not exist"))?;
        if c.pointer("/workloadIdentityConfig/workloadPool").and_then(Value::as_str) != Some(pool.as_str()) {
            return Err(format!(
                "Workload Identity is not enabled on cluster {cluster} (its workload pool is not {pool})"
            ));
        }
    }
    let sa = read_ksa(app, namespace, ksa).await?;
    let gsa = sa
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!(
                "The Kubernetes service account {namespace}/{ksa} is not annotated with {ANNOTATION}: it has no \
                 Google service account"
            )
        })?
        .to_string();
    let member = format!("serviceAccount:{pool}[{namespace}/{ksa}]");
    let st = lock(&app.state);
    let account = st.iam.accounts.get(&gsa).filter(|a| a.resource["disabled"] != json!(true));
    let allowed = account.is_some_and(|a| {
        a.policy.bindings.iter().any(|b| {
            b["role"] == "roles/iam.workloadIdentityUser"
                && b["members"].as_array().is_some_and(|ms| ms.iter().any(|m| m == member.as_str()))
        })
    });
    if !allowed {
        return Err(format!(
            "Unable to generate access token; IAM returned 403 Forbidden: Permission \
             'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist). The Kubernetes service \
             account {namespace}/{ksa} needs roles/iam.workloadIdentityUser on {gsa} for member {member}"
        ));
    }
    Ok(gsa)
}

/// The KSA object from the cluster's apiserver (`gke_endpoint`, `gke_ca_pem`, the emulator's
/// access token as the bearer: on the testbed it is the apiserver's admin token).
async fn read_ksa(app: &Arc<App>, namespace: &str, name: &str) -> Result<Value, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut endpoint = app.config.gke_endpoint.trim_start_matches("https://").trim_end_matches('/').to_string();
    if !endpoint.contains(':') {
        // GKE reports a bare address: the apiserver is on 443.
        endpoint.push_str(":443");
    }
    let token = app.config.access_token.clone().unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certs(&app.config.gke_ca_pem) {
        let _ = roots.add(der);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = endpoint.rsplit_once(':').map(|(h, _)| h).unwrap_or(&endpoint).to_string();
    let tcp = tokio::net::TcpStream::connect(&endpoint).await.map_err(|e| format!("cluster apiserver {endpoint}: {e}"))?;
    let name_ref = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name_ref, tcp)
        .await
        .map_err(|e| format!("cluster apiserver {endpoint}: {e}"))?;
    let req = format!(
        "GET /api/v1/namespaces/{namespace}/serviceaccounts/{name} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    // Bounded in size and time: a service account is a few kilobytes.
    let mut raw = Vec::new();
    let mut limited = (&mut tls).take(1 << 20);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), limited.read_to_end(&mut raw)).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the apiserver's answer is not HTTP")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body_bytes = &raw[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("0").to_string();
    let body_bytes =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body_bytes) } else { body_bytes.to_vec() };
    let body = String::from_utf8_lossy(&body_bytes).to_string();
    let status = status.as_str();
    match status {
        "200" => serde_json::from_str(&body).map_err(|e| format!("the apiserver's service account: {e}")),
        "404" => Err(format!("The Kubernetes service account {namespace}/{name} does not exist")),
        s => Err(format!("reading {namespace}/{name} from the cluster: HTTP {s}")),
    }
}

/// The body of a chunked HTTP/1.1 answer (bytes: a chunk may split a character).
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        let after = &rest[eol + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = after[n..].strip_prefix(b"\r\n").unwrap_or(&after[n..]);
    }
    out
}

fn pem_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use base64::Engine;
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|b| {
            let body: String =
                b.split("-----END CERTIFICATE-----").next()?.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(body).ok().map(Into::into)
        })
        .collect()
}
