//! Release values: merging `values` and `values_yaml` as helm does, reading the
//! live (user-supplied) values back in the same two attributes, and keeping a
//! live htpasswd line that still verifies against the desired password.

use serde_json::Value as Json;

use crate::foundation::htpasswd;
use crate::providers::ProviderError;
use crate::value::Value;

/// `values_yaml` parsed (empty text: an empty table).
pub fn parse_yaml(text: &str) -> Result<Json, ProviderError> {
    if text.trim().is_empty() {
        return Ok(Json::Object(Default::default()));
    }
    let j: Json = serde_yaml::from_str(text)
        .map_err(|e| ProviderError::Permanent(format!("`values_yaml` is not valid YAML: {e}")))?;
    match j {
        Json::Object(_) => Ok(j),
        Json::Null => Ok(Json::Object(Default::default())),
        _ => Err(ProviderError::Permanent("`values_yaml` must be a YAML mapping".into())),
    }
}

/// `over` merged into `base` the way helm merges several `-f` files: tables
/// merge key by key, anything else replaces. A `null` is kept (helm then
/// removes the chart's default for that key).
pub fn merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => merge(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// `live` projected onto the keys of `shape` (tables recursively).
pub fn project(live: &Json, shape: &Json) -> Json {
    match (live, shape) {
        (Json::Object(l), Json::Object(s)) => Json::Object(
            s.iter().map(|(k, sv)| (k.clone(), l.get(k).map(|lv| project(lv, sv)).unwrap_or(Json::Null))).collect(),
        ),
        (l, _) => l.clone(),
    }
}

/// `live` with the keys `yaml` sets put back to what `values` says (or removed
/// when `values` does not say): what `values` must be for `values` merged with
/// `yaml` to give `live`.
pub fn without_yaml(live: &Json, values: &Json, yaml: &Json) -> Json {
    match (live, yaml) {
        (Json::Object(l), Json::Object(y)) => {
            let mut out = l.clone();
            for (k, yv) in y {
                let vv = values.get(k);
                match (l.get(k), vv) {
                    (Some(lv), Some(vv)) if yv.is_object() && lv.is_object() => {
                        out.insert(k.clone(), without_yaml(lv, vv, yv));
                    }
                    (Some(lv), None) if yv.is_object() && lv.is_object() => {
                        let rest = without_yaml(lv, &Json::Null, yv);
                        if rest.as_object().is_some_and(|m| m.is_empty()) {
                            out.remove(k);
                        } else {
                            out.insert(k.clone(), rest);
                        }
                    }
                    (_, Some(vv)) => {
                        out.insert(k.clone(), vv.clone());
                    }
                    (_, None) => {
                        out.remove(k);
                    }
                }
            }
            Json::Object(out)
        }
        (l, _) => l.clone(),
    }
}

/// Whether a string looks like an htpasswd bcrypt line (`user:$2y$...`).
fn is_htpasswd(s: &str) -> bool {
    s.split_once(':').is_some_and(|(u, h)| !u.is_empty() && h.starts_with("$2") && h.len() == 60)
}

/// `desired` with every htpasswd line replaced by the live line at the same
/// place when that live line hashes the same user and password (see
/// [`htpasswd::equivalent`]): an unchanged password keeps its live hash, so plans
/// stay clean and applies do not rotate it. Sensitivity is kept.
pub fn reuse_htpasswd(desired: &Value, live: Option<&Json>) -> Value {
    let Some(live) = live else { return desired.clone() };
    match desired {
        Value::Sensitive(inner) => reuse_htpasswd(inner, Some(live)).sensitive(),
        Value::String(s) if is_htpasswd(s) => match live.as_str() {
            Some(l) if l != s && htpasswd::equivalent(s, l) => Value::str(l),
            _ => desired.clone(),
        },
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), reuse_htpasswd(v, live.get(k)))).collect()),
        Value::List(l) => Value::List(l.iter().enumerate().map(|(i, v)| reuse_htpasswd(v, live.get(i))).collect()),
        v => v.clone(),
    }
}

/// The clear text of every secret inside `v`, for masking tool output.
pub fn secret_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Sensitive(inner) => {
            let mut all = Vec::new();
            leaf_strings(inner, &mut all);
            out.extend(all);
        }
        Value::Map(m) => m.values().for_each(|x| secret_strings(x, out)),
        Value::List(l) => l.iter().for_each(|x| secret_strings(x, out)),
        _ => {}
    }
}

fn leaf_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            out.push(s.clone());
            // A secret also appears base64-encoded in a Secret's data.
            use base64::Engine as _;
            out.push(base64::engine::general_purpose::STANDARD.encode(s));
        }
        Value::Sensitive(i) => leaf_strings(i, out),
        Value::Map(m) => m.values().for_each(|x| leaf_strings(x, out)),
        Value::List(l) => l.iter().for_each(|x| leaf_strings(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_merges_after_values_and_can_be_taken_back_out() {
        let values = json!({"apiService": {"config": {"a": 1}, "name": "x"}, "rbac": {"create": true}});
        let yaml = parse_yaml("apiService:\n  config: null\n").unwrap();
        let mut merged = values.clone();
        merge(&mut merged, &yaml);
        assert_eq!(merged, json!({"apiService": {"config": null, "name": "x"}, "rbac": {"create": true}}));
        assert_eq!(project(&merged, &yaml), yaml);
        assert_eq!(without_yaml(&merged, &values, &yaml), values);
    }

    #[test]
    fn a_verifying_live_hash_is_kept_and_a_changed_password_is_not() {
        let f = |u: &str, p: &str| {
            crate::spec::functions::call(
                "htpasswd",
                vec![Value::str(u), Value::str(p)],
                std::path::Path::new("/"),
                &crate::diag::Pos { file: std::sync::Arc::new(std::path::PathBuf::new()), line: 1, col: 1 },
            )
            .unwrap()
        };
        // Made by an earlier run: another salt.
        let live_line = format!("admin:{}", bcrypt::hash("pw", 4).unwrap());
        let live = json!({"ingress": {"authCredentials": live_line}});
        let desired = Value::map([("ingress", Value::map([("authCredentials", f("admin", "pw"))]))]);
        let got = reuse_htpasswd(&desired, Some(&live));
        assert_eq!(got.unmarked().to_json_clear(), live);
        assert!(got.has_sensitive());
        let changed = Value::map([("ingress", Value::map([("authCredentials", f("admin", "new"))]))]);
        assert_ne!(reuse_htpasswd(&changed, Some(&live)).unmarked().to_json_clear(), live);
    }
}
