//! The machine formats (`--json`), documented in `docs/plan-format.md`.
//! Values are masked exactly as in the human rendering.

use serde_json::{Value as J, json};

use crate::address::Mode;
use crate::engine::Event;
use crate::plan::{Plan, ResourceChange};
use crate::value::Value;

/// The plan as JSON (format version "1").
pub fn plan(p: &Plan) -> J {
    let s = p.summary();
    json!({
        "format_version": crate::plan::PLAN_FORMAT,
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
    })
}

fn attrs(m: &Option<std::collections::BTreeMap<String, Value>>) -> J {
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
            Some(crate::address::InstanceKey::Int(i)) => json!(i),
            Some(crate::address::InstanceKey::Str(s)) => json!(s),
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

/// One streamed event.
pub fn event(e: &Event) -> J {
    serde_json::to_value(e).unwrap_or(J::Null)
}
