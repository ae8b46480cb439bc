//! `gcp_service_account_key`: a user-managed key. Its private key exists only
//! in the create response: it is handed to the engine in memory (sensitive) for
//! the resources that consume it in the same apply, and never returned by a
//! read, so state holds only the key's name and a keyed fingerprint. When a
//! consumer no longer holds the key, the engine plans a new key by itself.
//!
//! Not adoptable (a key made elsewhere has no private key we could know). A
//! create is recorded as pending in state before its POST, with the account's
//! keys before it, and again with the new key's name once known: a run that
//! crashed in between leaves a key whose private key is lost, which the next
//! create deletes before making the one it keeps (one key per resource).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::client::{Api, ApiError};
use super::iam_member::{normalize_sa, sa_email};
use super::{Gcp, jstr, live, project_attr, str_attr};
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::foundation::time::rfc3339_secs;
use crate::providers::{ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, ProviderError, ReadRequest};
use crate::value::Value;

/// Schema.
pub fn schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_service_account_key",
        kind: SchemaKind::Resource,
        description: "A service-account key. `private_key_json` (the credentials file) is sensitive, exists only \
                      when the key is created, and never reaches state: state keeps the key name and a keyed \
                      fingerprint. With `rotation_days`, a key older than that is replaced by the next plan.",
        attributes: vec![
            Attribute::required(
                "service_account",
                AttrType::String,
                "The account: email or projects/…/serviceAccounts/<email>.",
            )
            .force_new()
            .normalize(normalize_sa),
            Attribute::optional("rotation_days", AttrType::Number, "Replace the key once it is this many days old.")
                .force_new(),
            project_attr(),
            Attribute::computed("key_id", AttrType::String, "The key id."),
            Attribute::computed("name", AttrType::String, "projects/<p>/serviceAccounts/<email>/keys/<key_id>."),
            Attribute::computed("valid_after", AttrType::String, "Creation time (RFC 3339)."),
            Attribute::computed(
                "private_key_json",
                AttrType::String,
                "The credentials JSON file (sensitive; only at creation).",
            )
            .sensitive(),
        ],
    }
}

fn attrs_of(key: &Json, project: &str) -> BTreeMap<String, Value> {
    let name = key["name"].as_str().unwrap_or_default();
    let email = name.split("/serviceAccounts/").nth(1).and_then(|r| r.split("/keys/").next()).unwrap_or_default();
    BTreeMap::from([
        ("service_account".to_string(), Value::str(email)),
        ("key_id".to_string(), Value::str(name.rsplit('/').next().unwrap_or_default())),
        ("name".to_string(), Value::str(name)),
        ("valid_after".to_string(), jstr(key, "/validAfterTime")),
        ("project".to_string(), Value::str(project)),
    ])
}

/// Reads the key by its name (from state). Keys are never adopted.
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    let Some(name) = req.identity.as_ref().and_then(Value::as_str) else { return Ok(None) };
    let Some(key) = g.client.get_opt(Api::Iam, &format!("v1/{name}")).await? else { return Ok(None) };
    if key["disabled"] == json!(true) {
        return Ok(None);
    }
    let project = g.project_of(&req.config);
    let mut attrs = attrs_of(&key, &project);
    if let Some(days) = req.config.get("rotation_days").and_then(Value::as_i64) {
        let created = key["validAfterTime"].as_str().and_then(rfc3339_secs).unwrap_or(i64::MAX);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let v = if created != i64::MAX && now - created >= days * 86_400 {
            Value::str(format!("expired (created {})", key["validAfterTime"].as_str().unwrap_or("?")))
        } else {
            Value::Int(days)
        };
        attrs.insert("rotation_days".into(), v);
    }
    Ok(Some(live(Value::str(name), attrs, None)))
}

