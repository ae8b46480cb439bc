//! `gcp_project_iam_member` and `gcp_service_account_iam_member`: additive,
//! non-authoritative claims of one member in one role of a policy (see
//! [`super::policy`] for reading once and coalesced writes).
//!
//! Idempotent: adding a present member or removing an absent one writes
//! nothing; members skyform does not manage are never touched.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::Api;
use super::policy::{Delta, PolicyKey};
use super::{Gcp, live, project_attr, str_attr};
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{
    ApplyAction, ApplyRequest, ApplyResponse, LiveObject, PlanRequest, PlanResponse, ProviderError, ReadRequest,
};
use crate::value::Value;

/// Schema of `gcp_project_iam_member`.
pub fn project_schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_project_iam_member",
        kind: SchemaKind::Resource,
        description: "Grants one role to one member on the project, additively (like google_project_iam_member): \
                      other members of the role are left alone. The project policy is read once per plan however \
                      many members refer to it, and all member changes of one apply go in one read-modify-write.",
        attributes: vec![
            Attribute::required("role", AttrType::String, "Role, e.g. roles/cloudsql.client.").force_new(),
            Attribute::required(
                "member",
                AttrType::String,
                "Member, e.g. serviceAccount:sa@p.iam.gserviceaccount.com.",
            )
            .force_new(),
            project_attr(),
        ],
    }
}

/// Schema of `gcp_service_account_iam_member`.
pub fn service_account_schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_service_account_iam_member",
        kind: SchemaKind::Resource,
        description: "Grants one role to one member on a service account's own policy, additively, e.g. the \
                      Workload Identity binding roles/iam.workloadIdentityUser for \
                      serviceAccount:<project>.svc.id.goog[<namespace>/<ksa>]. A Workload Identity member is \
                      checked at plan time against the GKE clusters: one with that workload pool must exist or \
                      be planned.",
        attributes: vec![
            Attribute::required(
                "service_account",
                AttrType::String,
                "The service account: email or projects/…/serviceAccounts/<email>.",
            )
            .force_new()
            .normalize(normalize_sa),
            Attribute::required("role", AttrType::String, "Role, e.g. roles/iam.workloadIdentityUser.").force_new(),
            Attribute::required("member", AttrType::String, "Member.").force_new(),
            project_attr(),
        ],
    }
}

/// `projects/p/serviceAccounts/e` → `e`.
pub fn normalize_sa(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => Value::str(sa_email(s)),
        None => v.clone(),
    }
}

/// The email of a service account given as email or resource name.
pub fn sa_email(s: &str) -> String {
    s.rsplit_once("serviceAccounts/").map(|(_, e)| e).unwrap_or(s).to_string()
}

struct Target {
    key: PolicyKey,
    role: String,
    member: String,
    project: String,
    sa: Option<String>,
}

fn target(g: &Gcp, type_name: &str, config: &Value) -> Option<Target> {
    let cfg = config.unmarked();
    let role = str_attr(&cfg, "role")?;
    let member = str_attr(&cfg, "member")?;
    let project = g.project_of(&cfg);
    if type_name == "gcp_project_iam_member" {
        Some(Target { key: PolicyKey::Project(project.clone()), role, member, project, sa: None })
    } else {
        let sa = sa_email(&str_attr(&cfg, "service_account")?);
        Some(Target { key: PolicyKey::ServiceAccount(sa.clone()), role, member, project, sa: Some(sa) })
    }
}

fn attrs(t: &Target) -> BTreeMap<String, Value> {
    let mut a = BTreeMap::from([
        ("role".to_string(), Value::str(&t.role)),
        ("member".to_string(), Value::str(&t.member)),
        ("project".to_string(), Value::str(&t.project)),
    ]);
    if let Some(sa) = &t.sa {
        a.insert("service_account".into(), Value::str(sa));
    }
    a
}

fn identity(t: &Target) -> Value {
    let on = match &t.key {
        PolicyKey::Project(p) => format!("projects/{p}"),
        PolicyKey::ServiceAccount(e) => format!("serviceAccounts/{e}"),
    };
    Value::str(format!("{on} {} {}", t.role, t.member))
}

