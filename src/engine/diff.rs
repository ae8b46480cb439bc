//! Attribute-level comparison of desired, live and last-applied values, driven by
//! the schema (defaults, normalizers, force-new, sensitive, write-only).

use std::collections::BTreeMap;

use crate::providers::ResourceSchema;
use crate::secrets::Fingerprinter;
use crate::value::Value;

/// The desired attributes of a resource: the evaluated spec body with schema
/// defaults filled in and sensitive attributes marked.
pub fn desired_attrs(schema: &ResourceSchema, body: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let given = body.as_map().cloned().unwrap_or_default();
    for a in &schema.attributes {
        let v = match given.get(a.name) {
            Some(v) if !matches!(v, Value::Null) => v.clone(),
            _ => match &a.default {
                Some(d) => d.clone(),
                None => continue,
            },
        };
        out.insert(a.name.to_string(), a.mark(v));
    }
    out
}

/// Marks the sensitive attributes of a provider-returned attribute map.
pub fn mark_sensitive(schema: &ResourceSchema, attrs: &mut BTreeMap<String, Value>) {
    for a in schema.attributes.iter().filter(|a| a.sensitive || a.sensitive_values) {
        if let Some(v) = attrs.remove(a.name) {
            attrs.insert(a.name.to_string(), a.mark(v));
        }
    }
}

/// Marks as sensitive every part of `attrs` whose desired counterpart is (or
/// contains) a secret: sensitivity follows the value, not only the schema, so a
/// connection string built from a password is masked and fingerprinted when it
/// comes back from the API too. Tables and lists are followed key by key, so
/// only the secret leaves of a large value (Helm values) are masked.
pub fn carry_sensitivity(desired: &BTreeMap<String, Value>, attrs: &mut BTreeMap<String, Value>) {
    for (k, v) in desired {
        if v.has_sensitive()
            && let Some(a) = attrs.remove(k)
        {
            attrs.insert(k.clone(), carry(v, a));
        }
    }
}

fn carry(desired: &Value, live: Value) -> Value {
    match (desired, live) {
        (Value::Sensitive(_) | Value::Redacted(_), l) => l.sensitive(),
        (Value::Map(d), Value::Map(mut l)) => {
            for (k, dv) in d {
                if dv.has_sensitive()
                    && let Some(lv) = l.remove(k)
                {
                    l.insert(k.clone(), carry(dv, lv));
                }
            }
            Value::Map(l)
        }
        (Value::List(d), Value::List(l)) if d.len() == l.len() => {
            Value::List(d.iter().zip(l).map(|(dv, lv)| if dv.has_sensitive() { carry(dv, lv) } else { lv }).collect())
        }
        (d, l) if d.has_sensitive() => l.sensitive(),
        (_, l) => l,
    }
}

/// The result of comparing one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttrDiff {
    /// Attributes whose desired value differs from the live one.
    pub changed: Vec<String>,
    /// Those of them that force replacement.
    pub requires_replace: Vec<String>,
}

/// Compares desired with live (and, for write-only attributes, with the
/// fingerprint in the last-applied state).
///
/// Attributes the spec does not set (and that have no default) are not managed
/// and never differ. `ignore` lists attributes whose changes are ignored
/// (`lifecycle.ignore_changes`; `"*"` or `"all"` ignores all).
pub fn compare(
    schema: &ResourceSchema,
    desired: &BTreeMap<String, Value>,
    live: &BTreeMap<String, Value>,
    prior: Option<&BTreeMap<String, Value>>,
    ignore: &[String],
    fp: &Fingerprinter,
) -> AttrDiff {
    let ignore_all = ignore.iter().any(|i| i == "*" || i == "all");
    let mut d = AttrDiff::default();
    for a in schema.attributes.iter().filter(|a| a.settable()) {
        let Some(want) = desired.get(a.name) else { continue };
        if ignore_all || ignore.iter().any(|i| i == a.name) {
            continue;
        }
        let same = if a.write_only {
            match prior.and_then(|p| p.get(a.name)) {
                Some(have) => fp.same(want, have),
                None => false,
            }
        } else {
            let have = live.get(a.name).cloned().unwrap_or(Value::Null);
            let (w, h) = match a.normalize {
                Some(n) => (normalize_keep_marks(n, want), normalize_keep_marks(n, &have)),
                None => (want.clone(), have),
            };
            fp.same(&w, &h) || (is_empty(&w) && is_empty(&h))
        };
        if !same {
            d.changed.push(a.name.to_string());
            if a.force_new {
                d.requires_replace.push(a.name.to_string());
            }
        }
    }
    d
}

