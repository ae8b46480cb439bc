//! The GKE metadata server, with Workload Identity, as `GCE_METADATA_HOST` clients (Google's
//! auth libraries, the Cloud SQL Auth Proxy's default credentials) reach it (API floor). Beside it,
//! the other ways workloads get credentials: the OAuth 2.0 token endpoint ([`oauth`]) and the
//! pods' DNS answer for `metadata.google.internal` ([`dns`]).
//!
//! A workload's identity is a Kubernetes service account. Processes outside pods name it in the
//! metadata host they are given (a path prefix the Go, Python and Java clients keep):
//!
//! ```text
//! GCE_METADATA_HOST=127.0.0.1:PORT/_metadata/<project>/<location>/<cluster>/<namespace>/<ksa>
//! ```
//!
//! Pods on the testbed's node reach it on 169.254.169.254 (`Config::metadata_listen`), as on GKE,
//! and are known by their source address: the pod with that IP, its namespace and service
//! account, read from the apiserver. Requests must
//! carry `Metadata-Flavor: Google`. The token of `instance/service-accounts/default/token` is for
//! the Google service account named in the KSA's `iam.gke.io/gcp-service-account` annotation,
//! and only when the cluster has Workload Identity with the project's pool, the KSA exists on the
//! cluster's apiserver and carries the annotation, and the Google account's policy grants
//! `roles/iam.workloadIdentityUser` to `serviceAccount:<pool>[<namespace>/<ksa>]`; otherwise the
//! answer is 403 with GKE's message.

pub mod dns;
pub mod oauth;

use std::net::IpAddr;
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

/// Who asks: a process outside pods that names its Kubernetes service account in the metadata
/// host's path, or a pod known by its source address.
enum Caller<'a> {
    Named { project: &'a str, location: &'a str, cluster: &'a str, namespace: &'a str, ksa: &'a str },
    Pod(IpAddr),
}

/// Handles `/_metadata/<project>/<location>/<cluster>/<namespace>/<ksa>/computeMetadata/v1/...`.
pub async fn handle(app: &Arc<App>, path: &str, headers: &HeaderMap) -> Response {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (project, location, cluster, namespace, ksa, rest) = match parts.as_slice() {
        ["_metadata", p, l, c, n, k, "computeMetadata", "v1", rest @ ..] => (*p, *l, *c, *n, *k, rest.join("/")),
        _ => return text(StatusCode::NOT_FOUND, "Not Found\n"),
    };
    if !k8s_name(namespace) || !k8s_name(ksa) {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    }
    answer(app, Caller::Named { project, location, cluster, namespace, ksa }, &rest, headers).await
}

