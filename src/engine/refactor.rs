//! `[[moved]]` and `[[removed]]`: what the spec says about objects whose
//! address changed or that leave management, applied to a copy of the state
//! before planning (so a rename plans as "no changes", not destroy + create).
//!
//! A move takes the object recorded at `from` to `to`: an instance
//! (`a.b[0]`), a whole resource (`a.b` → `a.c`, every instance keeping its key
//! when both are repeated), a resource into or out of a module, or a whole
//! module (`module.a` → `module.b`). A move whose `from` holds nothing is
//! already done (or never applied) and is ignored; one whose `to` already holds
//! an object is an error.

use std::collections::BTreeMap;

use crate::address::{Address, ModuleStep, parse_module_path};
use crate::diag::{Diagnostic, Diagnostics};
use crate::spec::model::Spec;
use crate::state::State;

/// One planned move of a state record.
pub type Move = (Address, Address);

/// What one `moved` endpoint designates.
enum Endpoint {
    Resource(Address),
    Module(Vec<ModuleStep>),
}

fn endpoint(s: &str) -> Option<Endpoint> {
    match s.parse::<Address>() {
        Ok(a) => Some(Endpoint::Resource(a)),
        Err(_) => parse_module_path(s).map(Endpoint::Module),
    }
}

/// The state records each `[[moved]]` block moves, in block order (a chain
/// `a → b`, `b → c` moves `a` to `c`). Errors: a move onto an occupied
/// address, a move between a module and a resource.
pub fn plan_moves(spec: &Spec, state: &State) -> Result<Vec<Move>, Diagnostics> {
    let mut addrs: BTreeMap<Address, Address> = state.resources.keys().map(|a| (a.clone(), a.clone())).collect();
    let mut errors = Vec::new();
    for m in &spec.moved {
        let (Some(from), Some(to)) = (endpoint(&m.from.node), endpoint(&m.to.node)) else { continue };
        // current address -> original address
        let mut current: BTreeMap<Address, Address> = addrs.iter().map(|(orig, cur)| (cur.clone(), orig.clone())).collect();
        let pairs: Vec<(Address, Address)> = match (&from, &to) {
            (Endpoint::Resource(f), Endpoint::Resource(t)) => {
                if current.contains_key(f) {
                    vec![(f.clone(), t.clone())]
                } else if f.key.is_none() && t.key.is_none() {
                    // Every instance of a repeated resource, keys kept.
                    current
                        .keys()
                        .filter(|a| a.key.is_some() && Address { key: None, ..(*a).clone() } == *f)
                        .map(|a| (a.clone(), t.clone().with_key(a.key.clone())))
                        .collect()
                } else {
                    Vec::new()
                }
            }
            (Endpoint::Module(f), Endpoint::Module(t)) => current
                .keys()
                .filter(|a| a.module.len() >= f.len() && a.module[..f.len()] == f[..])
                .map(|a| {
                    let mut n = a.clone();
                    let mut module = t.clone();
                    module.extend(a.module[f.len()..].iter().cloned());
                    n.module = module;
                    (a.clone(), n)
                })
                .collect(),
            _ => {
                errors.push(
                    Diagnostic::error(
                        Some(m.pos.clone()),
                        format!("`moved` from `{}` to `{}`: both must be resources, or both modules", m.from.node, m.to.node),
                    )
                    .with_hint("move a resource to a resource address, a module to a module address"),
                );
                continue;
            }
        };
        for (f, t) in pairs {
            // The same record at both ends is a move a killed apply recorded
            // half-way (the new address written, the old not yet removed):
            // finishing it is what the move says.
            let same = current.get(&f).and_then(|o| state.resources.get(o)).is_some()
                && current.get(&f).and_then(|o| state.resources.get(o))
                    == current.get(&t).and_then(|o| state.resources.get(o));
            if current.contains_key(&t) && t != f && !same {
                errors.push(
                    Diagnostic::error(
                        Some(m.to.pos.clone()),
                        format!("cannot move `{f}` to `{t}`: the state already has an object at `{t}`"),
                    )
                    .with_hint(format!(
                        "`{t}` is taken; remove it first (`skyform state rm {t}`), or move to another address"
                    )),
                );
                continue;
            }
            if let Some(orig) = current.remove(&f) {
                if let Some(other) = current.insert(t.clone(), orig.clone()) {
                    // The half-moved duplicate at `t` is replaced by `orig`.
                    addrs.remove(&other);
                }
                addrs.insert(orig, t);
            }
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    Ok(addrs.into_iter().filter(|(o, c)| o != c).collect())
}

/// `state` with `moves` applied (records keep their data, under new addresses).
pub fn apply_moves(state: &State, moves: &[Move]) -> State {
    let mut s = state.clone();
    let taken: Vec<_> = moves.iter().filter_map(|(f, t)| s.resources.remove(f).map(|r| (t.clone(), r))).collect();
    for (t, r) in taken {
        s.resources.insert(t, r);
    }
    s
}

/// The state addresses `[[removed]]` blocks with `destroy = false` forget:
/// not in the spec, and matched by the block (an instance, every instance of a
/// resource, or everything under a module path). A removed address that is
/// still in the spec is an error.
pub fn forgotten(spec: &Spec, state: &State) -> Result<Vec<Address>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in &spec.removed {
        let from = &r.from.node;
        let matches = |a: &Address| a == from || (from.key.is_none() && a.config() == from.config() && a.module == from.module);
        if spec.resources.keys().any(matches) {
            errors.push(
                Diagnostic::error(Some(r.from.pos.clone()), format!("`removed` names `{from}`, which is still in the spec"))
                    .with_hint("delete its block from the spec first; `removed` says what to do with the object once it is gone"),
            );
            continue;
        }
        if !r.destroy {
            out.extend(state.resources.keys().filter(|a| matches(a)).cloned());
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    out.sort();
    out.dedup();
    Ok(out)
}
