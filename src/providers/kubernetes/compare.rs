//! Comparing a desired object with the live one through a server-side dry-run.
//!
//! The server answers "what would the object be if skyform applied the desired
//! manifest now" (a dry-run apply with field manager `skyform`, forced). When
//! that answer equals the live object (minus bookkeeping such as
//! `resourceVersion` and `managedFields`), applying would change nothing: no
//! change, whatever defaults the server filled in. When it differs, [`overlay`]
//! shows the difference in the desired manifest's own terms: the desired value
//! wherever the dry-run and the live object agree, the live value where they do
//! not, and the live value of a field skyform set before but no longer wants
//! (the apply would remove it). So a plan shows exactly the fields another
//! manager changed, never a server default.

use serde_json::Value as Json;

use crate::value::Value;

/// Metadata fields that change on every write and are never compared.
const VOLATILE_META: [&str; 6] =
    ["resourceVersion", "managedFields", "generation", "creationTimestamp", "uid", "selfLink"];

/// `obj` without the fields that are bookkeeping rather than content
/// (`status`, volatile metadata).
pub fn strip_volatile(obj: &Json) -> Json {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Json::as_object_mut) {
            for k in VOLATILE_META {
                meta.remove(k);
            }
            // kubectl's client-side apply bookkeeping is not content either.
            if let Some(a) = meta.get_mut("annotations").and_then(Json::as_object_mut) {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
                if a.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    o
}

/// What applying `desired` would make of `live`, computed here rather than by the
/// server, for an identity that may read but not write (a server-side dry-run is
/// authorized as the write it rehearses, so a read-only drift job cannot ask for
/// one): `live` with every field `desired` sets replaced by its value. Tables
/// merge key by key; a list takes `desired`'s length, each item merged into the
/// live item at the same place (so the defaults the server filled into a
/// container or a port stay). It cannot know defaults the server would give a
/// field `desired` adds, nor fields an earlier apply owned that `desired` no
/// longer sets: a value written in another form than the server keeps (`0.5`
/// for `500m`) shows as a difference.
///
/// As the server does: a `null` field is absent (an apply removes it), an
/// empty table or list the live object lacks stays absent, and a Secret's
/// `stringData` is stored base64-encoded in `data`. Lists merge by position,
/// not by their merge keys: an item another manager added in the middle of a
/// list shows as a difference here where the server would keep it.
pub fn client_side_apply(desired: &Json, live: &Json) -> Json {
    merge_applied(&secret_string_data(desired), live)
}

fn merge_applied(desired: &Json, live: &Json) -> Json {
    match (desired, live) {
        (Json::Object(d), Json::Object(l)) => {
            let mut out = l.clone();
            for (k, dv) in d {
                if dv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => merge_applied(dv, lv),
                    // The server keeps no empty table or list (nor one of nulls only) that the live
                    // object lacks: `nodeSelector: {}`, `tolerations: []`.
                    None if is_empty(&without_nulls(dv)) => continue,
                    None => without_nulls(dv),
                };
                out.insert(k.clone(), merged);
            }
            Json::Object(out)
        }
        (Json::Array(d), Json::Array(l)) => Json::Array(
            d.iter()
                .enumerate()
                .map(|(i, dv)| l.get(i).map_or_else(|| without_nulls(dv), |lv| merge_applied(dv, lv)))
                .collect(),
        ),
        (d, _) => without_nulls(d),
    }
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Object(m) => m.values().all(is_empty),
        Json::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn without_nulls(v: &Json) -> Json {
    match v {
        Json::Object(m) => {
            Json::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect())
        }
        Json::Array(a) => Json::Array(a.iter().map(without_nulls).collect()),
        v => v.clone(),
    }
}

