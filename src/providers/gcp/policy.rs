//! IAM policies are shared objects: many `*_iam_member` resources make small
//! claims on one project or service-account policy.
//!
//! - Reading: [`Policies::read`] fetches each policy once per provider instance
//!   (the engine configures one instance per plan), however many members refer
//!   to it.
//! - Writing: [`Policies::change`] queues a member delta on its policy. The first
//!   caller becomes the writer: after a short gathering window it takes every
//!   queued delta and applies them in one read-modify-write with the etag,
//!   re-reading and re-applying the same deltas on 409 ABORTED (concurrent
//!   change). Deltas that arrive meanwhile form the next batch. Only the
//!   queued members are touched: members skyform does not manage are never
//!   removed.
//! - Eventual consistency: a service account created moments ago may be
//!   unknown to the policy API for a while ("Service account X does not exist",
//!   404 on its own policy); those errors are retried with backoff for a bounded
//!   window, never with fixed sleeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::sync::{OnceCell, oneshot};
use tokio::time::Instant;

use super::client::{Api, ApiError, Client};
use crate::providers::ProviderError;

/// Which policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicyKey {
    /// A project's policy (Resource Manager).
    Project(String),
    /// A service account's policy (IAM), by email.
    ServiceAccount(String),
}

impl PolicyKey {
    fn path(&self, verb: &str) -> (Api, String) {
        match self {
            PolicyKey::Project(p) => (Api::Crm, format!("v1/projects/{p}:{verb}")),
            PolicyKey::ServiceAccount(e) => (Api::Iam, format!("v1/projects/-/serviceAccounts/{e}:{verb}")),
        }
    }
}

/// One member change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// `roles/…`.
    pub role: String,
    /// `serviceAccount:…`, `user:…`, …
    pub member: String,
    /// Add (true) or remove (false).
    pub add: bool,
}

type Waiter = oneshot::Sender<Result<(), ProviderError>>;

#[derive(Default)]
struct Queue {
    pending: Vec<(Delta, Waiter)>,
    running: bool,
}

/// The policies of one provider instance.
#[derive(Default)]
pub struct Policies {
    cache: Mutex<HashMap<PolicyKey, Arc<OnceCell<Option<Json>>>>>,
    queues: Mutex<HashMap<PolicyKey, Queue>>,
}

/// How long deltas are gathered before the first write of a policy.
const GATHER: Duration = Duration::from_millis(20);