/// Creates or deletes the key.
pub async fn apply(g: &Gcp, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
    let cfg = req.config.unmarked();
    let project = g.project_of(&cfg);
    match req.action {
        ApplyAction::Delete => {
            let name = req.identity.as_ref().and_then(Value::as_str).unwrap_or_default();
            if !name.is_empty() {
                match g.client.delete(Api::Iam, &format!("v1/{name}")).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(ApplyResponse::default())
        }
        ApplyAction::Update => {
            // Every input forces replacement: nothing to update in place.
            let name = req.identity.as_ref().and_then(Value::as_str).unwrap_or_default().to_string();
            let key = g.client.get(Api::Iam, &format!("v1/{name}")).await?;
            Ok(g.response(&req.type_name, req, Value::str(name), attrs_of(&key, &project)))
        }
        ApplyAction::Create => {
            let sa = sa_email(&str_attr(&cfg, "service_account").unwrap_or_default());
            let path = format!("v1/projects/-/serviceAccounts/{sa}/keys");
            let body = json!({"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": "KEY_ALG_RSA_2048"});
            // One key create at a time per account in this process, so that the
            // keys listed before a create are exactly those that are not ours.
            let lock = g.keyed_lock("keys", &sa);
            let _guard = lock.lock().await;
            // A just-created account may not be visible yet: retry 404 for a bounded window.
            let until = Instant::now() + g.client.retry.consistency_window;
            let mut n = 0;
            let key = loop {
                let attempt = async {
                    remove_interrupted(g, &sa, &req.private).await?;
                    let before: Vec<String> = user_keys(g, &sa).await?.into_iter().map(|(n, _)| n).collect();
                    // Recorded before the request: a crash after the key exists
                    // but before its name is known still lets the next run find
                    // it (a key not among these, made within minutes of now)
                    // and delete it.
                    cp.pending(&Value::Null, &interrupted_private(&before, None));
                    g.client.post(Api::Iam, &path, &body).await
                };
                match attempt.await {
                    Err(e) if e.is_not_found() && Instant::now() < until => {
                        tokio::time::sleep(g.client.retry.backoff(n.min(6))).await;
                        n += 1;
                    }
                    r => break r?,
                }
            };
            let name = key["name"].as_str().unwrap_or_default().to_string();
            cp.pending(&Value::str(&name), &interrupted_private(&[], Some(&name)));
            let mut attrs = attrs_of(&key, &project);
            let data = key["privateKeyData"].as_str().unwrap_or_default();
            let json = base64::engine::general_purpose::STANDARD
                .decode(data)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ProviderError::Permanent("the key's privateKeyData is not base64 text".into()))?;
            attrs.insert("private_key_json".into(), Value::str(json).sensitive());
            let name = attrs["name"].clone();
            if let Some(d) = cfg.get("rotation_days") {
                attrs.insert("rotation_days".into(), d.clone());
            }
            Ok(g.response(&req.type_name, req, name, attrs))
        }
    }
}

/// The private record of a key create in flight: the account's user-managed
/// keys before it, and the new key's name once the API returned it.
fn interrupted_private(before: &[String], created: Option<&str>) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut m =
        vec![("keys_before", Value::List(before.iter().map(Value::str).collect())), ("started", Value::Int(now))];
    if let Some(c) = created {
        m.push(("created", Value::str(c)));
    }
    Value::map([("key_create", Value::map(m))])
}

/// The account's user-managed keys: (name, creation time in seconds, if given).
async fn user_keys(g: &Gcp, sa: &str) -> Result<Vec<(String, Option<i64>)>, ApiError> {
    let list =
        g.client.get(Api::Iam, &format!("v1/projects/-/serviceAccounts/{sa}/keys?keyTypes=USER_MANAGED")).await?;
    Ok(list["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .filter_map(|k| {
                    let name = k["name"].as_str()?.to_string();
                    Some((name, k["validAfterTime"].as_str().and_then(rfc3339_secs)))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// How far from the recorded start of an interrupted create a key may have
/// been made and still be taken for its orphan (clock skew, a slow request).
const ORPHAN_WINDOW_SECS: i64 = 600;

/// Deletes what a create interrupted by a crash made: a key whose private key
/// was never kept is useless and must not stay valid. Idempotent: a key that is
/// gone already is fine.
async fn remove_interrupted(g: &Gcp, sa: &str, private: &Value) -> Result<(), ApiError> {
    let Some(rec) = private.get("key_create") else { return Ok(()) };
    let orphans: Vec<String> = match rec.get("created").and_then(Value::as_str) {
        Some(name) => vec![name.to_string()],
        None => {
            // Keys made since, near the recorded start: another key made on
            // the account much later (by a person, another state) is not ours.
            let before: Vec<&str> = rec
                .get("keys_before")
                .and_then(Value::as_list)
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let started = rec.get("started").and_then(Value::as_i64);
            user_keys(g, sa)
                .await?
                .into_iter()
                .filter(|(k, _)| !before.contains(&k.as_str()))
                .filter(|(_, made)| match (started, made) {
                    (Some(s), Some(m)) => (m - s).abs() <= ORPHAN_WINDOW_SECS,
                    _ => true,
                })
                .map(|(k, _)| k)
                .collect()
        }
    };
    for name in orphans {
        match g.client.delete(Api::Iam, &format!("v1/{name}")).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
