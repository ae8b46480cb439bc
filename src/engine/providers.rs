//! Lazily configured providers for one run.
//!
//! A provider is configured the first time a resource needs it, from its
//! configuration evaluated with the values known at that moment. While planning,
//! a configuration that still holds unknowns (it references a resource created
//! in this run) leaves the provider *deferred*: its resources are planned as
//! creates. While applying, the apply graph orders every resource of a provider
//! after the resources its configuration references, so by then it is known.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::Context;
use super::error::ConfigureError;
use super::scope::{EvalScope, Values};
use crate::foundation::trust;
use crate::providers::Provider;
use crate::spec::eval::eval;
use crate::spec::model::Reference;
use crate::timings;
use crate::value::Value;

/// The state of one provider in this run.
#[derive(Clone)]
pub enum Slot {
    /// Ready to use.
    Configured(Arc<dyn Provider>),
    /// Its configuration depends on these resources, not created yet.
    Deferred(Vec<String>),
    /// Configuration failed (no secrets in it).
    Failed(ConfigureError),
}

/// The providers of one run.
#[derive(Default)]
pub struct ProviderSet {
    slots: Mutex<BTreeMap<String, Arc<OnceCell<Slot>>>>,
}

impl ProviderSet {
    /// The provider `name`, configuring it on first use.
    pub async fn get(&self, ctx: &Context, values: &Values, name: &str) -> Slot {
        let cell = self.slots.lock().expect("slots lock").entry(name.to_string()).or_default().clone();
        cell.get_or_init(|| configure(ctx, values, name)).await.clone()
    }
}

async fn configure(ctx: &Context, values: &Values, name: &str) -> Slot {
    let Some(factory) = ctx.registry.get(name) else {
        return Slot::Failed(ConfigureError::Unknown {
            name: name.to_string(),
            known: ctx.registry.names().collect::<Vec<_>>().join(", "),
        });
    };
    let config = match ctx.spec.providers.get(name) {
        Some(block) => {
            let scope = EvalScope { vars: &ctx.vars, values, dir: ctx.spec.dir.clone() };
            match eval(&block.config, &scope) {
                Ok(v) => v,
                Err(d) => {
                    return Slot::Failed(ConfigureError::Evaluation {
                        name: name.to_string(),
                        reason: d.to_string().trim().to_string(),
                    });
                }
            }
        }
        None => Value::Map(BTreeMap::new()),
    };
    if config.has_unknown() {
        let mut waiting: Vec<String> = ctx
            .spec
            .providers
            .get(name)
            .map(|b| b.config.node.references())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| match r.node {
                Reference::Resource { address, .. } => {
                    let v = values.get(&address).unwrap_or(Value::Unknown);
                    v.has_unknown().then(|| address.to_string())
                }
                _ => None,
            })
            .collect();
        waiting.sort();
        waiting.dedup();
        return Slot::Deferred(waiting);
    }
    if let Some(endpoint) = unvouched_cluster_endpoint(&config, values) {
        return Slot::Failed(ConfigureError::UnvouchedCluster { name: name.to_string(), endpoint });
    }
    let _configure = timings::span_for("configure", &format_args!("provider.{name}"), String::new);
    match factory.configure(&config, ctx.registry.net()).await {
        Ok(p) => Slot::Configured(p),
        Err(error) => Slot::Failed(ConfigureError::Refused { name: name.to_string(), error }),
    }
}

/// The type whose `endpoint` Google reports: the only place a `cluster` endpoint that receives the
/// operator's GCP token may come from.
const GKE_CLUSTER: &str = "gcp_container_cluster";

/// A Kubernetes or Helm configuration's `cluster` table without a `token` of its own sends the
/// operator's GCP access token to `cluster.endpoint`. A spec is untrusted input
/// ([`crate::foundation::trust`]): that endpoint must be one Google reported for a GKE cluster this run
/// knows (a `gcp_container_cluster` resource or data source, through any module or local), not a
/// value the spec wrote, unless the operator allows spec endpoints. Returns the endpoint refused.
fn unvouched_cluster_endpoint(config: &Value, values: &Values) -> Option<String> {
    let config = config.unmarked();
    let cluster = config.get("cluster").filter(|c| !matches!(c, Value::Null))?;
    if config.get("token").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
        return None;
    }
    let endpoint = cluster.get("endpoint").and_then(Value::as_str)?.to_string();
    if trust::spec_endpoints_allowed() {
        return None;
    }
    let vouched = values.any(|a, v| {
        a.type_name == GKE_CLUSTER && v.unmarked().get("endpoint").and_then(Value::as_str) == Some(endpoint.as_str())
    });
    (!vouched).then_some(endpoint)
}
