//! The resource types, as mappings between skyform attributes and Kubernetes
//! objects: attributes → desired object (with secrets still marked), and the
//! compared object → attributes (the inverse), so that every type shares one
//! read/plan/apply path (server-side apply and dry-run, see `compare`).

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::ProviderError;
use crate::value::Value;

/// The resource types of the Kubernetes provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `k8s_namespace`.
    Namespace,
    /// `k8s_secret`.
    Secret,
    /// `k8s_service_account`.
    ServiceAccount,
    /// `k8s_config_map`.
    ConfigMap,
    /// `k8s_manifest`.
    Manifest,
}

impl Kind {
    /// By type name.
    pub fn of(type_name: &str) -> Option<Kind> {
        Some(match type_name {
            "k8s_namespace" => Kind::Namespace,
            "k8s_secret" => Kind::Secret,
            "k8s_service_account" => Kind::ServiceAccount,
            "k8s_config_map" => Kind::ConfigMap,
            "k8s_manifest" => Kind::Manifest,
            _ => return None,
        })
    }

    /// Whether deleting waits until the object is gone.
    pub fn waits_for_deletion(self) -> bool {
        self == Kind::Namespace
    }

    /// The desired object. Secrets stay wrapped; unknowns stay unknown.
    pub fn desired_object(self, cfg: &Value) -> Result<Value, ProviderError> {
        let s = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
        let meta = |namespaced: bool| {
            let mut m = BTreeMap::new();
            m.insert("name".to_string(), s("name"));
            if namespaced {
                m.insert("namespace".to_string(), s("namespace"));
            }
            for (attr, field) in [("labels", "labels"), ("annotations", "annotations")] {
                if let Some(v) = cfg.get(attr).filter(|v| !is_empty(v)) {
                    m.insert(field.to_string(), v.clone());
                }
            }
            Value::Map(m)
        };
        let head = |kind: &str, namespaced: bool| {
            let mut o = BTreeMap::new();
            o.insert("apiVersion".to_string(), Value::str("v1"));
            o.insert("kind".to_string(), Value::str(kind));
            o.insert("metadata".to_string(), meta(namespaced));
            o
        };
        Ok(match self {
            Kind::Namespace => Value::Map(head("Namespace", false)),
            Kind::ServiceAccount => {
                let mut o = head("ServiceAccount", true);
                if let Some(b) = cfg.get("automount_service_account_token").filter(|v| !matches!(v, Value::Null)) {
                    o.insert("automountServiceAccountToken".into(), b.clone());
                }
                Value::Map(o)
            }
            Kind::ConfigMap => {
                let mut o = head("ConfigMap", true);
                if let Some(d) = cfg.get("data").filter(|v| !is_empty(v)) {
                    o.insert("data".into(), d.clone());
                }
                if let Some(d) = cfg.get("binary_data").filter(|v| !is_empty(v)) {
                    check_base64(d, "binary_data")?;
                    o.insert("binaryData".into(), d.clone());
                }
                Value::Map(o)
            }
            Kind::Secret => {
                let mut o = head("Secret", true);
                o.insert("type".into(), cfg.get("type").cloned().unwrap_or(Value::str("Opaque")));
                let mut data = BTreeMap::new();
                if let Some(d) = cfg.get("data") {
                    let sensitive = d.is_sensitive();
                    for (k, v) in d.as_map().into_iter().flatten() {
                        let enc = map_str(v, |t| base64::engine::general_purpose::STANDARD.encode(t));
                        data.insert(k.clone(), if sensitive { enc.sensitive() } else { enc });
                    }
                }
                if let Some(d) = cfg.get("binary_data") {
                    check_base64(d, "binary_data")?;
                    let sensitive = d.is_sensitive();
                    for (k, v) in d.as_map().into_iter().flatten() {
                        if data.contains_key(k) {
                            return Err(ProviderError::Permanent(format!(
                                "key {k:?} is in both `data` and `binary_data`"
                            )));
                        }
                        data.insert(k.clone(), if sensitive { v.clone().sensitive() } else { v.clone() });
                    }
                }
                if !data.is_empty() {
                    o.insert("data".into(), Value::Map(data));
                }
                Value::Map(o)
            }
            Kind::Manifest => manifest_value(cfg.get("manifest").unwrap_or(&Value::Null))?,
        })
    }

