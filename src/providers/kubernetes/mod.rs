//! The `kubernetes` provider: namespaces, Secrets, ServiceAccounts, ConfigMaps
//! and any other object (`k8s_manifest`), written with server-side apply.
//!
//! - [`connect`]: reaching the cluster (kubeconfig, or a GKE cluster object and
//!   the GCP access token).
//! - [`objects`]: get / server-side apply (real or dry-run) / delete by kind.
//! - [`compare`]: the live diff: a dry-run apply of the desired object compared
//!   with the live object, shown in the desired object's terms.
//! - [`resources`]: each resource type as a mapping between attributes and an
//!   object.
//! - [`ready`]: readiness of workloads and conditions, waited for on request.
//!
//! Every write is a server-side apply with field manager `skyform` and
//! `force = true`: skyform's spec is the source of truth for the fields it sets,
//! so an apply takes back a field another manager (`kubectl edit`) changed;
//! fields skyform does not set are never touched, and fields it stops setting
//! are removed by the apply (server-side apply semantics).

pub mod compare;
pub mod connect;
pub mod objects;
pub mod ready;
pub mod resources;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value as Json;

use self::objects::{Cluster, ObjRef};
use self::resources::Kind;
use super::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, HttpReply, LiveObject, PlanRequest, PlanResponse, Provider,
    ProviderError, ProviderFactory, ReadRequest, ServiceRequest,
};
use crate::foundation::schema::ProviderSchema;
use crate::value::Value;

/// Builds configured `kubernetes` providers.
pub struct KubernetesFactory {
    schema: ProviderSchema,
}

impl Default for KubernetesFactory {
    fn default() -> Self {
        KubernetesFactory {
            schema: ProviderSchema {
                name: "kubernetes",
                type_prefix: "k8s_",
                config: connect::config_attributes(),
                types: resources::schemas(),
                reaches_services: true,
            },
        }
    }
}

#[async_trait]
impl ProviderFactory for KubernetesFactory {
    fn schema(&self) -> &ProviderSchema {
        &self.schema
    }
    async fn configure(
        &self,
        config: &Value,
        net: &crate::foundation::net::Net,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let target = connect::Target::from_config(config, net).await?;
        let client = target.client().await?;
        Ok(Arc::new(KubernetesProvider { cluster: Arc::new(Cluster::new(client)) }))
    }
}

/// A configured `kubernetes` provider.
pub struct KubernetesProvider {
    cluster: Arc<Cluster>,
}

fn kind_of(type_name: &str) -> Result<Kind, ProviderError> {
    Kind::of(type_name).ok_or_else(|| ProviderError::Permanent(format!("unknown resource type {type_name}")))
}

/// The identity kept in state.
pub fn identity_value(r: &ObjRef) -> Value {
    Value::map([
        ("api_version", Value::str(&r.api_version)),
        ("kind", Value::str(&r.kind)),
        ("namespace", Value::str(&r.namespace)),
        ("name", Value::str(&r.name)),
    ])
}

fn identity_ref(v: &Value) -> Option<ObjRef> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some(ObjRef { api_version: s("api_version")?, kind: s("kind")?, namespace: s("namespace")?, name: s("name")? })
}

