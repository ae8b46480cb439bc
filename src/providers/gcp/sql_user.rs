//! `gcp_sql_user`: a Cloud SQL user (built-in with a write-only password, or an
//! IAM user / service account).
//!
//! For `CLOUD_IAM_SERVICE_ACCOUNT` the PostgreSQL user name is the account's
//! email without `.gserviceaccount.com`; a full email is trimmed. The plan checks
//! what no other tool checks before a login fails: the instance needs the flag
//! `cloudsql.iam_authentication=on` and the account needs
//! `roles/cloudsql.instanceUser` on the project.
//!
//! Idempotent: a create that meets "already exists" adopts the user (and sets
//! its password when one is given).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::client::{Api, seg};
use super::policy::PolicyKey;
use super::sql_database::absent;
use super::sql_instance::{insert_child, mutate_and_wait, path as instance_path};
use super::{Gcp, Run, deadline, live, project_attr, str_attr};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, PlanRequest, PlanResponse, ProviderError,
    ReadRequest,
};
use crate::value::Value;

/// The role an IAM database user needs on the project.
pub const INSTANCE_USER_ROLE: &str = "roles/cloudsql.instanceUser";
/// The flag IAM database authentication needs.
pub const IAM_FLAG: &str = "cloudsql.iam_authentication";

/// Schema.
pub fn schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_sql_user",
        kind: SchemaKind::Resource,
        description: "A Cloud SQL user. For CLOUD_IAM_SERVICE_ACCOUNT the name may be the full email (it is \
                      trimmed to <sa>@<project>.iam as PostgreSQL needs), and the plan checks that the instance has \
                      cloudsql.iam_authentication=on and that the account has roles/cloudsql.instanceUser.",
        attributes: vec![
            Attribute::required("instance", AttrType::String, "The instance's name.")
                .force_new()
                .rule(NameRule::SqlInstance),
            Attribute::required("name", AttrType::String, "User name, or the IAM principal's email.")
                .force_new()
                .normalize(trim_name)
                .rule(NameRule::SqlObject),
            Attribute::optional(
                "type",
                AttrType::String,
                "BUILT_IN (default), CLOUD_IAM_SERVICE_ACCOUNT or CLOUD_IAM_USER.",
            )
            .default("BUILT_IN")
            .force_new(),
            Attribute::optional("password", AttrType::String, "Password of a BUILT_IN user (write-only).").write_only(),
            project_attr(),
        ],
    }
}

/// `sa@p.iam.gserviceaccount.com` → `sa@p.iam`.
pub fn trim_name(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => Value::str(s.trim_end_matches(".gserviceaccount.com")),
        None => v.clone(),
    }
}

fn ids(g: &Gcp, config: &Value, identity: Option<&Value>) -> Option<(String, String, String)> {
    if let Some(i) = identity.and_then(Value::as_str) {
        let mut it = i.splitn(3, '/');
        if let (Some(p), Some(inst), Some(n)) = (it.next(), it.next(), it.next()) {
            return Some((p.into(), inst.into(), n.into()));
        }
    }
    let name = str_attr(config, "name")?;
    let name = trim_name(&Value::str(name)).as_str().unwrap_or_default().to_string();
    Some((g.project_of(config), str_attr(config, "instance")?, name))
}