/// A Secret's `stringData` moved into `data`, base64-encoded (the server keeps no `stringData`).
fn secret_string_data(obj: &Json) -> Json {
    use base64::Engine as _;
    let mut obj = obj.clone();
    if obj.get("kind").and_then(Json::as_str) != Some("Secret") {
        return obj;
    }
    let Some(m) = obj.as_object_mut() else { return obj };
    let Some(Json::Object(strings)) = m.remove("stringData") else { return obj };
    let data = m.entry("data").or_insert_with(|| Json::Object(Default::default()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            data.insert(k, Json::String(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
    obj
}

/// The desired value, with the live value wherever the dry-run result (what an
/// apply would make) and the live object differ. Equal to `desired` exactly
/// when applying would change nothing that `desired` or skyform's earlier
/// applies cover.
pub fn overlay(desired: &Value, dry: Option<&Json>, live: Option<&Json>) -> Value {
    if dry == live {
        return desired.clone();
    }
    match (desired, dry, live) {
        (Value::Sensitive(inner), _, _) => overlay(inner, dry, live).sensitive(),
        (Value::Map(want), Some(Json::Object(d)), Some(Json::Object(l))) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, w) in want {
                let v = overlay(w, d.get(k), l.get(k));
                if !(matches!(v, Value::Null) && l.get(k).is_none()) {
                    out.insert(k.clone(), v);
                }
            }
            // A field the apply would remove or change that the spec does not
            // name: skyform set it earlier (the apply drops it) or the server
            // derives it from a changed field. Show its live value.
            for (k, lv) in l {
                if !want.contains_key(k) && d.get(k) != Some(lv) && d.get(k).is_none() {
                    out.insert(k.clone(), Value::from_json(lv));
                }
            }
            Value::Map(out)
        }
        (Value::List(want), Some(Json::Array(d)), Some(Json::Array(l)))
            if want.len() == d.len() && d.len() == l.len() =>
        {
            Value::List(want.iter().zip(d.iter().zip(l)).map(|(w, (d, l))| overlay(w, Some(d), Some(l))).collect())
        }
        (Value::Unknown, _, Some(l)) => Value::from_json(l),
        (_, _, Some(l)) => Value::from_json(l),
        (_, _, None) => Value::Null,
    }
}

/// `desired` with every leaf that is not known in clear here (unknown until
/// apply, or a secret that state keeps only as a fingerprint, such as a
/// private key shown once at creation) replaced by the live value at the same
/// place. The engine then compares that live value with the fingerprint: equal
/// exactly when the live object still holds the secret skyform put there.
pub fn fill_from_live(desired: &Value, live: Option<&Json>) -> Value {
    match (desired, live) {
        (Value::Unknown | Value::Redacted(_), Some(l)) => Value::from_json(l),
        (Value::Sensitive(inner), _) => fill_from_live(inner, live).sensitive(),
        (Value::Map(m), Some(l)) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), fill_from_live(v, l.get(k)))).collect())
        }
        (Value::List(items), Some(Json::Array(l))) => {
            Value::List(items.iter().enumerate().map(|(i, v)| fill_from_live(v, l.get(i))).collect())
        }
        (v, _) => v.clone(),
    }
}

/// The paths (`spec.replicas`, `data.auth`) where `a` and `b` differ, for
/// messages.
pub fn differing_paths(a: Option<&Json>, b: Option<&Json>, prefix: &str, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    // Keys such as `iam.gke.io/gcp-service-account` hold dots: quote them.
    let join = |k: &str| {
        if k.contains(['.', '[', ']', '"']) {
            format!("{prefix}[{}]", Json::String(k.to_string()))
        } else if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (Some(Json::Object(x)), Some(Json::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differing_paths(x.get(k), y.get(k), &join(k), out);
            }
        }
        (Some(Json::Array(x)), Some(Json::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differing_paths(Some(p), Some(q), &format!("{prefix}[{i}]"), out);
            }
        }
        _ => out.push(if prefix.is_empty() { "(whole object)".into() } else { prefix.to_string() }),
    }
}

