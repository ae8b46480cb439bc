//! IAM v1: service accounts, their IAM policies and their keys (contract §2), on the API floor.
//! Policy semantics are shared with Resource Manager ([`crate::policy`]).
//!
//! A new account can be made invisible for a while (eventual consistency): reads answer 404 and
//! policy member validation answers 400 "does not exist", as the real API does shortly after a
//! create.

use std::sync::Arc;

use axum::http::Method;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use crate::access::{Target, account_project, project_id};
use crate::api::{JsonApi, Reply};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::state::{ServiceAccount, State};
use crate::util::{b64, now_ms, random_digits, random_hex, rfc3339, str_field};

/// IAM, as the router registers it.
#[derive(Debug)]
pub struct Iam;

impl JsonApi for Iam {
    fn owns(&self, req: &ApiRequest) -> bool {
        matches!(req.segs().as_slice(), ["v1", "projects", _, "serviceAccounts", ..])
    }

    fn method(&self, req: &ApiRequest) -> Option<&'static str> {
        method(req)
    }

    fn authorize(&self, app: &App, req: &ApiRequest, method: &str) -> Result<(), ApiError> {
        crate::access::check_api(app, req, method, target, crate::access::denied)
    }

    fn handle<'a>(
        &'a self,
        app: &'a Arc<App>,
        req: &'a ApiRequest,
        method: &'a str,
    ) -> Reply<'a, Result<Value, ApiError>> {
        Box::pin(handle(app, req, method))
    }
}

/// What an IAM request acts on, for IAM enforcement: the service account (whose own policy counts
/// too), or the project.
fn target(st: &State, req: &ApiRequest) -> Target {
    let s = req.segs();
    let project = |i: usize| s.get(i).map(|p| project_id(st, p));
    match s.get(4) {
        Some(id) => {
            let found =
                st.iam.accounts.get(*id).or_else(|| st.iam.accounts.values().find(|a| a.resource["uniqueId"] == *id));
            let email = found.and_then(|a| a.resource["email"].as_str()).unwrap_or(id).to_string();
            let p = found
                .and_then(|a| a.resource["projectId"].as_str())
                .map(str::to_string)
                .or_else(|| account_project(&email).map(str::to_string))
                .or_else(|| project(2).filter(|p| p != "-"));
            Target { project: p, resource: format!("projects/-/serviceAccounts/{id}"), account: Some(email) }
        }
        None => {
            let p = project(2).unwrap_or_default();
            Target { resource: format!("projects/{p}"), project: Some(p), account: None }
        }
    }
}

/// The method name of an IAM request under `/v1/projects/{p}/serviceAccounts`.
pub fn method(req: &ApiRequest) -> Option<&'static str> {
    let s = req.segs();
    let m = &req.method;
    let verb = req.verb.as_deref();
    Some(match (s.as_slice(), verb) {
        (["v1", "projects", _, "serviceAccounts"], None) if m == Method::POST => "iam.serviceAccounts.create",
        (["v1", "projects", _, "serviceAccounts"], None) if m == Method::GET => "iam.serviceAccounts.list",
        (["v1", "projects", _, "serviceAccounts", _], None) => match *m {
            Method::GET => "iam.serviceAccounts.get",
            Method::PATCH => "iam.serviceAccounts.patch",
            Method::PUT => "iam.serviceAccounts.update",
            Method::DELETE => "iam.serviceAccounts.delete",
            _ => return None,
        },
        (["v1", "projects", _, "serviceAccounts", _], Some(v)) if m == Method::POST => match v {
            "getIamPolicy" => "iam.serviceAccounts.getIamPolicy",
            "setIamPolicy" => "iam.serviceAccounts.setIamPolicy",
            "testIamPermissions" => "iam.serviceAccounts.testIamPermissions",
            "enable" => "iam.serviceAccounts.enable",
            "disable" => "iam.serviceAccounts.disable",
            _ => return None,
        },
        (["v1", "projects", _, "serviceAccounts", _, "keys"], None) if m == Method::POST => {
            "iam.serviceAccounts.keys.create"
        }
        (["v1", "projects", _, "serviceAccounts", _, "keys"], None) if m == Method::GET => {
            "iam.serviceAccounts.keys.list"
        }
        (["v1", "projects", _, "serviceAccounts", _, "keys", _], None) if m == Method::GET => {
            "iam.serviceAccounts.keys.get"
        }
        (["v1", "projects", _, "serviceAccounts", _, "keys", _], None) if m == Method::DELETE => {
            "iam.serviceAccounts.keys.delete"
        }
        _ => return None,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Unknown service account {id}"))
}

/// Finds the account named by `projects/{p|-}/serviceAccounts/{email|uniqueId}`.
fn find<'a>(st: &'a mut State, project: &str, id: &str, delay_ms: u64) -> Result<&'a mut ServiceAccount, ApiError> {
    let email = if st.iam.accounts.contains_key(id) {
        id.to_string()
    } else {
        st.iam
            .accounts
            .iter()
            .find(|(_, sa)| sa.resource["uniqueId"] == id)
            .map(|(e, _)| e.clone())
            .ok_or_else(|| not_found(id))?
    };
    let sa = st.iam.accounts.get_mut(&email).ok_or_else(|| not_found(id))?;
    if (project != "-" && sa.resource["projectId"] != project) || !sa.visible(delay_ms) {
        return Err(not_found(id));
    }
    Ok(sa)
}