/// Reads the user.
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    if req.identity.is_none() && req.config.has_unknown() {
        return Ok(None);
    }
    let Some((project, instance, name)) = ids(g, &req.config.unmarked(), req.identity.as_ref()) else {
        return Ok(None);
    };
    let p = format!("{}/users/{}?host=", instance_path(&project, &instance), seg(&name));
    match g.client.get(Api::Sql, &p).await {
        Ok(u) => {
            let attrs = BTreeMap::from([
                ("instance".to_string(), Value::str(&instance)),
                ("name".to_string(), Value::str(&name)),
                ("type".to_string(), Value::str(u["type"].as_str().filter(|t| !t.is_empty()).unwrap_or("BUILT_IN"))),
                ("project".to_string(), Value::str(&project)),
            ]);
            Ok(Some(live(Value::str(format!("{project}/{instance}/{name}")), attrs, None)))
        }
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn user_exists(g: &Gcp, project: &str, instance: &str, name: &str) -> Result<bool, ProviderError> {
    let p = format!("{}/users/{}?host=", instance_path(project, instance), seg(name));
    match g.client.get(Api::Sql, &p).await {
        Ok(_) => Ok(true),
        Err(e) if absent(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The IAM checks.
pub async fn plan(g: &Gcp, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
    let mut resp = PlanResponse::default();
    let cfg = req.config.unmarked();
    let ty = str_attr(&cfg, "type").unwrap_or_else(|| "BUILT_IN".into());
    if !ty.starts_with("CLOUD_IAM") {
        return Ok(resp);
    }
    let Some(instance) = str_attr(&cfg, "instance") else { return Ok(resp) };
    // The name is unknown when the account is created in this run.
    let name = str_attr(&cfg, "name");
    let shown = name.clone().unwrap_or_else(|| "(known after apply)".into());
    let project = g.project_of(&cfg);
    if cfg.get("password").is_some() {
        resp.errors.push(format!("a {ty} user logs in with IAM, not a password: remove `password`"));
    }
    // 1. The instance flag, as planned (the instance is read before its users)
    //    or as live.
    let planned = g.seen.instances.lock().expect("seen").get(&(project.clone(), instance.clone())).cloned();
    let flag = match planned {
        Some((_, flags)) => flags.get(IAM_FLAG).cloned(),
        None => match g.client.get_opt(Api::Sql, &instance_path(&project, &instance)).await? {
            Some(inst) => inst
                .pointer("/settings/databaseFlags")
                .and_then(|f| f.as_array())
                .and_then(|fs| fs.iter().find(|f| f["name"] == IAM_FLAG))
                .and_then(|f| f["value"].as_str().map(str::to_string)),
            None => None,
        },
    };
    if flag.as_deref() != Some("on") {
        resp.errors.push(format!(
            "IAM user {shown:?} cannot log in: instance {instance:?} does not have the database flag {IAM_FLAG}=on. Add \
             database_flags = {{ \"{IAM_FLAG}\" = \"on\" }} to the instance."
        ));
    }
    // 2. roles/cloudsql.instanceUser for a service account.
    if ty == "CLOUD_IAM_SERVICE_ACCOUNT" {
        let member =
            name.map(|n| format!("serviceAccount:{}.gserviceaccount.com", n.trim_end_matches(".gserviceaccount.com")));
        if !has_role(g, &project, member.as_deref()).await? {
            resp.errors.push(format!(
                "IAM user {shown:?} cannot log in: its service account does not have {INSTANCE_USER_ROLE} on project \
                 {project}, live or in this spec. Add a gcp_project_iam_member granting it (and make this user depend \
                 on it)."
            ));
        }
    }
    Ok(resp)
}

/// Whether `member` (or, when unknown yet, anyone) has the role, live or
/// claimed by a member resource of this plan.
async fn has_role(g: &Gcp, project: &str, member: Option<&str>) -> Result<bool, ProviderError> {
    let seen = |g: &Gcp| {
        g.seen.project_members.lock().expect("seen").iter().any(|(p, r, m)| {
            (p == project || p == "*") && r == INSTANCE_USER_ROLE && (m == "*" || member.is_none_or(|x| x == m))
        })
    };
    if seen(g) {
        return Ok(true);
    }
    if let Some(p) = g.policies.read(&g.client, &PolicyKey::Project(project.to_string())).await? {
        let ok = match member {
            Some(m) => super::policy::has_member(&p, INSTANCE_USER_ROLE, m),
            None => !super::policy::members_of(&p, INSTANCE_USER_ROLE).is_empty(),
        };
        if ok {
            return Ok(true);
        }
    }
    // A member resource planned concurrently (not a dependency of this user)
    // may not have been read yet: give it a bounded moment.
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

/// How often, and how long, a delete refused because the user owns objects is tried again.
const OWNED_OBJECTS_POLL: Duration = Duration::from_secs(3);
const OWNED_OBJECTS_WAIT: Duration = Duration::from_secs(120);

/// Deletes the user. PostgreSQL refuses to drop a role that owns objects: the tables an application
/// made in a database of the instance. The same destroy usually deletes that database too, at the
/// same time; wait for it (outside the instance's lock, which that delete needs) before giving up.
async fn delete(
    run: &Run<'_>,
    req: &ApplyRequest,
    lock: &tokio::sync::Mutex<()>,
    project: &str,
    name: &str,
    by_query: &str,
) -> Result<ApplyResponse, ProviderError> {
    let give_up = (tokio::time::Instant::now() + OWNED_OBJECTS_WAIT).min(run.deadline);
    loop {
        let result = {
            let _guard = lock.lock().await;
            super::operation::resume(&run.g.client, &req.private, run.deadline).await?;
            mutate_and_wait(run, project, reqwest::Method::DELETE, by_query, None).await
        };
        match result {
            Ok(_) => return Ok(ApplyResponse::default()),
            Err(ProviderError::Permanent(m)) if m.contains("does not exist") => return Ok(ApplyResponse::default()),
            Err(ProviderError::Permanent(m)) if m.contains("objects depend on it") => {
                if tokio::time::Instant::now() + OWNED_OBJECTS_POLL >= give_up {
                    return Err(ProviderError::Permanent(format!(
                        "{m}: the user still owns objects in a database of the instance (the tables an application \
                         made); delete that database first, or drop them, or give them to another role (REASSIGN \
                         OWNED BY \"{name}\" TO ...)"
                    )));
                }
                tokio::time::sleep(OWNED_OBJECTS_POLL).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates, updates (password) or deletes the user.
pub async fn apply(g: &Gcp, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
    let cfg = req.config.unmarked();
    let (project, instance, name) = ids(g, &cfg, req.identity.as_ref())
        .ok_or_else(|| ProviderError::Permanent("instance and name are required".into()))?;
    let id = Value::str(format!("{project}/{instance}/{name}"));
    let base = format!("{}/users", instance_path(&project, &instance));
    let by_query = format!("{base}?name={}&host=", seg(&name));
    let dl = deadline(req);
    let lock = g.sql_lock(&project, &instance);
    if req.action == ApplyAction::Delete {
        let run = Run { g, cp, id: &id, deadline: dl };
        return delete(&run, req, &lock, &project, &name, &by_query).await;
    }
    let _guard = lock.lock().await;
    let run = Run { g, cp, id: &id, deadline: dl };
    let resumed = super::operation::resume(&g.client, &req.private, dl).await?;
    let password = cfg.get("password").and_then(Value::as_str).map(str::to_string);
    let set_password = |pw: String| {
        let body = json!({"name": name, "password": pw});
        let (run, project, by_query) = (&run, project.clone(), by_query.clone());
        async move { mutate_and_wait(run, &project, reqwest::Method::PUT, &by_query, Some(&body)).await }
    };
    if req.action == ApplyAction::Create {
        let ty = str_attr(&cfg, "type").unwrap_or_else(|| "BUILT_IN".into());
        let mut body = json!({"name": name, "host": "", "type": ty, "instance": instance, "project": project});
        if let Some(pw) = &password {
            body["password"] = json!(pw);
        }
        // An interrupted run's create that finished, a 409, or an operation
        // that failed because the role exists (ERROR_RDBMS `role "x" already
        // exists`): adopt it, and make its password the one in the spec.
        let exists = if resumed && user_exists(g, &project, &instance, &name).await? {
            true
        } else {
            insert_child(&run, &project, &base, &body).await?
        };
        if exists && let Some(pw) = password {
            set_password(pw).await?;
        }
    } else if req.changed.iter().any(|c| c == "password")
        && let Some(pw) = password
    {
        set_password(pw).await?;
    }
    let attrs = BTreeMap::from([
        ("instance".to_string(), Value::str(&instance)),
        ("name".to_string(), Value::str(&name)),
        ("type".to_string(), Value::str(str_attr(&cfg, "type").unwrap_or_else(|| "BUILT_IN".into()))),
        ("project".to_string(), Value::str(&project)),
    ]);
    Ok(g.response(&req.type_name, req, id, attrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_emails_are_trimmed() {
        assert_eq!(trim_name(&Value::str("sa@p.iam.gserviceaccount.com")), Value::str("sa@p.iam"));
        assert_eq!(trim_name(&Value::str("alice@example.com")), Value::str("alice@example.com"));
        assert_eq!(trim_name(&Value::str("sa@p.iam")), Value::str("sa@p.iam"));
    }
}