    /// The attributes a compared object stands for, in the terms of `cfg` (the
    /// desired attributes: a Secret key given in `binary_data` is read back as
    /// base64, one given in `data` as text).
    pub fn attrs_from_object(self, cfg: &Value, obj: &Value, uid: Option<&str>) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let meta = obj.get("metadata");
        let m = |k: &str| meta.and_then(|m| m.get(k)).cloned();
        if self != Kind::Manifest {
            out.insert("name".into(), m("name").unwrap_or(Value::Null));
            if self != Kind::Namespace {
                out.insert("namespace".into(), m("namespace").unwrap_or(Value::Null));
            }
            for k in ["labels", "annotations"] {
                if let Some(v) = m(k) {
                    out.insert(k.into(), v);
                }
            }
        }
        match self {
            Kind::Namespace => {}
            Kind::ServiceAccount => {
                if let Some(v) = obj.get("automountServiceAccountToken") {
                    out.insert("automount_service_account_token".into(), v.clone());
                }
            }
            Kind::ConfigMap => {
                if let Some(v) = obj.get("data") {
                    out.insert("data".into(), v.clone());
                }
                if let Some(v) = obj.get("binaryData") {
                    out.insert("binary_data".into(), v.clone());
                }
            }
            Kind::Secret => {
                if let Some(v) = obj.get("type") {
                    out.insert("type".into(), v.clone());
                }
                let binary_keys: Vec<&String> =
                    cfg.get("binary_data").and_then(Value::as_map).map(|m| m.keys().collect()).unwrap_or_default();
                let (mut text, mut bin) = (BTreeMap::new(), BTreeMap::new());
                for (k, v) in obj.get("data").and_then(Value::as_map).into_iter().flatten() {
                    let decoded = match v.unmarked() {
                        Value::String(b) => base64::engine::general_purpose::STANDARD
                            .decode(b.as_bytes())
                            .ok()
                            .and_then(|bytes| String::from_utf8(bytes).ok()),
                        _ => None,
                    };
                    match decoded {
                        Some(t) if !binary_keys.contains(&k) => {
                            text.insert(k.clone(), Value::String(t));
                        }
                        _ => {
                            bin.insert(k.clone(), v.unmarked());
                        }
                    }
                }
                if !text.is_empty() {
                    out.insert("data".into(), Value::Map(text).sensitive());
                }
                if !bin.is_empty() {
                    out.insert("binary_data".into(), Value::Map(bin).sensitive());
                }
            }
            Kind::Manifest => {
                // A manifest given as YAML text is read back as YAML text (the
                // normalizer parses both sides), so plans show a text diff.
                let v = match cfg.get("manifest") {
                    Some(text @ Value::String(_)) if manifest_value(text).ok().as_ref() == Some(obj) => text.clone(),
                    Some(Value::String(_)) => Value::String(to_yaml(obj)),
                    _ => obj.clone(),
                };
                out.insert("manifest".into(), v);
            }
        }
        if let Some(u) = uid {
            out.insert("uid".into(), Value::str(u));
        }
        out
    }
}

/// A manifest attribute (table, or YAML/JSON text) as an object value.
pub fn manifest_value(v: &Value) -> Result<Value, ProviderError> {
    match v {
        Value::String(text) => {
            let j: serde_json::Value = serde_yaml::from_str(text)
                .map_err(|e| ProviderError::Permanent(format!("`manifest` is not valid YAML: {e}")))?;
            Ok(Value::from_json(&j))
        }
        Value::Sensitive(inner) => Ok(manifest_value(inner)?.sensitive()),
        Value::Map(_) | Value::Unknown => Ok(v.clone()),
        other => {
            Err(ProviderError::Permanent(format!("`manifest` must be a table or YAML text, not {}", other.type_name())))
        }
    }
}

/// Normalizer of `manifest`: YAML text and tables compare by content.
pub fn normalize_manifest(v: &Value) -> Value {
    match v {
        Value::String(_) => manifest_value(v).unwrap_or_else(|_| v.clone()),
        v => v.clone(),
    }
}

fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(&v.to_json_clear()).unwrap_or_default()
}

fn map_str(v: &Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::Sensitive(inner) => map_str(inner, f).sensitive(),
        Value::String(s) => Value::String(f(s)),
        other => other.clone(),
    }
}

fn check_base64(d: &Value, attr: &str) -> Result<(), ProviderError> {
    for (k, v) in d.as_map().into_iter().flatten() {
        if let Some(s) = v.as_str()
            && base64::engine::general_purpose::STANDARD.decode(s).is_err()
        {
            return Err(ProviderError::Permanent(format!("`{attr}.{k}` is not valid base64")));
        }
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Map(m) => m.is_empty(),
        Value::Sensitive(i) => is_empty(i),
        _ => false,
    }
}

fn strings() -> AttrType {
    AttrType::Map(Box::new(AttrType::String))
}

fn common(namespaced: bool, what: &'static str) -> Vec<Attribute> {
    // A namespace's name is a label; other objects' names are subdomains.
    let rule = if namespaced { NameRule::K8sSubdomain } else { NameRule::K8sLabel };
    let mut v = vec![Attribute::required("name", AttrType::String, what).force_new().rule(rule)];
    if namespaced {
        v.push(
            Attribute::optional("namespace", AttrType::String, "The namespace; changing it replaces the object.")
                .default(Value::str("default"))
                .force_new()
                .rule(NameRule::K8sLabel),
        );
    }
    v.push(Attribute::optional("labels", strings(), "Labels skyform sets (others' labels are left alone)."));
    v.push(Attribute::optional(
        "annotations",
        strings(),
        "Annotations skyform sets (others' annotations are left alone).",
    ));
    v.push(Attribute::computed("uid", AttrType::String, "The object's UID."));
    v
}

