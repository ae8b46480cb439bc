//! The policy gate of the verbs (`docs/policy.md`): which policies a run evaluates (`[policy]`
//! of the root spec, plus `--policy DIR`), the input documents (a plan; the live objects), and
//! what a deny does: refuse (plan, apply), or report `policy_failed` (drift, check).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Loaded, OpError};
use crate::address::Address;
use crate::diag::{Diagnostic, Diagnostics};
use crate::engine::planner::Observation;
use crate::engine::scope::{EvalScope, Values};
use crate::foundation::trust;
use crate::plan::Plan;
use crate::plan::json::LiveResource;
use crate::policy::{DEFAULT_NAMESPACE, Outcome, PolicyError, PolicySet};
use crate::providers::{Registry, SchemaKind};
use crate::spec::model::Spec;
use crate::value::Value;

/// Loads the policies of `[policy] paths` (relative to the spec's directory) and of `extra`
/// (`--policy DIR`, relative to where skyform runs). None at all: the empty set, which finds
/// nothing. A file that does not parse or compile is a located error, as a spec error is.
pub fn load(spec: &Spec, extra: &[PathBuf]) -> Result<PolicySet, OpError> {
    let mut dirs = Vec::new();
    let mut missing = Diagnostics::default();
    if let Some(block) = &spec.policy {
        for p in &block.paths {
            let path = spec.dir.join(&p.node);
            if !path.exists() {
                missing.push(
                    Diagnostic::error(Some(p.pos.clone()), format!("policy path `{}` does not exist", p.node))
                        .with_hint(format!("paths are relative to the spec's directory ({})", spec.dir.display())),
                );
                continue;
            }
            // A spec is untrusted input: it names policies under its own directory only (the
            // operator's `--policy` may name any).
            if let Err(e) = trust::confine(&spec.dir, &path) {
                missing.push(
                    Diagnostic::error(Some(p.pos.clone()), format!("policy path {e}"))
                        .with_hint(trust::OutsideRoot::hint()),
                );
                continue;
            }
            dirs.push(path);
        }
    }
    for p in extra {
        if !p.exists() {
            missing.push(Diagnostic::error(None, format!("--policy {}: no such directory", p.display())));
        }
        dirs.push(p.clone());
    }
    if !missing.is_empty() {
        return Err(OpError::Diagnostics(missing));
    }
    let namespace = spec.policy.as_ref().and_then(|b| b.namespace.as_ref());
    if dirs.is_empty() {
        return Ok(PolicySet::empty());
    }
    PolicySet::load(&dirs, namespace.map(|n| n.node.as_str()).unwrap_or(DEFAULT_NAMESPACE)).map_err(|e| match e {
        PolicyError::Invalid(mut d) => {
            if let Some(n) = namespace {
                for x in &mut d.0 {
                    x.pos.get_or_insert(n.pos.clone());
                }
            }
            OpError::Diagnostics(d)
        }
        e => OpError::Policy(e),
    })
}

/// What a policy input says besides resources: the variables and each provider block's
/// configuration as far as the variables alone say (a value from a resource is unknown), with
/// every sensitive attribute left out: no credential reaches a policy.
pub fn context(loaded: &Loaded) -> (BTreeMap<String, Value>, BTreeMap<String, BTreeMap<String, Value>>) {
    let values = Values::default();
    let scope = EvalScope { vars: &loaded.vars, values: &values, dir: loaded.spec.dir.clone() };
    let mut providers = BTreeMap::new();
    for (name, block) in &loaded.spec.providers {
        let schema = loaded.registry.schemas().find(|s| s.name == name.as_str());
        let Ok(Value::Map(config)) = crate::spec::eval(&block.config, &scope) else { continue };
        let kept: BTreeMap<String, Value> = config
            .into_iter()
            .filter(|(k, v)| {
                let secret_attr = schema.and_then(|s| s.config_attr(k)).is_some_and(|a| a.sensitive || a.write_only);
                !secret_attr && !v.has_sensitive()
            })
            .collect();
        providers.insert(name.clone(), kept);
    }
    ((*loaded.vars).clone(), providers)
}

/// Evaluates the policies on `plan` (the document `plan --json` prints) and records the outcome
/// in it. Whether a deny refuses is the caller's decision.
pub fn evaluate_plan(loaded: &Loaded, plan: &mut Plan) -> Result<(), OpError> {
    if loaded.policies.is_empty() {
        return Ok(());
    }
    let outcome = loaded.policies.evaluate(crate::plan::json::input(plan))?;
    plan.policy = Some(outcome);
    Ok(())
}

/// The gate of apply: evaluates, records, and refuses when anything denies.
pub fn gate(loaded: &Loaded, plan: &mut Plan) -> Result<(), OpError> {
    evaluate_plan(loaded, plan)?;
    match &plan.policy {
        Some(o) if o.denied() => Err(OpError::PolicyDenied(o.clone())),
        _ => Ok(()),
    }
}

/// Evaluates the policies on the live objects a read found (`drift`, `check`): the input is
/// [`crate::plan::json::live`], sensitive attributes masked by their schema.
pub fn evaluate_live(
    loaded: &Loaded,
    plan: &Plan,
    observations: &BTreeMap<Address, Observation>,
) -> Result<Outcome, OpError> {
    let masked: Vec<(&Address, &str, BTreeMap<String, Value>)> = observations
        .iter()
        .filter_map(|(a, o)| {
            let live = o.live.as_ref()?;
            let provider = plan.get(a).map(|c| c.provider.as_str()).unwrap_or_default();
            Some((a, provider, masked_attrs(&loaded.registry, a, &live.attrs)))
        })
        .collect();
    let (variables, providers) = context(loaded);
    let input = crate::plan::json::live(
        masked.iter().map(|(address, provider, attrs)| LiveResource { address, provider, attrs }),
        &variables,
        &providers,
    );
    Ok(loaded.policies.evaluate(input)?)
}

/// Live attributes with the schema's sensitivity applied (a read may return a secret the spec
/// never wrapped: a Secret's data).
fn masked_attrs(registry: &Registry, a: &Address, attrs: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let kind = if a.mode == crate::address::Mode::Data { SchemaKind::Data } else { SchemaKind::Resource };
    let schema = registry.type_schema(kind, &a.type_name);
    attrs
        .iter()
        .map(|(k, v)| {
            let v = match schema.and_then(|s| s.attr(k)) {
                Some(attr) => attr.mark(v.clone()),
                None => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// The refusal's text: every deny, one a line.
pub fn denied_message(o: &Outcome) -> String {
    let lines: Vec<String> = o.denies().map(|f| format!("  deny: {f}")).collect();
    format!(
        "the policies deny this plan ({} {}):\n{}\nnothing was changed; fix the spec (or the policy) and plan again",
        lines.len(),
        if lines.len() == 1 { "result" } else { "results" },
        lines.join("\n")
    )
}
