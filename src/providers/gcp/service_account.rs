//! `gcp_service_account`.
//!
//! Idempotent: a create that meets ALREADY_EXISTS (a retry, or an account made
//! by hand) reads the account and converges its display name and description.
//! A new account can be invisible to reads for a while (eventual consistency):
//! reads and updates right after a create retry 404 for a bounded window.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::client::{Api, ApiError};
use super::{Gcp, jstr, live, project_attr, str_attr};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{ApplyAction, ApplyRequest, ApplyResponse, LiveObject, ProviderError, ReadRequest};
use crate::value::Value;

/// Schema.
pub fn schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_service_account",
        kind: SchemaKind::Resource,
        description: "A service account. Exports `email`, `member` (serviceAccount:<email>) and `sql_iam_user` \
                      (the Cloud SQL for PostgreSQL IAM user name: the email without .gserviceaccount.com).",
        attributes: vec![
            Attribute::required(
                "account_id",
                AttrType::String,
                "Account id (6-30 characters): the email's local part.",
            )
            .force_new()
            .rule(NameRule::GcpAccountId),
            Attribute::optional("display_name", AttrType::String, "Display name."),
            Attribute::optional("description", AttrType::String, "Description."),
            project_attr(),
            Attribute::computed("email", AttrType::String, "<account_id>@<project>.iam.gserviceaccount.com."),
            Attribute::computed("unique_id", AttrType::String, "Numeric unique id."),
            Attribute::computed("name", AttrType::String, "projects/<project>/serviceAccounts/<email>."),
            Attribute::computed("member", AttrType::String, "serviceAccount:<email>, for IAM members."),
            Attribute::computed(
                "sql_iam_user",
                AttrType::String,
                "The email without .gserviceaccount.com (Cloud SQL IAM user name).",
            ),
        ],
    }
}

fn email_of(g: &Gcp, config: &Value, identity: Option<&Value>) -> Option<String> {
    if let Some(e) = identity.and_then(Value::as_str) {
        return Some(e.to_string());
    }
    let cfg = config.unmarked();
    let id = str_attr(&cfg, "account_id")?;
    Some(format!("{id}@{}.iam.gserviceaccount.com", g.project_of(&cfg)))
}

/// The attributes of an account as the API returns it.
pub fn attrs_of(sa: &Json) -> BTreeMap<String, Value> {
    let email = sa["email"].as_str().unwrap_or_default().to_string();
    let account_id = email.split('@').next().unwrap_or_default().to_string();
    BTreeMap::from([
        ("account_id".to_string(), Value::str(account_id)),
        ("display_name".to_string(), jstr(sa, "/displayName")),
        ("description".to_string(), jstr(sa, "/description")),
        ("project".to_string(), jstr(sa, "/projectId")),
        ("email".to_string(), Value::str(&email)),
        ("unique_id".to_string(), jstr(sa, "/uniqueId")),
        ("name".to_string(), jstr(sa, "/name")),
        ("member".to_string(), Value::str(format!("serviceAccount:{email}"))),
        ("sql_iam_user".to_string(), Value::str(email.trim_end_matches(".gserviceaccount.com"))),
    ])
}

fn path(email: &str) -> String {
    format!("v1/projects/-/serviceAccounts/{email}")
}

/// Reads the account.
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    if req.identity.is_none() && req.config.get("account_id").is_some_and(Value::has_unknown) {
        return Ok(None);
    }
    let Some(email) = email_of(g, &req.config, req.identity.as_ref()) else { return Ok(None) };
    let Some(sa) = g.client.get_opt(Api::Iam, &path(&email)).await? else { return Ok(None) };
    let version = sa["etag"].as_str().map(str::to_string);
    Ok(Some(live(Value::str(&email), attrs_of(&sa), version)))
}

/// GET, retrying 404 for a bounded window (a just-created account).
async fn get_visible(g: &Gcp, email: &str) -> Result<Json, ApiError> {
    let until = Instant::now() + g.client.retry.consistency_window;
    let mut n = 0;
    loop {
        match g.client.get(Api::Iam, &path(email)).await {
            Err(e) if e.is_not_found() && Instant::now() < until => {
                tokio::time::sleep(g.client.retry.backoff(n.min(6))).await;
                n += 1;
            }
            r => return r,
        }
    }
}

/// Creates, updates or deletes the account.
pub async fn apply(g: &Gcp, req: &ApplyRequest) -> Result<ApplyResponse, ProviderError> {
    let cfg = req.config.unmarked();
    let email = email_of(g, &cfg, req.identity.as_ref())
        .ok_or_else(|| ProviderError::Permanent("account_id is required".into()))?;
    match req.action {
        ApplyAction::Delete => {
            match g.client.delete(Api::Iam, &path(&email)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            Ok(ApplyResponse::default())
        }
        ApplyAction::Create => {
            let project = g.project_of(&cfg);
            let account_id = str_attr(&cfg, "account_id").unwrap_or_default();
            let mut inner = json!({});
            for (k, f) in [("display_name", "displayName"), ("description", "description")] {
                if let Some(v) = str_attr(&cfg, k) {
                    inner[f] = json!(v);
                }
            }
            let body = json!({"accountId": account_id, "serviceAccount": inner});
            let sa = match g.client.post(Api::Iam, &format!("v1/projects/{project}/serviceAccounts"), &body).await {
                Ok(sa) => sa,
                Err(e) if e.is_already_exists() => {
                    let sa = get_visible(g, &email).await?;
                    converge(g, &email, &cfg, &sa).await?
                }
                Err(e) => return Err(e.into()),
            };
            Ok(g.response(&req.type_name, req, Value::str(&email), attrs_of(&sa)))
        }
        ApplyAction::Update => {
            let sa = get_visible(g, &email).await?;
            let sa = converge(g, &email, &cfg, &sa).await?;
            Ok(g.response(&req.type_name, req, Value::str(&email), attrs_of(&sa)))
        }
    }
}

/// Patches display name and description where they differ from the spec.
async fn converge(g: &Gcp, email: &str, cfg: &Value, sa: &Json) -> Result<Json, ProviderError> {
    let mut inner = json!({});
    let mut mask = Vec::new();
    for (k, f) in [("display_name", "displayName"), ("description", "description")] {
        let Some(want) = cfg.get(k).and_then(Value::as_str) else { continue };
        if sa[f].as_str().unwrap_or_default() != want {
            inner[f] = json!(want);
            mask.push(f);
        }
    }
    if mask.is_empty() {
        return Ok(sa.clone());
    }
    let body = json!({"serviceAccount": inner, "updateMask": mask.join(",")});
    Ok(g.client.patch(Api::Iam, &path(email), &body).await?)
}
