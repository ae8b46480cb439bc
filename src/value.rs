//! The value type that flows through specs, plans, state and providers.
//!
//! Two variants carry the semantics that plan/apply engines usually get wrong
//! (see `docs/architecture.md`):
//! - [`Value::Unknown`] is a value that will only be known after apply (a computed
//!   attribute of a resource that does not exist yet). It is contagious: a string
//!   built from an unknown is unknown.
//! - [`Value::Sensitive`] wraps a secret. It is contagious too: a string built
//!   from a secret is itself a secret, so it is masked in every rendering.
//! - [`Value::Redacted`] is what is left of a secret once it has been written to
//!   state or to a saved plan: a keyed fingerprint, never the clear text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dynamically typed value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Absent / null.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    String(String),
    /// An ordered list.
    List(Vec<Value>),
    /// A table with sorted keys.
    Map(BTreeMap<String, Value>),
    /// Known only after apply.
    Unknown,
    /// A secret held in memory; masked everywhere it is shown.
    Sensitive(Box<Value>),
    /// A secret whose clear value is not available: only its fingerprint
    /// (`argon2id:m=…,t=…,p=…:<hex>`, or an older state's `hmac-sha256:<hex>`) is known.
    Redacted(String),
}

/// The text shown in place of a secret.
pub const MASK: &str = "(sensitive value)";
/// The text shown in place of an unknown value.
pub const UNKNOWN_TEXT: &str = "(known after apply)";

impl Value {
    /// Builds a string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// Builds a map value from pairs.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Wraps `self` as sensitive (idempotent).
    pub fn sensitive(self) -> Value {
        match self {
            Value::Sensitive(_) | Value::Redacted(_) | Value::Unknown | Value::Null => self,
            v => Value::Sensitive(Box::new(v)),
        }
    }