fn normalize_keep_marks(n: crate::foundation::schema::Normalizer, v: &Value) -> Value {
    match v {
        Value::Unknown | Value::Redacted(_) => v.clone(),
        Value::Sensitive(inner) => n(inner).sensitive(),
        v => n(v),
    }
}

/// Null, an empty string, list or map: "not set", for comparisons where an API
/// omits empty values.
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

/// The planned attributes after the change.
///
/// Creating: the desired inputs, and every computed attribute unknown. Updating
/// or no-op: the live attributes with the desired inputs laid over them; a
/// computed attribute the API cannot return (a private key exists only at
/// creation) keeps its last-applied value, which in state is a fingerprint.
pub fn planned_after(
    schema: &ResourceSchema,
    desired: &BTreeMap<String, Value>,
    live: Option<&BTreeMap<String, Value>>,
    prior: Option<&BTreeMap<String, Value>>,
    creating: bool,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for a in &schema.attributes {
        let v = match (desired.get(a.name), live.and_then(|l| l.get(a.name))) {
            (Some(d), _) if a.settable() => Some(d.clone()),
            (_, Some(l)) if !creating => Some(l.clone()),
            _ if a.computed && !creating && prior.is_some_and(|p| p.contains_key(a.name)) => {
                prior.and_then(|p| p.get(a.name)).cloned()
            }
            _ if a.computed => Some(Value::Unknown),
            _ => None,
        };
        if let Some(mut v) = v {
            v = a.mark(v);
            out.insert(a.name.to_string(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{AttrType, Attribute, SchemaKind};

    fn schema() -> ResourceSchema {
        ResourceSchema {
            type_name: "t",
            kind: SchemaKind::Resource,
            description: "",
            attributes: vec![
                Attribute::required("name", AttrType::String, "").force_new(),
                Attribute::optional("label", AttrType::String, "")
                    .normalize(|v| Value::str(v.as_str().unwrap_or_default().to_lowercase())),
                Attribute::optional("password", AttrType::String, "").write_only(),
                Attribute::optional("size", AttrType::Number, "").default(Value::Int(1)),
                Attribute::computed("id", AttrType::String, ""),
            ],
        }
    }

    #[test]
    fn normalized_values_are_equal_and_force_new_is_reported() {
        let fp = Fingerprinter::random();
        let s = schema();
        let desired = desired_attrs(&s, &Value::map([("name", Value::str("b")), ("label", Value::str("ABC"))]));
        let live: BTreeMap<String, Value> = [
            ("name".to_string(), Value::str("a")),
            ("label".to_string(), Value::str("abc")),
            ("size".to_string(), Value::Int(1)),
        ]
        .into();
        let d = compare(&s, &desired, &live, None, &[], &fp);
        assert_eq!(d.changed, vec!["name"]);
        assert_eq!(d.requires_replace, vec!["name"]);
    }

    #[test]
    fn write_only_compares_against_fingerprint_in_state() {
        let fp = Fingerprinter::random();
        let s = schema();
        let desired = desired_attrs(&s, &Value::map([("name", Value::str("a")), ("password", Value::str("pw1"))]));
        let live: BTreeMap<String, Value> =
            [("name".to_string(), Value::str("a")), ("size".to_string(), Value::Int(1))].into();
        let prior: BTreeMap<String, Value> =
            [("password".to_string(), Value::Redacted(fp.fingerprint(&Value::str("pw1"))))].into();
        assert!(compare(&s, &desired, &live, Some(&prior), &[], &fp).changed.is_empty());
        let prior2: BTreeMap<String, Value> =
            [("password".to_string(), Value::Redacted(fp.fingerprint(&Value::str("old"))))].into();
        assert_eq!(compare(&s, &desired, &live, Some(&prior2), &[], &fp).changed, vec!["password"]);
        assert!(compare(&s, &desired, &live, Some(&prior2), &["password".into()], &fp).changed.is_empty());
    }

    #[test]
    fn create_marks_computed_unknown() {
        let s = schema();
        let desired = desired_attrs(&s, &Value::map([("name", Value::str("a"))]));
        let after = planned_after(&s, &desired, None, None, true);
        assert_eq!(after["id"], Value::Unknown);
        assert_eq!(after["size"], Value::Int(1));
    }
}
