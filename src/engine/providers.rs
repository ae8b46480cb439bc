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
use crate::providers::Provider;
use crate::spec::eval::eval;
use crate::spec::model::Reference;
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
    match factory.configure(&config, ctx.registry.net()).await {
        Ok(p) => Slot::Configured(p),
        Err(error) => Slot::Failed(ConfigureError::Refused { name: name.to_string(), error }),
    }
}