/// The schemas of the Kubernetes resource types.
pub fn schemas() -> Vec<ResourceSchema> {
    let with = |mut base: Vec<Attribute>, extra: Vec<Attribute>| {
        base.extend(extra);
        base
    };
    vec![
        ResourceSchema {
            type_name: "k8s_namespace",
            kind: SchemaKind::Resource,
            description: "A namespace. Deleting it waits until the namespace and everything in it are gone.",
            attributes: common(false, "The namespace's name; changing it replaces the namespace."),
        },
        ResourceSchema {
            type_name: "k8s_secret",
            kind: SchemaKind::Resource,
            description: "A Secret. Values are masked in every output and kept in state only as fingerprints.",
            attributes: with(
                common(true, "The Secret's name; changing it replaces the Secret."),
                vec![
                    Attribute::optional("type", AttrType::String, "The Secret type; changing it replaces the Secret.")
                        .default(Value::str("Opaque"))
                        .force_new(),
                    Attribute::optional("data", strings(), "Keys and their values as UTF-8 text (skyform base64-encodes them). Keys are shown in plans; values are masked.").sensitive_values(),
                    Attribute::optional("binary_data", strings(), "Keys and their values already base64-encoded (binary content). Keys are shown; values are masked.").sensitive_values(),
                ],
            ),
        },
        ResourceSchema {
            type_name: "k8s_service_account",
            kind: SchemaKind::Resource,
            description: "A ServiceAccount (e.g. with the `iam.gke.io/gcp-service-account` annotation for Workload Identity).",
            attributes: with(
                common(true, "The ServiceAccount's name; changing it replaces it."),
                vec![Attribute::optional("automount_service_account_token", AttrType::Bool, "Sets `automountServiceAccountToken`.")],
            ),
        },
        ResourceSchema {
            type_name: "k8s_config_map",
            kind: SchemaKind::Resource,
            description: "A ConfigMap.",
            attributes: with(
                common(true, "The ConfigMap's name; changing it replaces it."),
                vec![
                    Attribute::optional("data", strings(), "Keys and their text values."),
                    Attribute::optional("binary_data", strings(), "Keys and their base64-encoded binary values."),
                ],
            ),
        },
        ResourceSchema {
            type_name: "k8s_manifest",
            kind: SchemaKind::Resource,
            description: "Any Kubernetes object, given as a TOML table or as YAML text (one document). Changing its apiVersion, kind, name or namespace replaces it.",
            attributes: vec![
                Attribute::required("manifest", AttrType::Any, "The object: `apiVersion`, `kind`, `metadata.name` (and `metadata.namespace` for namespaced kinds; default `default`) and its content. Only the fields given are managed.")
                    .normalize(normalize_manifest),
                Attribute::optional("wait_for_deletion", AttrType::Bool, "Wait until the object is gone when deleting it (finalizers).").default(Value::Bool(false)),
                Attribute::optional("wait_for_ready", AttrType::Bool, "After create or update, wait (within the resource's timeout) until the object is ready: a workload rolled out, a Job complete, a Ready/Available condition True. Only where the cluster can make it ready.").default(Value::Bool(false)),
                Attribute::computed("uid", AttrType::String, "The object's UID."),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trips_text_and_binary_keys() {
        let cfg = Value::map([
            ("name", Value::str("s")),
            ("namespace", Value::str("ns")),
            ("data", Value::map([("conn", Value::str("postgresql://u:p@h/db"))]).sensitive()),
            ("binary_data", Value::map([("bin", Value::str("AAEC"))]).sensitive()),
        ]);
        let obj = Kind::Secret.desired_object(&cfg).unwrap();
        assert_eq!(
            obj.unmarked().get("data").unwrap().get("conn").unwrap().as_str(),
            Some("cG9zdGdyZXNxbDovL3U6cEBoL2Ri")
        );
        let attrs = Kind::Secret.attrs_from_object(&cfg, &obj, None);
        assert_eq!(attrs["data"].unmarked(), cfg.get("data").unwrap().unmarked());
        assert_eq!(attrs["binary_data"].unmarked(), cfg.get("binary_data").unwrap().unmarked());
        assert!(attrs["data"].is_sensitive());
    }

    #[test]
    fn manifest_text_and_table_compare_by_content() {
        let text = Value::str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"1\"\n");
        let table = manifest_value(&text).unwrap();
        assert_eq!(normalize_manifest(&text), table);
        let attrs = Kind::Manifest.attrs_from_object(&Value::map([("manifest", text.clone())]), &table, None);
        assert_eq!(normalize_manifest(&attrs["manifest"]), table);
        assert!(manifest_value(&Value::str("a: [")).is_err());
    }
}
