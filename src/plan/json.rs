//! The plan as JSON (`plan --json`, `show --json`; `docs/plan-format.md`), which is also the
//! input document of policies (`docs/policy.md`). Values are masked exactly as in the human
//! rendering: no secret in clear, ever.

use std::collections::BTreeMap;

use serde_json::{Value as J, json};

use super::{Plan, ResourceChange};
use crate::address::{Address, InstanceKey, Mode};
use crate::value::Value;

/// The plan as JSON (format version "1"). `policy` (what the policies said) is present once
/// they were evaluated.
pub fn plan(p: &Plan) -> J {
    let mut doc = input(p);
    if let (Some(o), Some(m)) = (&p.policy, doc.as_object_mut()) {
        m.insert("policy".into(), serde_json::to_value(o).expect("outcomes serialize"));
    }
    doc
}

/// The policy input document of a plan: [`plan`] without the policies' own results.
pub fn input(p: &Plan) -> J {
    let s = p.summary();
    json!({
        "format_version": super::PLAN_FORMAT,
        "kind": if p.destroy { "destroy_plan" } else { "plan" },
        "summary": {"add": s.add, "change": s.change, "replace": s.replace, "destroy": s.destroy},
        "has_changes": p.has_changes(),
        "resource_changes": p.changes.iter().map(change).collect::<Vec<_>>(),
        "outputs": p.outputs.iter().map(|(k, v)| (k.clone(), json!({
            "value": v.to_json_masked(),
            "sensitive": v.has_sensitive(),
            "known": !v.has_unknown(),
        }))).collect::<serde_json::Map<_, _>>(),
        "warnings": p.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "moved": p.moved.iter().map(|(f, t)| json!({"from": f.to_string(), "to": t.to_string()})).collect::<Vec<_>>(),
        "forget": p.forget.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "checks": p.checks.iter().map(|c| json!({
            "name": c.name,
            "target": c.target,
            "after": c.after.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "variables": attrs(&Some(p.variables.clone())),
        "providers": p.providers.iter().map(|(k, m)| (k.clone(), attrs(&Some(m.clone())))).collect::<serde_json::Map<_, _>>(),
    })
}

/// One live object, for the policy input of `drift` and `check` (`kind: "live"`).
pub struct LiveResource<'a> {
    /// Which.
    pub address: &'a Address,
    /// Its provider.
    pub provider: &'a str,
    /// Its attributes as read now (secrets wrapped or redacted: masked here).
    pub attrs: &'a BTreeMap<String, Value>,
}

/// The policy input of `drift` and `check`: the shape of a plan whose every entry is one live
/// object (`action` `no_op`, `before` and `after` both the live attributes), so that the rules
/// written for plans hold live objects to the same terms.
pub fn live<'a>(
    resources: impl IntoIterator<Item = LiveResource<'a>>,
    variables: &BTreeMap<String, Value>,
    providers: &BTreeMap<String, BTreeMap<String, Value>>,
) -> J {
    let changes: Vec<J> = resources
        .into_iter()
        .map(|r| {
            let mut c = ResourceChange::new(r.address.clone(), r.provider.to_string(), super::Action::NoOp, Vec::new());
            c.before = Some(r.attrs.clone());
            c.after = Some(r.attrs.clone());
            change(&c)
        })
        .collect();
    json!({
        "format_version": super::PLAN_FORMAT,
        "kind": "live",
        "resource_changes": changes,
        "variables": attrs(&Some(variables.clone())),
        "providers": providers.iter().map(|(k, m)| (k.clone(), attrs(&Some(m.clone())))).collect::<serde_json::Map<_, _>>(),
    })
}

fn attrs(m: &Option<BTreeMap<String, Value>>) -> J {
    match m {
        None => J::Null,
        Some(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json_masked())).collect()),
    }
}

fn change(c: &ResourceChange) -> J {
    let unknown: Vec<&String> =
        c.after.iter().flat_map(|m| m.iter()).filter(|(_, v)| v.has_unknown()).map(|(k, _)| k).collect();
    let sensitive: Vec<&String> = c
        .after
        .iter()
        .chain(c.before.iter())
        .flat_map(|m| m.iter())
        .filter(|(_, v)| v.has_sensitive())
        .map(|(k, _)| k)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "address": c.address.to_string(),
        "module": c.address.module.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("."),
        "index": match &c.address.key {
            None => J::Null,
            Some(InstanceKey::Int(i)) => json!(i),
            Some(InstanceKey::Str(s)) => json!(s),
        },
        "mode": if c.address.mode == Mode::Data { "data" } else { "managed" },
        "type": c.address.type_name,
        "name": c.address.name,
        "provider": c.provider,
        "action": c.action,
        "reason": c.reason.as_ref().map(|r| r.to_string()),
        "changed": c.changed,
        "requires_replace": c.requires_replace,
        "before": attrs(&c.before),
        "after": attrs(&c.after),
        "after_unknown": unknown,
        "sensitive": sensitive,
        "notes": c.notes,
        "depends_on": c.depends_on.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}