    /// Whether this value or anything inside it is unknown.
    pub fn has_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::List(l) => l.iter().any(Value::has_unknown),
            Value::Map(m) => m.values().any(Value::has_unknown),
            Value::Sensitive(v) => v.has_unknown(),
            _ => false,
        }
    }

    /// Whether this value or anything inside it is a secret.
    pub fn has_sensitive(&self) -> bool {
        match self {
            Value::Sensitive(_) | Value::Redacted(_) => true,
            Value::List(l) => l.iter().any(Value::has_sensitive),
            Value::Map(m) => m.values().any(Value::has_sensitive),
            _ => false,
        }
    }

    /// Whether the value is (wholly) a secret.
    pub fn is_sensitive(&self) -> bool {
        matches!(self, Value::Sensitive(_) | Value::Redacted(_))
    }

    /// The value with every sensitive wrapper removed (for providers, which need
    /// the clear text). Redacted values stay redacted.
    pub fn unmarked(&self) -> Value {
        match self {
            Value::Sensitive(v) => v.unmarked(),
            Value::List(l) => Value::List(l.iter().map(Value::unmarked).collect()),
            Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), v.unmarked())).collect()),
            v => v.clone(),
        }
    }

    /// The string inside, looking through a sensitive wrapper.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Sensitive(v) => v.as_str(),
            _ => None,
        }
    }

    /// The bool inside, looking through a sensitive wrapper.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Sensitive(v) => v.as_bool(),
            _ => None,
        }
    }

    /// The integer inside, looking through a sensitive wrapper.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::Sensitive(v) => v.as_i64(),
            _ => None,
        }
    }

    /// The map inside, looking through a sensitive wrapper.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            Value::Sensitive(v) => v.as_map(),
            _ => None,
        }
    }

    /// The list inside, looking through a sensitive wrapper.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            Value::Sensitive(v) => v.as_list(),
            _ => None,
        }
    }

    /// Looks up `key` in a map value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Follows a path of map keys / list indices. A sensitive wrapper on the way
    /// marks the result sensitive; an unknown on the way gives unknown.
    pub fn get_path(&self, path: &[String]) -> Option<Value> {
        let mut cur = self.clone();
        let mut sensitive = false;
        for seg in path {
            cur = match cur {
                Value::Unknown => return Some(Value::Unknown),
                Value::Sensitive(inner) => {
                    sensitive = true;
                    match *inner {
                        Value::Map(mut m) => m.remove(seg)?,
                        Value::List(mut l) => {
                            let i: usize = seg.parse().ok()?;
                            if i >= l.len() {
                                return None;
                            }
                            l.swap_remove(i)
                        }
                        Value::Unknown => return Some(Value::Unknown),
                        _ => return None,
                    }
                }
                Value::Map(mut m) => m.remove(seg)?,
                Value::List(mut l) => {
                    let i: usize = seg.parse().ok()?;
                    if i >= l.len() {
                        return None;
                    }
                    l.swap_remove(i)
                }
                _ => return None,
            };
        }
        Some(if sensitive { cur.sensitive() } else { cur })
    }

    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Unknown => "unknown",
            Value::Sensitive(v) => v.type_name(),
            Value::Redacted(_) => "sensitive",
        }
    }

    /// Converts from JSON (no sensitivity, no unknowns).
    pub fn from_json(j: &serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect())
            }
        }
    }

    /// Converts to plain JSON with clear secrets (for providers only: never print
    /// or persist the result). Unknown becomes null.
    pub fn to_json_clear(&self) -> serde_json::Value {
        match self {
            Value::Null | Value::Unknown => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Value::from(*f),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json_clear).collect()),
            Value::Map(m) => serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json_clear())).collect()),
            Value::Sensitive(v) => v.to_json_clear(),
            Value::Redacted(h) => serde_json::Value::String(h.clone()),
        }
    }

    /// Converts to JSON for display: secrets masked, unknowns as a marker.
    pub fn to_json_masked(&self) -> serde_json::Value {
        match self {
            Value::Unknown => serde_json::Value::String(UNKNOWN_TEXT.into()),
            Value::Sensitive(_) | Value::Redacted(_) => serde_json::Value::String(MASK.into()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json_masked).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json_masked())).collect())
            }
            v => v.to_json_clear(),
        }
    }

    /// Renders a value for a string template (`"${...}"`): strings as is,
    /// numbers and bools as text. `None` for lists/maps/unknown.
    pub fn to_template_string(&self) -> Option<String> {
        match self {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            Value::Sensitive(v) => v.to_template_string(),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// Human rendering, always masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            Value::Unknown => write!(f, "{UNKNOWN_TEXT}"),
            Value::Sensitive(_) | Value::Redacted(_) => write!(f, "{MASK}"),
            Value::List(_) | Value::Map(_) => write!(f, "{}", self.to_json_masked()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

/// Serialized form, used by state and saved plans. Secrets must have been
/// replaced by [`Value::Redacted`] before serializing (see
/// `secrets::Fingerprinter::redact`); serializing a clear secret is a
/// bug and is refused by writing the mask instead.
///
/// Encoding: plain JSON for plain values; `{"$unknown": true}`,
/// `{"$redacted": "<fingerprint>"}` for the special variants; a map whose only
/// key starts with `$` is escaped as `{"$map": {...}}`.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        to_wire(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        let j = serde_json::Value::deserialize(d)?;
        Ok(from_wire(&j))
    }
}

fn to_wire(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::Unknown => json!({"$unknown": true}),
        Value::Redacted(h) => json!({"$redacted": h}),
        Value::Sensitive(_) => json!({"$redacted": "unfingerprinted"}),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_wire).collect()),
        Value::Map(m) => {
            let obj: serde_json::Map<String, serde_json::Value> =
                m.iter().map(|(k, v)| (k.clone(), to_wire(v))).collect();
            if m.len() == 1 && m.keys().next().is_some_and(|k| k.starts_with('$')) {
                json!({ "$map": obj })
            } else {
                serde_json::Value::Object(obj)
            }
        }
        v => v.to_json_clear(),
    }
}

fn from_wire(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Array(a) => Value::List(a.iter().map(from_wire).collect()),
        serde_json::Value::Object(o) => {
            if o.len() == 1 {
                let (k, v) = o.iter().next().expect("len 1");
                match (k.as_str(), v) {
                    ("$unknown", _) => return Value::Unknown,
                    ("$redacted", serde_json::Value::String(h)) => return Value::Redacted(h.clone()),
                    ("$map", serde_json::Value::Object(inner)) => {
                        return Value::Map(inner.iter().map(|(k, v)| (k.clone(), from_wire(v))).collect());
                    }
                    _ => {}
                }
            }
            Value::Map(o.iter().map(|(k, v)| (k.clone(), from_wire(v))).collect())
        }
        j => Value::from_json(j),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_keeps_special_variants() {
        let v = Value::map([
            ("a", Value::Unknown),
            ("b", Value::Redacted("hmac-sha256:00".into())),
            ("c", Value::map([("$x", Value::Int(1))])),
            ("d", Value::List(vec![Value::Bool(true), Value::Float(1.5)])),
        ]);
        let s = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn clear_secret_is_never_serialized() {
        let v = Value::str("hunter2").sensitive();
        let s = serde_json::to_string(&v).unwrap();
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn path_through_sensitive_stays_sensitive() {
        let v = Value::map([("k", Value::map([("x", Value::str("s"))]).sensitive())]);
        let got = v.get_path(&["k".into(), "x".into()]).unwrap();
        assert!(got.is_sensitive());
        assert_eq!(got.to_string(), MASK);
    }
}