fn valid_account_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Handles a request `method` recognised.
pub async fn handle(app: &Arc<App>, req: &ApiRequest, method: &str) -> Result<Value, ApiError> {
    let project = req.segments[2].clone();
    let delay = app.settings().sa_visibility_delay_ms;
    if method == "iam.serviceAccounts.keys.create" {
        return create_key(app, req, &project, delay).await;
    }
    let mut st = lock(&app.state);
    let st = &mut *st;
    let out =
        match method {
            "iam.serviceAccounts.create" => create(st, req, &project)?,
            "iam.serviceAccounts.list" => {
                let accounts: Vec<Value> = st
                    .iam
                    .accounts
                    .values()
                    .filter(|sa| sa.resource["projectId"] == project.as_str() && sa.visible(delay))
                    .map(|sa| sa.resource.clone())
                    .collect();
                // The `accounts` key is omitted when empty (contract §2).
                if accounts.is_empty() { json!({}) } else { json!({"accounts": accounts}) }
            }
            _ => {
                let id = req.segments[4].clone();
                let sa = find(st, &project, &id, delay)?;
                match method {
                    "iam.serviceAccounts.get" => sa.resource.clone(),
                    "iam.serviceAccounts.patch" | "iam.serviceAccounts.update" => {
                        let (patch, mask): (Value, Vec<String>) = if method.ends_with("patch") {
                            let mask = str_field(&req.body, "updateMask");
                            let patch = req.body.get("serviceAccount").cloned().unwrap_or(json!({}));
                            let mask = if mask.is_empty() {
                                patch.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
                            } else {
                                mask.split(',').map(|s| s.trim().to_string()).collect()
                            };
                            (patch, mask)
                        } else {
                            (req.body.clone(), vec!["displayName".into(), "description".into()])
                        };
                        for f in mask {
                            if !["displayName", "description"].contains(&f.as_str()) {
                                return Err(ApiError::field_violation(
                                    "update_mask",
                                    format!("Field {f} cannot be updated."),
                                ));
                            }
                            match patch.get(&f) {
                                Some(v) if !v.is_null() && v != "" => sa.resource[&f] = v.clone(),
                                _ => {
                                    if let Some(o) = sa.resource.as_object_mut() {
                                        o.remove(&f);
                                    }
                                }
                            }
                        }
                        sa.resource["etag"] = crate::util::new_etag().into();
                        sa.resource.clone()
                    }
                    "iam.serviceAccounts.enable" | "iam.serviceAccounts.disable" => {
                        sa.resource["disabled"] = method.ends_with("disable").into();
                        json!({})
                    }
                    "iam.serviceAccounts.getIamPolicy" => crate::policy::render(&sa.policy),
                    "iam.serviceAccounts.testIamPermissions" => {
                        let (policy, project) = (sa.policy.clone(), str_field(&sa.resource, "projectId").to_string());
                        crate::policy::test_permissions(&req.body, |p| {
                            crate::access::caller_holds(app, st, req.caller.as_deref(), &project, Some(&policy), p)
                        })
                    }
                    "iam.serviceAccounts.setIamPolicy" => {
                        let email = sa.resource["email"].as_str().unwrap_or("").to_string();
                        let mut policy = sa.policy.clone();
                        crate::policy::set(&mut policy, &req.body, |m| crate::policy::check_member(st, m, delay))?;
                        let out = crate::policy::render(&policy);
                        if let Some(sa) = st.iam.accounts.get_mut(&email) {
                            sa.policy = policy;
                        }
                        out
                    }
                    "iam.serviceAccounts.delete" => {
                        let email = sa.resource["email"].as_str().unwrap_or("").to_string();
                        st.iam.accounts.remove(&email);
                        json!({})
                    }
                    "iam.serviceAccounts.keys.list" => {
                        let types = req.query_all("keyTypes");
                        let keys: Vec<Value> = sa
                            .keys
                            .values()
                            .filter(|k| types.is_empty() || types.contains(&str_field(k, "keyType")))
                            .map(|k| {
                                let mut k = k.clone();
                                if let Some(o) = k.as_object_mut() {
                                    o.remove("publicKeyData");
                                }
                                k
                            })
                            .collect();
                        if keys.is_empty() { json!({}) } else { json!({"keys": keys}) }
                    }
                    "iam.serviceAccounts.keys.get" => sa.keys.get(&req.segments[6]).cloned().ok_or_else(|| {
                        ApiError::not_found(format!("Unknown service account key {}", req.segments[6]))
                    })?,
                    "iam.serviceAccounts.keys.delete" => {
                        sa.keys.remove(&req.segments[6]).ok_or_else(|| {
                            ApiError::not_found(format!("Unknown service account key {}", req.segments[6]))
                        })?;
                        json!({})
                    }
                    _ => return Err(ApiError::unimplemented(req.method.as_str(), &req.path)),
                }
            }
        };
    if req.method != Method::GET {
        app.persist(st);
    }
    Ok(out)
}