/// Handles `/computeMetadata/v1/...` from the pod whose IP is `peer` (the metadata server on
/// 169.254.169.254, as GKE's). `/` answers without the flavor header, as clients probe it to
/// learn that they run on Google Cloud.
pub async fn handle_pod(app: &Arc<App>, peer: IpAddr, path: &str, headers: &HeaderMap) -> Response {
    if path == "/" {
        return text(StatusCode::OK, "computeMetadata/\n");
    }
    match path.trim_start_matches('/').strip_prefix("computeMetadata/v1/") {
        Some(rest) => answer(app, Caller::Pod(peer), rest, headers).await,
        None => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

/// Kubernetes names (RFC 1123): nothing else reaches the apiserver's path or an IAM member.
fn k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

async fn answer(app: &Arc<App>, caller: Caller<'_>, rest: &str, headers: &HeaderMap) -> Response {
    if headers.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return text(StatusCode::FORBIDDEN, "Missing required header \"Metadata-Flavor\": \"Google\"\n");
    }
    match rest {
        "project/project-id" | "project/numeric-project-id" => {
            let project = match &caller {
                Caller::Named { project, .. } => (*project).to_string(),
                Caller::Pod(_) => match identity(app, &caller).await {
                    Ok((project, _)) => project,
                    Err(m) => return text(StatusCode::NOT_FOUND, &format!("{m}\n")),
                },
            };
            if rest.starts_with("project/numeric") {
                text(StatusCode::OK, &crate::util::project_number(&project))
            } else {
                text(StatusCode::OK, &project)
            }
        }
        "instance/service-accounts/default/email" | "instance/service-accounts/default/token" => {
            let email = match identity(app, &caller).await {
                Ok((_, e)) => e,
                Err(m) => {
                    // The refusal names no secret: which pod, binding or annotation is missing.
                    eprintln!("metadata: refused a token: {m}");
                    return text(StatusCode::FORBIDDEN, &format!("{m}\n"));
                }
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

/// The caller's project and the Google service account it acts as, after GKE's checks; `Err` is
/// the refusal.
async fn identity(app: &Arc<App>, caller: &Caller<'_>) -> Result<(String, String), String> {
    match *caller {
        Caller::Named { project, location, cluster, namespace, ksa } => {
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
            let gsa = gsa_of(app, namespace, ksa).await?;
            check_binding(app, &pool, namespace, ksa, &gsa)?;
            Ok((project.to_string(), gsa))
        }
        Caller::Pod(ip) => {
            let (namespace, ksa) = pod_at(app, ip).await?;
            let gsa = gsa_of(app, &namespace, &ksa).await?;
            // Every emulated cluster is served by the testbed's one node: the pool is that of the
            // Google account's project, which must have a cluster with Workload Identity.
            let project = gsa
                .split_once('@')
                .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
                .ok_or_else(|| format!("{gsa} is not a service account email"))?
                .to_string();
            let pool = format!("{project}.svc.id.goog");
            let enabled = lock(&app.state).gke_clusters.iter().any(|(key, c)| {
                key.starts_with(&format!("{project}/"))
                    && c.pointer("/workloadIdentityConfig/workloadPool").and_then(Value::as_str) == Some(pool.as_str())
            });
            if !enabled {
                return Err(format!(
                    "Workload Identity is not enabled on any cluster of project {project} (pool {pool})"
                ));
            }
            check_binding(app, &pool, &namespace, &ksa, &gsa)?;
            Ok((project, gsa))
        }
    }
}

/// The namespace and service account of the pod whose IP is `ip`. A pod's first container can
/// ask before the kubelet has reported the pod's IP: as GKE's metadata server, wait for it a while.
async fn pod_at(app: &Arc<App>, ip: IpAddr) -> Result<(String, String), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match find_pod(app, ip).await {
            Err(e) if e.starts_with("no pod") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

async fn find_pod(app: &Arc<App>, ip: IpAddr) -> Result<(String, String), String> {
    let path = format!("/api/v1/pods?fieldSelector=status.podIP%3D{ip}");
    let body = match apiserver_get(app, &path).await? {
        (200, body) => body,
        (s, _) => return Err(format!("listing pods on the cluster: HTTP {s}")),
    };
    let list: Value = serde_json::from_str(&body).map_err(|e| format!("the apiserver's pod list: {e}"))?;
    let pod = list["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|p| !matches!(p.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")))
        })
        .ok_or_else(|| format!("no pod has the address {ip}"))?;
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    let ksa = pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string();
    if !k8s_name(&namespace) || !k8s_name(&ksa) {
        return Err(format!("the pod at {ip} has no usable service account"));
    }
    Ok((namespace, ksa))
}

/// The Google service account named by the KSA's annotation.
async fn gsa_of(app: &Arc<App>, namespace: &str, ksa: &str) -> Result<String, String> {
    let sa = read_ksa(app, namespace, ksa).await?;
    sa.pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "The Kubernetes service account {namespace}/{ksa} is not annotated with {ANNOTATION}: it has no \
                 Google service account"
            )
        })
}

/// GKE's check: the Google account grants `roles/iam.workloadIdentityUser` to the KSA's member.
fn check_binding(app: &Arc<App>, pool: &str, namespace: &str, ksa: &str, gsa: &str) -> Result<(), String> {
    let member = format!("serviceAccount:{pool}[{namespace}/{ksa}]");
    let st = lock(&app.state);
    let account = st.iam.accounts.get(gsa).filter(|a| a.resource["disabled"] != json!(true));
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
    Ok(())
}

/// The KSA object from the cluster's apiserver.
async fn read_ksa(app: &Arc<App>, namespace: &str, name: &str) -> Result<Value, String> {
    match apiserver_get(app, &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}")).await? {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("the apiserver's service account: {e}")),
        (404, _) => Err(format!("The Kubernetes service account {namespace}/{name} does not exist")),
        (s, _) => Err(format!("reading {namespace}/{name} from the cluster: HTTP {s}")),
    }
}

/// GET `path` from the cluster's apiserver (`gke_endpoint`, `gke_ca_pem`, the emulator's access
/// token as the bearer: on the testbed it is the apiserver's admin token): status and body.
async fn apiserver_get(app: &Arc<App>, path: &str) -> Result<(u16, String), String> {
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
    let tcp =
        tokio::net::TcpStream::connect(&endpoint).await.map_err(|e| format!("cluster apiserver {endpoint}: {e}"))?;
    let name_ref = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name_ref, tcp)
        .await
        .map_err(|e| format!("cluster apiserver {endpoint}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n\
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
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body_bytes = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body_bytes)
    } else {
        body_bytes.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body_bytes).to_string()))
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