impl Policies {
    /// The policy, read at most once per provider instance. `None`: the
    /// service account does not exist (yet).
    pub async fn read(&self, c: &Client, key: &PolicyKey) -> Result<Option<Json>, ProviderError> {
        let cell = self.cache.lock().expect("policy cache").entry(key.clone()).or_default().clone();
        cell.get_or_try_init(|| async {
            match get(c, key).await {
                Ok(p) => Ok(Some(p)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(ProviderError::from(e)),
            }
        })
        .await
        .cloned()
    }

    /// Applies `delta` to the policy, coalesced with concurrent deltas on the
    /// same policy. Idempotent: adding a present member or removing an absent
    /// one writes nothing.
    pub async fn change(&self, c: &Client, key: &PolicyKey, delta: Delta) -> Result<(), ProviderError> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut qs = self.queues.lock().expect("policy queues");
            let q = qs.entry(key.clone()).or_default();
            q.pending.push((delta, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if lead {
            tokio::time::sleep(GATHER).await;
            loop {
                let batch = {
                    let mut qs = self.queues.lock().expect("policy queues");
                    let q = qs.get_mut(key).expect("queue exists");
                    if q.pending.is_empty() {
                        q.running = false;
                        break;
                    }
                    std::mem::take(&mut q.pending)
                };
                let deltas: Vec<Delta> = batch.iter().map(|(d, _)| d.clone()).collect();
                let result = rmw_batch(c, key, &deltas).await;
                for ((_, w), r) in batch.into_iter().zip(result) {
                    let _ = w.send(r);
                }
                // The cache (if any) no longer reflects the policy.
                self.cache.lock().expect("policy cache").remove(key);
            }
        }
        rx.await.unwrap_or(Err(ProviderError::Cancelled))
    }
}

/// Whether `policy` has `member` in the unconditional binding of `role`.
pub fn has_member(policy: &Json, role: &str, member: &str) -> bool {
    bindings(policy).iter().any(|b| {
        b["role"] == role && b.get("condition").is_none_or(Json::is_null) && members(b).iter().any(|m| m == member)
    })
}

/// Every member of `role` (unconditional bindings).
pub fn members_of(policy: &Json, role: &str) -> Vec<String> {
    bindings(policy)
        .iter()
        .filter(|b| b["role"] == role && b.get("condition").is_none_or(Json::is_null))
        .flat_map(members)
        .collect()
}

fn bindings(policy: &Json) -> Vec<Json> {
    policy["bindings"].as_array().cloned().unwrap_or_default()
}

fn members(b: &Json) -> Vec<String> {
    b["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Applies deltas to a policy; returns whether anything changed. A policy that is not a JSON
/// object (which [`get`] refuses as an answer) is taken as an empty one.
pub fn apply_deltas(policy: &mut Json, deltas: &[Delta]) -> bool {
    if !policy.is_object() {
        *policy = json!({});
    }
    let mut bs = bindings(policy);
    let mut changed = false;
    for d in deltas {
        let idx = bs.iter().position(|b| b["role"] == d.role.as_str() && b.get("condition").is_none_or(Json::is_null));
        match (d.add, idx) {
            (true, Some(i)) => {
                let mut ms = members(&bs[i]);
                if !ms.contains(&d.member) {
                    ms.push(d.member.clone());
                    bs[i]["members"] = json!(ms);
                    changed = true;
                }
            }
            (true, None) => {
                bs.push(json!({"role": d.role, "members": [d.member]}));
                changed = true;
            }
            (false, Some(i)) => {
                let ms = members(&bs[i]);
                if ms.contains(&d.member) {
                    bs[i]["members"] = json!(ms.into_iter().filter(|m| m != &d.member).collect::<Vec<_>>());
                    changed = true;
                }
            }
            (false, None) => {}
        }
    }
    bs.retain(|b| !members(b).is_empty());
    policy["bindings"] = json!(bs);
    changed
}

/// Reads a policy at version 3, as each API's discovery document says to ask for it: Resource
/// Manager v1 takes a `GetIamPolicyRequest` body (`body: "*"`, no query parameters); IAM's
/// `serviceAccounts.getIamPolicy` takes no body, only the `options.requestedPolicyVersion` query
/// parameter.
///
/// An answer that is not a JSON object is not a policy: it is refused (as a 502, like an answer
/// that is not JSON), never read as one.
async fn get(c: &Client, key: &PolicyKey) -> Result<Json, ApiError> {
    let (api, path) = key.path("getIamPolicy");
    let policy = match key {
        PolicyKey::Project(_) => c.post(api, &path, &json!({"options": {"requestedPolicyVersion": 3}})).await,
        PolicyKey::ServiceAccount(_) => {
            c.post(api, &format!("{path}?options.requestedPolicyVersion=3"), &json!({})).await
        }
    }?;
    if !policy.is_object() {
        return Err(ApiError {
            status: 502,
            message: format!("unexpected answer to {path}: not an IAM policy object"),
            ..Default::default()
        });
    }
    Ok(policy)
}

/// "Just created, not visible yet" errors.
fn not_visible_yet(e: &ApiError) -> bool {
    (e.status == 400 && (e.message.contains("does not exist") || e.message.contains("Identity Pool")))
        || e.status == 404
}

/// One read-modify-write for the whole batch; if the API refuses the batch for
/// good and it holds several deltas, each delta is tried alone so that one bad
/// member does not fail the others.
async fn rmw_batch(c: &Client, key: &PolicyKey, deltas: &[Delta]) -> Vec<Result<(), ProviderError>> {
    match rmw(c, key, deltas).await {
        Ok(()) => deltas.iter().map(|_| Ok(())).collect(),
        Err(e) if deltas.len() > 1 && matches!(e, ProviderError::Permanent(_)) => {
            let mut out = Vec::new();
            for d in deltas {
                out.push(rmw(c, key, std::slice::from_ref(d)).await);
            }
            out
        }
        Err(e) => deltas.iter().map(|_| Err(e.clone())).collect(),
    }
}

async fn rmw(c: &Client, key: &PolicyKey, deltas: &[Delta]) -> Result<(), ProviderError> {
    let window_end = Instant::now() + c.retry.consistency_window;
    let mut conflicts = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match get(c, key).await {
            Ok(mut policy) => {
                if !apply_deltas(&mut policy, deltas) {
                    return Ok(());
                }
                let conditional = bindings(&policy).iter().any(|b| b.get("condition").is_some_and(|x| !x.is_null()));
                if conditional {
                    policy["version"] = json!(3);
                }
                let (api, path) = key.path("setIamPolicy");
                match c.post(api, &path, &json!({"policy": policy, "updateMask": "bindings,etag"})).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let retry = if err.status == 409 && (err.rpc == "ABORTED" || err.reason == "aborted") {
            conflicts += 1;
            conflicts <= 10
        } else {
            not_visible_yet(&err) && Instant::now() < window_end
        };
        if !retry {
            return Err(err.into());
        }
        tokio::time::sleep(c.retry.backoff(attempt.min(6))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_touch_only_their_members() {
        let mut p = json!({"etag": "x", "bindings": [
            {"role": "roles/a", "members": ["user:other@x.com", "user:me@x.com"]},
            {"role": "roles/a", "members": ["user:c@x.com"], "condition": {"expression": "true"}},
        ]});
        let rm = Delta { role: "roles/a".into(), member: "user:me@x.com".into(), add: false };
        let add = Delta { role: "roles/b".into(), member: "user:me@x.com".into(), add: true };
        assert!(apply_deltas(&mut p, &[rm.clone(), add.clone()]));
        assert!(!has_member(&p, "roles/a", "user:me@x.com"));
        assert!(has_member(&p, "roles/a", "user:other@x.com"));
        assert!(has_member(&p, "roles/b", "user:me@x.com"));
        assert_eq!(p["bindings"].as_array().unwrap().len(), 3);
        assert!(!apply_deltas(&mut p, &[rm, add]), "idempotent");
    }
}