/// The value at a dotted path with `[i]` indices and `["quoted.key"]`
/// segments, as produced by [`differing_paths`].
pub fn at_path<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    let mut cur = v;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("[\"") {
            // A quoted key: a JSON string up to the closing `"]`.
            let end = r.find("\"]")?;
            let key: String = serde_json::from_str(&format!("\"{}\"", &r[..end])).ok()?;
            cur = cur.get(key.as_str())?;
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            cur = cur.get(r[..end].parse::<usize>().ok()?)?;
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            cur = cur.get(&rest[..end])?;
            rest = &rest[end..];
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(j: Json) -> Value {
        Value::from_json(&j)
    }

    #[test]
    fn equal_dry_run_and_live_give_the_desired_value_even_with_defaults() {
        let desired = v(json!({"spec": {"replicas": 1, "cpu": 1}}));
        let live = json!({"spec": {"replicas": 1, "cpu": "1", "strategy": "RollingUpdate"}});
        assert_eq!(overlay(&desired, Some(&live.clone()), Some(&live)), desired);
    }

    #[test]
    fn a_changed_field_shows_its_live_value_only() {
        let desired = v(json!({"data": {"a": "1", "b": "2"}, "metadata": {"name": "x"}}));
        let dry = json!({"data": {"a": "1", "b": "2"}, "metadata": {"name": "x", "uid": "u"}});
        let live = json!({"data": {"a": "1", "b": "edited"}, "metadata": {"name": "x", "uid": "u"}});
        let got = overlay(&desired, Some(&dry), Some(&live));
        assert_eq!(got, v(json!({"data": {"a": "1", "b": "edited"}, "metadata": {"name": "x"}})));
    }

    #[test]
    fn a_removed_field_is_absent_and_a_dropped_one_is_shown() {
        let desired = v(json!({"labels": {"keep": "1", "gone": "2"}}));
        let dry = json!({"labels": {"keep": "1", "gone": "2"}});
        let live = json!({"labels": {"keep": "1", "old": "3"}});
        let got = overlay(&desired, Some(&dry), Some(&live));
        assert_eq!(got, v(json!({"labels": {"keep": "1", "old": "3"}})));
    }

    #[test]
    fn lists_compare_item_by_item() {
        let desired = v(json!({"c": [{"name": "a", "image": "x"}]}));
        let dry = json!({"c": [{"name": "a", "image": "x", "pull": "IfNotPresent"}]});
        let live = json!({"c": [{"name": "a", "image": "y", "pull": "IfNotPresent"}]});
        assert_eq!(overlay(&desired, Some(&dry), Some(&live)), v(json!({"c": [{"name": "a", "image": "y"}]})));
    }

    #[test]
    fn volatile_metadata_is_stripped_and_paths_are_named() {
        let a = strip_volatile(
            &json!({"metadata": {"resourceVersion": "1", "name": "n"}, "status": {}, "spec": {"r": [1, 2]}}),
        );
        assert_eq!(a, json!({"metadata": {"name": "n"}, "spec": {"r": [1, 2]}}));
        let mut out = vec![];
        differing_paths(Some(&json!({"spec": {"r": [1, 2]}})), Some(&json!({"spec": {"r": [1, 3]}})), "", &mut out);
        assert_eq!(out, vec!["spec.r[1]"]);
        assert_eq!(at_path(&json!({"spec": {"r": [1, 3]}}), "spec.r[1]"), Some(&json!(3)));
    }

    #[test]
    fn dotted_keys_are_quoted_and_found_again() {
        let a = json!({"metadata": {"annotations": {"iam.gke.io/x": "a"}}, "l": [1, {"k": 2}]});
        let b = json!({"metadata": {"annotations": {"iam.gke.io/x": "b"}}, "l": [1, {"k": 3}]});
        let mut paths = Vec::new();
        differing_paths(Some(&a), Some(&b), "", &mut paths);
        assert_eq!(paths, vec!["l[1].k".to_string(), "metadata.annotations[\"iam.gke.io/x\"]".to_string()]);
        assert_eq!(at_path(&b, &paths[0]), Some(&json!(3)));
        assert_eq!(at_path(&a, &paths[1]), Some(&json!("a")));
    }

    #[test]
    fn secrets_known_only_by_fingerprint_are_compared_with_the_live_value() {
        let desired = Value::map([(
            "data",
            Value::map([("key", Value::Redacted("hmac-sha256:00".into())), ("plain", Value::str("eA=="))]).sensitive(),
        )]);
        let live = json!({"data": {"key": "bGl2ZQ==", "plain": "eA=="}});
        let got = fill_from_live(&desired, Some(&live));
        assert_eq!(got.unmarked().to_json_clear(), live);
        assert!(got.get("data").unwrap().is_sensitive());
        assert_eq!(fill_from_live(&Value::Unknown, None), Value::Unknown);
    }

    #[test]
    fn client_side_apply_keeps_server_defaults_and_shows_changed_fields() {
        let live = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "api", "image": "x:1", "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "proxy", "image": "p:1"}]}}}, "metadata": {"name": "d", "labels": {"other": "1"}}});
        let same = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "api", "image": "x:1", "ports": [{"containerPort": 80}]}, {"name": "proxy", "image": "p:1"}]}}},
            "metadata": {"name": "d"}});
        assert_eq!(client_side_apply(&same, &live), live);
        let scaled = json!({"spec": {"replicas": 0}});
        let live_scaled = {
            let mut l = live.clone();
            l["spec"]["replicas"] = json!(0);
            l
        };
        assert_ne!(client_side_apply(&json!({"spec": {"replicas": 1}}), &live_scaled), live_scaled);
        assert_eq!(client_side_apply(&scaled, &live)["spec"]["replicas"], json!(0));
        // A container the spec no longer has is gone; one it adds appears as given.
        let one = json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "x:2"}]}}}});
        let got = client_side_apply(&one, &live);
        let cs = got.pointer("/spec/template/spec/containers").and_then(Json::as_array).unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["image"], "x:2");
        assert_eq!(cs[0]["imagePullPolicy"], "IfNotPresent");
        // A null is absent; a Secret's stringData is its data.
        let with_nulls =
            json!({"spec": {"template": {"metadata": {"annotations": null}, "spec": {"runtimeClassName": null}}}});
        assert_eq!(client_side_apply(&with_nulls, &live), live);
        let empties =
            json!({"spec": {"template": {"spec": {"nodeSelector": {}, "tolerations": [], "affinity": {"x": {}}}}}});
        assert_eq!(client_side_apply(&empties, &live), live);
        let not_empty = json!({"spec": {"template": {"spec": {"nodeSelector": {"pool": "gpu"}}}}});
        assert_ne!(client_side_apply(&not_empty, &live), live);
        let secret = json!({"kind": "Secret", "data": {"a": "eA=="}, "type": "Opaque"});
        let desired = json!({"kind": "Secret", "stringData": {"a": "x"}});
        assert_eq!(client_side_apply(&desired, &secret), secret);
        assert_ne!(client_side_apply(&json!({"kind": "Secret", "stringData": {"a": "y"}}), &secret), secret);
    }
}
