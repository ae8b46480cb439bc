//! `gcp_sql_database`: a database of a Cloud SQL instance.
//!
//! Idempotent: a create that meets "already exists" reads the database and
//! adopts it when its charset and collation match. Mutations go through the
//! instance's lock and retry `operationInProgress` (see [`super::sql_instance`]).

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::client::{Api, ApiError, seg};
use super::sql_instance::{insert_child, mutate_and_wait, path as instance_path};
use super::{Gcp, Run, deadline, jstr, live, project_attr, str_attr};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, ProviderError, ReadRequest};
use crate::value::Value;

/// Schema.
pub fn schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_sql_database",
        kind: SchemaKind::Resource,
        description: "A database in a Cloud SQL instance. Changes on one instance are serialized with the \
                      instance's other operations.",
        attributes: vec![
            Attribute::required("instance", AttrType::String, "The instance's name.")
                .force_new()
                .rule(NameRule::SqlInstance),
            Attribute::required("name", AttrType::String, "Database name.").force_new().rule(NameRule::SqlObject),
            Attribute::optional("charset", AttrType::String, "Character set (PostgreSQL default UTF8).")
                .also_computed()
                .force_new(),
            Attribute::optional("collation", AttrType::String, "Collation (PostgreSQL default en_US.UTF8).")
                .also_computed()
                .force_new(),
            project_attr(),
            Attribute::computed("self_link", AttrType::String, "API URL of the database."),
        ],
    }
}

fn ids(g: &Gcp, config: &Value, identity: Option<&Value>) -> Option<(String, String, String)> {
    if let Some(i) = identity.and_then(Value::as_str) {
        let mut it = i.splitn(3, '/');
        if let (Some(p), Some(inst), Some(n)) = (it.next(), it.next(), it.next()) {
            return Some((p.into(), inst.into(), n.into()));
        }
    }
    Some((g.project_of(config), str_attr(config, "instance")?, str_attr(config, "name")?))
}

fn attrs_of(d: &Json, project: &str, instance: &str) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("instance".to_string(), Value::str(instance)),
        ("name".to_string(), jstr(d, "/name")),
        ("charset".to_string(), jstr(d, "/charset")),
        ("collation".to_string(), jstr(d, "/collation")),
        ("project".to_string(), Value::str(project)),
        ("self_link".to_string(), jstr(d, "/selfLink")),
    ])
}

/// 404, or the instance not running (still being created): absent.
pub fn absent(e: &ApiError) -> bool {
    e.is_not_found() || (e.status == 400 && e.message.contains("not running"))
}

/// Reads the database.
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    if req.identity.is_none() && req.config.has_unknown() {
        return Ok(None);
    }
    let Some((project, instance, name)) = ids(g, &req.config, req.identity.as_ref()) else { return Ok(None) };
    match g.client.get(Api::Sql, &format!("{}/databases/{}", instance_path(&project, &instance), seg(&name))).await {
        Ok(d) => {
            Ok(Some(live(Value::str(format!("{project}/{instance}/{name}")), attrs_of(&d, &project, &instance), None)))
        }
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn get_opt(g: &Gcp, base: &str, name: &str) -> Result<Option<Json>, ProviderError> {
    match g.client.get(Api::Sql, &format!("{base}/{}", seg(name))).await {
        Ok(d) => Ok(Some(d)),
        Err(e) if absent(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates or deletes the database.
pub async fn apply(g: &Gcp, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
    let cfg = req.config.unmarked();
    let (project, instance, name) = ids(g, &cfg, req.identity.as_ref())
        .ok_or_else(|| ProviderError::Permanent("instance and name are required".into()))?;
    let id = Value::str(format!("{project}/{instance}/{name}"));
    let base = format!("{}/databases", instance_path(&project, &instance));
    let dl = deadline(req);
    let lock = g.sql_lock(&project, &instance);
    let _guard = lock.lock().await;
    let run = Run { g, cp, id: &id, deadline: dl };
    let resumed = super::operation::resume(&g.client, &req.private, dl).await?;
    match req.action {
        ApplyAction::Delete => {
            match mutate_and_wait(&run, &project, reqwest::Method::DELETE, &format!("{base}/{}", seg(&name)), None)
                .await
            {
                Ok(_) => {}
                Err(ProviderError::Permanent(m)) if m.contains("does not exist") => {}
                Err(e) => return Err(e),
            }
            return Ok(ApplyResponse::default());
        }
        ApplyAction::Create => {
            let mut body = json!({"name": name, "instance": instance, "project": project});
            for k in ["charset", "collation"] {
                if let Some(v) = str_attr(&cfg, k) {
                    body[k] = json!(v);
                }
            }
            // An interrupted run's create that finished, a 409, or an operation
            // that failed because the database exists (Cloud SQL's ERROR_RDBMS
            // `database "x" already exists`, the answer when the first insert was
            // still running when this one was sent): adopt it if it matches.
            let exists = if resumed && get_opt(g, &base, &name).await?.is_some() {
                true
            } else {
                insert_child(&run, &project, &base, &body).await?
            };
            if exists {
                let d = g.client.get(Api::Sql, &format!("{base}/{}", seg(&name))).await?;
                for k in ["charset", "collation"] {
                    if let Some(v) = str_attr(&cfg, k)
                        && d[k].as_str() != Some(v.as_str())
                    {
                        return Err(ProviderError::Permanent(format!(
                            "database {name:?} already exists on instance {instance:?} with {k} {} (the spec \
                             wants {v:?}); a database's {k} cannot be changed",
                            d[k]
                        )));
                    }
                }
            }
        }
        ApplyAction::Update => {}
    }
    let d = g.client.get(Api::Sql, &format!("{base}/{}", seg(&name))).await?;
    Ok(g.response(&req.type_name, req, id, attrs_of(&d, &project, &instance)))
}