/// Reads the member from its policy (read once per plan).
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    if req.type_name == "gcp_project_iam_member" {
        // Remember the claim for the plan-time checks of IAM database users
        // (a member still unknown, e.g. of an account created in this run,
        // counts as a claim of the role by someone).
        let cfg = req.config.unmarked();
        if let Some(role) = cfg.get("role").and_then(Value::as_str) {
            let member = cfg.get("member").and_then(Value::as_str).unwrap_or("*").to_string();
            let project =
                if cfg.get("project").is_some_and(Value::has_unknown) { "*".into() } else { g.project_of(&cfg) };
            g.seen.project_members.lock().expect("seen").insert((project, role.to_string(), member));
            g.seen.changed.notify_waiters();
        }
    }
    if req.config.has_unknown() && req.identity.is_none() {
        return Ok(None);
    }
    // The claim in state first: a changed role or member must show as a
    // replacement of the old claim, not as a new one next to it.
    let Some(t) =
        from_identity(g, &req.type_name, req.identity.as_ref()).or_else(|| target(g, &req.type_name, &req.config))
    else {
        return Ok(None);
    };
    let Some(policy) = g.policies.read(&g.client, &t.key).await? else { return Ok(None) };
    if !super::policy::has_member(&policy, &t.role, &t.member) {
        return Ok(None);
    }
    // The version is the claim itself, not the policy etag: other members'
    // changes must not make this resource's saved plan stale.
    Ok(Some(live(identity(&t), attrs(&t), Some("present".into()))))
}

fn from_identity(g: &Gcp, type_name: &str, identity: Option<&Value>) -> Option<Target> {
    let id = identity?.as_str()?;
    let mut parts = id.splitn(3, ' ');
    let (on, role, member) = (parts.next()?, parts.next()?, parts.next()?);
    let (role, member) = (role.to_string(), member.to_string());
    if type_name == "gcp_project_iam_member" {
        let p = on.strip_prefix("projects/")?.to_string();
        Some(Target { key: PolicyKey::Project(p.clone()), role, member, project: p, sa: None })
    } else {
        let e = on.strip_prefix("serviceAccounts/")?.to_string();
        Some(Target {
            key: PolicyKey::ServiceAccount(e.clone()),
            role,
            member,
            project: g.project.clone(),
            sa: Some(e),
        })
    }
}

/// Adds or removes the member (coalesced per policy).
pub async fn apply(g: &Gcp, req: &ApplyRequest) -> Result<ApplyResponse, ProviderError> {
    let t = match req.action {
        ApplyAction::Delete => {
            from_identity(g, &req.type_name, req.identity.as_ref()).or_else(|| target(g, &req.type_name, &req.config))
        }
        _ => target(g, &req.type_name, &req.config),
    }
    .ok_or_else(|| ProviderError::Permanent("role and member are required".into()))?;
    let add = req.action != ApplyAction::Delete;
    g.policies.change(&g.client, &t.key, Delta { role: t.role.clone(), member: t.member.clone(), add }).await?;
    if !add {
        return Ok(ApplyResponse::default());
    }
    Ok(g.response(&req.type_name, req, identity(&t), attrs(&t)))
}

/// The Workload Identity check: a member `serviceAccount:<p>.svc.id.goog[ns/ksa]`
/// needs a GKE cluster with workload pool `<p>.svc.id.goog`, live or planned.
pub async fn plan(g: &Gcp, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
    let mut resp = PlanResponse::default();
    let member = req.config.get("member").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(pool_project) =
        member.strip_prefix("serviceAccount:").and_then(|m| m.split_once(".svc.id.goog[")).map(|(p, _)| p.to_string())
    else {
        return Ok(resp);
    };
    if has_pool_cluster(g, &pool_project).await? {
        return Ok(resp);
    }
    resp.errors.push(format!(
        "Workload Identity member {member} needs a GKE cluster with workload pool {pool_project}.svc.id.goog, and no \
         cluster in project {pool_project} has one or is planned with `workload_identity = true` (the binding would \
         fail with \"Identity Pool does not exist\"). Create the cluster with workload_identity = true and make this \
         binding depend on it (depends_on)."
    ));
    Ok(resp)
}

async fn has_pool_cluster(g: &Gcp, project: &str) -> Result<bool, ProviderError> {
    let seen = |g: &Gcp| g.seen.clusters.lock().expect("seen").iter().any(|(p, _, pool)| p == project && *pool);
    if seen(g) {
        return Ok(true);
    }
    let list = g.client.get(Api::Container, &format!("v1/projects/{project}/locations/-/clusters")).await?;
    let live_pool = list["clusters"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c.pointer("/workloadIdentityConfig/workloadPool").and_then(|p| p.as_str()).is_some_and(|p| !p.is_empty())
        })
    });
    if live_pool {
        return Ok(true);
    }
    // A cluster in the spec that does not depend on this binding may be planned
    // concurrently: give it a bounded moment to be seen.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        let notified = g.seen.changed.notified();
        if seen(g) {
            return Ok(true);
        }
        let _ = tokio::time::timeout_at(until, notified).await;
    }
    Ok(seen(g))
}