/// The reference a desired object names (`None` while its kind or name is
/// unknown).
fn desired_ref(obj: &Value) -> Option<ObjRef> {
    let path = |p: &[&str]| obj.get_path(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let unknown = [&["apiVersion"][..], &["kind"], &["metadata", "name"], &["metadata", "namespace"]]
        .iter()
        .any(|p| path(p).is_some_and(|v| v.has_unknown()));
    if unknown || matches!(obj, Value::Unknown) {
        return None;
    }
    ObjRef::of(&obj.to_json_clear()).ok()
}

fn has_redacted(v: &Value) -> bool {
    match v {
        Value::Redacted(_) => true,
        Value::Sensitive(x) => has_redacted(x),
        Value::List(l) => l.iter().any(has_redacted),
        Value::Map(m) => m.values().any(has_redacted),
        _ => false,
    }
}

impl KubernetesProvider {
    /// Compares `live` with `desired` through a dry-run apply (see
    /// [`compare::overlay`]). Without a dry-run (a desired object that is not
    /// fully known yet) the desired object is returned as is.
    pub async fn compared(&self, desired: &Value, live: &Json) -> Result<Value, ProviderError> {
        let live_s = compare::strip_volatile(live);
        // Leaves not known in clear (unknown, or fingerprint-only secrets) take
        // the live value: the engine compares them (see `fill_from_live`).
        let desired = &compare::fill_from_live(desired, Some(&live_s));
        let dry = if desired.has_unknown() || has_redacted(desired) {
            live_s.clone()
        } else {
            compare::strip_volatile(&self.cluster.would_apply(&desired.to_json_clear(), &live_s).await?)
        };
        Ok(compare::overlay(desired, Some(&dry), Some(&live_s)))
    }

    /// The cluster.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }
}

#[async_trait]
impl Provider for KubernetesProvider {
    async fn read(&self, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
        let kind = kind_of(&req.type_name)?;
        let desired = kind.desired_object(&req.config).unwrap_or(Value::Null);
        let r = match req.identity.as_ref().and_then(identity_ref) {
            Some(r) => r,
            None => match desired_ref(&desired) {
                Some(r) => self.cluster.settle(&r).await?,
                None => return Ok(None),
            },
        };
        // A desired object naming another object (a rename: replaced) is not
        // compared with this one.
        let same_object = desired_ref(&desired).is_some_and(|d| d.name == r.name && d.kind == r.kind);
        let Some(live) = self.cluster.get(&r).await? else { return Ok(None) };
        let compared = if same_object {
            self.compared(&desired, &live).await?
        } else {
            Value::from_json(&compare::strip_volatile(&live))
        };
        let uid = live.pointer("/metadata/uid").and_then(Json::as_str);
        let version = live.pointer("/metadata/resourceVersion").and_then(Json::as_str).unwrap_or_default().to_string();
        let mut attrs = kind.attrs_from_object(&req.config, &compared, uid);
        if kind == Kind::Manifest {
            // How to wait is not a property of the object.
            for k in ["wait_for_deletion", "wait_for_ready"] {
                if let Some(w) = req.config.get(k) {
                    attrs.insert(k.into(), w.clone());
                }
            }
        }
        Ok(Some(LiveObject { identity: identity_value(&r), attrs, version, in_progress: false }))
    }

    /// Validates the desired object with a server-side dry-run apply (when it
    /// is fully known and its namespace exists), and replaces a `k8s_manifest`
    /// whose kind, name or namespace changed.
    async fn plan(&self, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
        let kind = kind_of(&req.type_name)?;
        let mut resp = PlanResponse::default();
        let desired = match kind.desired_object(&req.config) {
            Ok(d) => d,
            Err(e) => {
                resp.errors.push(e.to_string());
                return Ok(resp);
            }
        };
        if let (Some(live), Some(d)) = (&req.live, desired_ref(&desired))
            && let Some(l) = identity_ref(&live.identity)
        {
            let d = self.cluster.settle(&d).await?;
            if (d.api_version.as_str(), d.kind.as_str(), d.namespace.as_str(), d.name.as_str())
                != (l.api_version.as_str(), l.kind.as_str(), l.namespace.as_str(), l.name.as_str())
            {
                resp.requires_replace.push(if kind == Kind::Manifest { "manifest".into() } else { "name".into() });
            }
        }
        if !desired.has_unknown() {
            match self.cluster.apply(&desired.to_json_clear(), true).await {
                Ok(_) => {}
                Err(ProviderError::Permanent(m)) if m.contains("(422 ") || m.contains("(400 ") => resp.errors.push(m),
                // A namespace created in this same run does not exist yet.
                Err(_) => {}
            }
        }
        Ok(resp)
    }

    async fn apply(&self, req: &ApplyRequest, _cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
        let kind = kind_of(&req.type_name)?;
        match req.action {
            ApplyAction::Delete => {
                let r = match req.identity.as_ref().and_then(identity_ref) {
                    Some(r) => r,
                    None => return Ok(ApplyResponse::default()),
                };
                let wait = kind.waits_for_deletion()
                    || req.config.get("wait_for_deletion").and_then(Value::as_bool) == Some(true);
                self.cluster.delete(&r, wait.then_some(req.timeout)).await?;
                Ok(ApplyResponse::default())
            }
            ApplyAction::Create | ApplyAction::Update => {
                // Server-side apply is idempotent: a retry after a crash, or a
                // create of an object that already exists, converges.
                let desired = kind.desired_object(&req.config)?;
                let out = self.cluster.apply(&desired.to_json_clear(), false).await?;
                let r = ObjRef::of(&out)?;
                if req.config.get("wait_for_ready").and_then(Value::as_bool) == Some(true) {
                    ready::wait(&self.cluster, &r, req.timeout).await?;
                }
                let uid = out.pointer("/metadata/uid").and_then(Json::as_str);
                let mut attrs: BTreeMap<String, Value> = kind.attrs_from_object(&req.config, &desired, uid);
                if let Some(m) = req.config.as_map() {
                    for (k, v) in m {
                        attrs.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                Ok(ApplyResponse { identity: identity_value(&r), attrs, private: Value::Null })
            }
        }
    }

    async fn read_data(&self, type_name: &str, _args: &Value) -> Result<Value, ProviderError> {
        Err(ProviderError::Permanent(format!("unknown data source {type_name}")))
    }

    async fn service_get(&self, req: &ServiceRequest) -> Result<HttpReply, ProviderError> {
        self.cluster.service_get(req).await
    }

    /// Whether the object is ready now, and why not (its pods' reasons, for a workload).
    async fn diagnose(&self, type_name: &str, attrs: &Value) -> Option<String> {
        let obj = kind_of(type_name).ok()?.desired_object(attrs).ok()?;
        let r = ObjRef::of(&obj.to_json_clear()).ok()?;
        match ready::not_ready(&self.cluster, std::slice::from_ref(&r)).await {
            Ok(None) => None,
            Ok(Some(why)) => Some(format!("not ready:{why}")),
            Err(e) => Some(format!("{}: readiness unknown: {e}", r.display())),
        }
    }

    /// `namespace/name` (or `name` for a namespace); for `k8s_manifest`,
    /// `apiVersion,kind,namespace,name` (namespace empty when cluster-scoped).
    fn import_identity(&self, type_name: &str, id: &str) -> Result<Value, ProviderError> {
        let bad = || ProviderError::Permanent(format!("cannot parse import id {id:?} for {type_name}"));
        let kind = kind_of(type_name)?;
        let r = match kind {
            Kind::Manifest => {
                let p: Vec<&str> = id.split(',').collect();
                let [api_version, kind, namespace, name] = p[..] else { return Err(bad()) };
                ObjRef {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    namespace: namespace.into(),
                    name: name.into(),
                }
            }
            Kind::Namespace => {
                ObjRef { api_version: "v1".into(), kind: "Namespace".into(), namespace: String::new(), name: id.into() }
            }
            k => {
                let (ns, name) = id.split_once('/').ok_or_else(bad)?;
                let kind = match k {
                    Kind::Secret => "Secret",
                    Kind::ServiceAccount => "ServiceAccount",
                    _ => "ConfigMap",
                };
                ObjRef { api_version: "v1".into(), kind: kind.into(), namespace: ns.into(), name: name.into() }
            }
        };
        Ok(identity_value(&r))
    }
}