fn create(st: &mut State, req: &ApiRequest, project: &str) -> Result<Value, ApiError> {
    if project == "-" {
        return Err(ApiError::invalid_argument("A project id is required to create a service account."));
    }
    let account_id = str_field(&req.body, "accountId");
    if !valid_account_id(account_id) {
        return Err(ApiError::field_violation(
            "account_id",
            format!(
                "Invalid account ID {account_id:?}: it must be 6-30 characters, lowercase letters, digits and \
                 hyphens, start with a letter and not end with a hyphen ([a-z]([-a-z0-9]*[a-z0-9]))."
            ),
        ));
    }
    let email = format!("{account_id}@{project}.iam.gserviceaccount.com");
    let name = format!("projects/{project}/serviceAccounts/{email}");
    if st.iam.accounts.contains_key(&email) {
        return Err(ApiError::already_exists(format!(
            "Service account {account_id} already exists within project projects/{project}."
        ))
        .with_detail(json!({"@type": "type.googleapis.com/google.rpc.ResourceInfo", "resourceName": name})));
    }
    let unique_id = random_digits(21);
    let given = req.body.get("serviceAccount").cloned().unwrap_or(json!({}));
    let mut resource = json!({
        "name": name,
        "projectId": project,
        "uniqueId": unique_id,
        "email": email,
        "etag": crate::util::new_etag(),
        "oauth2ClientId": unique_id,
    });
    for f in ["displayName", "description"] {
        if let Some(v) = given.get(f).filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
            resource[f] = v.clone();
        }
    }
    st.iam.accounts.insert(
        email,
        ServiceAccount {
            resource: resource.clone(),
            created_ms: now_ms(),
            policy: Default::default(),
            keys: Default::default(),
        },
    );
    Ok(resource)
}

/// Creates a real RSA key (in a blocking task: generation is CPU-bound) and answers with the
/// credentials JSON file, base64-encoded, in `privateKeyData`. The private key is not kept.
async fn create_key(app: &Arc<App>, req: &ApiRequest, project: &str, delay: u64) -> Result<Value, ApiError> {
    let id = req.segments[4].clone();
    let (email, client_id, sa_project) = {
        let mut st = lock(&app.state);
        let sa = find(&mut st, project, &id, delay)?;
        (
            str_field(&sa.resource, "email").to_string(),
            str_field(&sa.resource, "uniqueId").to_string(),
            str_field(&sa.resource, "projectId").to_string(),
        )
    };
    let key_type = match str_field(&req.body, "privateKeyType") {
        "" | "TYPE_UNSPECIFIED" | "TYPE_GOOGLE_CREDENTIALS_FILE" => "TYPE_GOOGLE_CREDENTIALS_FILE",
        other => {
            return Err(ApiError::invalid_argument(format!(
                "gcp-emulator only creates TYPE_GOOGLE_CREDENTIALS_FILE keys, not {other}."
            )));
        }
    };
    let bits = app.config.rsa_key_bits;
    let (private_pem, public_pem) = tokio::task::spawn_blocking(move || -> Result<(String, String), String> {
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| e.to_string())?;
        let private = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string();
        let public = key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        Ok((private, public))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ApiError::internal)?;
    let key_id = random_hex(40);
    let encoded_email: String =
        percent_encoding::utf8_percent_encode(&email, percent_encoding::NON_ALPHANUMERIC).to_string();
    let credentials = json!({
        "type": "service_account",
        "project_id": sa_project,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        // The emulator's own token endpoint (`metadata::oauth`): real clients post the JWT there.
        "token_uri": format!("{}token", app.base_url),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{encoded_email}"),
        "universe_domain": "googleapis.com",
    });
    let algorithm = if bits >= 2048 { "KEY_ALG_RSA_2048" } else { "KEY_ALG_RSA_1024" };
    // publicKeyData: the real API gives an X.509 certificate PEM; the emulator gives the
    // SubjectPublicKeyInfo PEM (no certificate authority to sign one), base64-encoded likewise.
    let stored = json!({
        "name": format!("projects/{sa_project}/serviceAccounts/{email}/keys/{key_id}"),
        "validAfterTime": rfc3339(now_ms()),
        // Commonly observed for user-managed keys; not checked against a source (contract §2).
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": algorithm,
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
        "publicKeyData": b64(public_pem.as_bytes()),
    });
    let mut st = lock(&app.state);
    let sa = find(&mut st, project, &id, delay)?;
    sa.keys.insert(key_id, stored.clone());
    app.persist(&st);
    let mut out = stored;
    if let Some(o) = out.as_object_mut() {
        o.remove("publicKeyData");
    }
    out["privateKeyType"] = key_type.into();
    out["privateKeyData"] = b64(credentials.to_string().as_bytes()).into();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(valid_account_id("skypilot-cloud-sql-access"));
        assert!(!valid_account_id("short"));
        assert!(!valid_account_id("Upper-case-id"));
        assert!(!valid_account_id("trailing-hyphen-"));
        assert!(!valid_account_id("1starts-with-digit"));
    }
}
