//! `gcp_project_service`: an enabled API on a project.
//!
//! Idempotent: enabling an enabled service is a no-op on the API side; the
//! operation is recorded before it is waited on, so a crash resumes it.

use std::collections::BTreeMap;

use serde_json::json;

use super::client::Api;
use super::operation::{self, Op};
use super::{Gcp, deadline, live, project_attr, str_attr};
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, ProviderError, ReadRequest};
use crate::value::Value;

/// Schema.
pub fn schema() -> ResourceSchema {
    ResourceSchema {
        type_name: "gcp_project_service",
        kind: SchemaKind::Resource,
        description: "Enables an API (e.g. sqladmin.googleapis.com) on the project.",
        attributes: vec![
            Attribute::required("service", AttrType::String, "Service name, e.g. sqladmin.googleapis.com.").force_new(),
            Attribute::optional(
                "disable_on_destroy",
                AttrType::Bool,
                "Disable the service when the resource is destroyed. Default true.",
            )
            .default(true),
            project_attr(),
        ],
    }
}

fn ids(g: &Gcp, config: &Value, identity: Option<&Value>) -> Option<(String, String)> {
    if let Some((p, s)) = identity.and_then(Value::as_str).and_then(|i| i.split_once('/')) {
        return Some((p.to_string(), s.to_string()));
    }
    Some((g.project_of(config), str_attr(config, "service")?))
}

/// Reads the service; disabled is absent.
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    let Some((project, service)) = ids(g, &req.config, req.identity.as_ref()) else { return Ok(None) };
    let Some(v) = g.client.get_opt(Api::ServiceUsage, &format!("v1/projects/{project}/services/{service}")).await?
    else {
        return Ok(None);
    };
    if v["state"] != "ENABLED" {
        return Ok(None);
    }
    let mut attrs =
        BTreeMap::from([("service".to_string(), Value::str(&service)), ("project".to_string(), Value::str(&project))]);
    // Not an API property: keep what the spec says (or the default).
    attrs.insert(
        "disable_on_destroy".into(),
        req.config.get("disable_on_destroy").cloned().unwrap_or(Value::Bool(true)),
    );
    Ok(Some(live(Value::str(format!("{project}/{service}")), attrs, None)))
}

/// Enables or disables.
pub async fn apply(g: &Gcp, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
    let (project, service) = ids(g, &req.config, req.identity.as_ref())
        .ok_or_else(|| ProviderError::Permanent("service is required".into()))?;
    let id = Value::str(format!("{project}/{service}"));
    let dl = deadline(req);
    operation::resume(&g.client, &req.private, dl).await?;
    if req.action == ApplyAction::Delete {
        if req.config.get("disable_on_destroy").and_then(Value::as_bool) == Some(false) {
            return Ok(ApplyResponse::default());
        }
        let body = json!({"disableDependentServices": false, "checkIfServiceHasUsage": "SKIP"});
        let op = g
            .client
            .post(Api::ServiceUsage, &format!("v1/projects/{project}/services/{service}:disable"), &body)
            .await?;
        operation::track(&g.client, cp, &id, &Op::service_usage(&op), &op, dl).await?;
        return Ok(ApplyResponse::default());
    }
    let op = g
        .client
        .post(Api::ServiceUsage, &format!("v1/projects/{project}/services/{service}:enable"), &json!({}))
        .await?;
    operation::track(&g.client, cp, &id, &Op::service_usage(&op), &op, dl).await?;
    let attrs =
        BTreeMap::from([("service".to_string(), Value::str(&service)), ("project".to_string(), Value::str(&project))]);
    Ok(g.response(&req.type_name, req, id, attrs))
}
