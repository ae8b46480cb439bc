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

use crate::address::{Address, ModuleStep, Target};
use crate::diag::{Diagnostic, Diagnostics};
use crate::spec::model::Spec;
use crate::state::State;

/// One planned move of a state record.
pub type Move = (Address, Address);

/// Whether the module path `a` lies under `prefix` (a step of `prefix`
/// without a key matches every instance of that module).
fn under(a: &[ModuleStep], prefix: &[ModuleStep]) -> bool {
    a.len() >= prefix.len()
        && prefix.iter().zip(a).all(|(p, m)| p.name == m.name && (p.key.is_none() || p.key == m.key))
}

/// `a` with its module prefix `from` replaced by `to`; the instance keys that
/// `from` left open are carried over where `to` leaves them open too.
fn rebase(a: &Address, from: &[ModuleStep], to: &[ModuleStep]) -> Address {
    let mut module: Vec<ModuleStep> = to.to_vec();
    if from.len() == to.len() {
        for (i, step) in module.iter_mut().enumerate() {
            if step.key.is_none() && from[i].key.is_none() {
                step.key = a.module[i].key.clone();
            }
        }
    }
    module.extend(a.module[from.len()..].iter().cloned());
    Address { module, ..a.clone() }
}

/// What `[[moved]]` blocks do to the state.
#[derive(Debug, Default, PartialEq)]
pub struct Moves {
    /// Records moved, `(from, to)`, in block order (a chain `a → b`, `b → c`
    /// moves `a` to `c`).
    pub moves: Vec<Move>,
    /// Duplicates left by a move an interrupted apply recorded half-way (the
    /// same record at the old and the new address): dropped from state.
    pub dropped: Vec<Address>,
}

/// The state records each `[[moved]]` block moves. Errors: a move onto an
/// address that holds another object, a move between a module and a resource.
pub fn plan_moves(spec: &Spec, state: &State) -> Result<Moves, Diagnostics> {
    // original address -> current address
    let mut addrs: BTreeMap<Address, Address> = state.resources.keys().map(|a| (a.clone(), a.clone())).collect();
    let mut dropped = Vec::new();
    let mut errors = Vec::new();
    for m in &spec.moved {
        let (from, to) = (&m.from.node, &m.to.node);
        // current address -> original address
        let mut current: BTreeMap<Address, Address> =
            addrs.iter().map(|(orig, cur)| (cur.clone(), orig.clone())).collect();
        let pairs: Vec<(Address, Address)> = match (from, to) {
            (Target::Resource(f), Target::Resource(t)) => {
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
            (Target::Module(f), Target::Module(t)) => {
                current.keys().filter(|a| under(&a.module, f)).map(|a| (a.clone(), rebase(a, f, t))).collect()
            }
            _ => {
                errors.push(
                    Diagnostic::error(
                        Some(m.pos.clone()),
                        format!(
                            "`moved` from `{}` to `{}`: both must be resources, or both modules",
                            m.from.node, m.to.node
                        ),
                    )
                    .with_hint("move a resource to a resource address, a module to a module address"),
                );
                continue;
            }
        };
        for (f, t) in pairs {
            let rec = |a: &Address| current.get(a).and_then(|o| state.resources.get(o));
            // The same record at both ends is a move a killed apply recorded
            // half-way (the new address written, the old not yet removed):
            // finishing it is what the move says; the duplicate is dropped.
            let same = rec(&f).is_some() && rec(&f) == rec(&t);
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
                if let Some(other) = current.insert(t.clone(), orig.clone())
                    && other != orig
                {
                    addrs.remove(&other);
                    dropped.push(other);
                }
                addrs.insert(orig, t);
            }
        }
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    Ok(Moves { moves: addrs.into_iter().filter(|(o, c)| o != c).collect(), dropped })
}

/// `state` with `moves` applied (records keep their data, under new
/// addresses) and the `dropped` duplicates removed.
pub fn apply_moves(state: &State, moves: &[Move], dropped: &[Address]) -> State {
    let mut s = state.clone();
    for a in dropped {
        s.resources.remove(a);
    }
    let taken: Vec<_> = moves.iter().filter_map(|(f, t)| s.resources.remove(f).map(|r| (t.clone(), r))).collect();
    for (t, r) in taken {
        s.resources.insert(t, r);
    }
    s
}

/// The state addresses `[[removed]]` blocks with `destroy = false` forget:
/// not in the spec, and matched by the block (an instance, every instance of a
/// resource, or everything under a module path). `state` is the state with
/// the moves done. A removed address that is still in the spec is an error.
pub fn forgotten(spec: &Spec, state: &State) -> Result<Vec<Address>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in &spec.removed {
        let matches = |a: &Address| r.from.node.matches(a);
        if spec.resources.keys().any(matches) {
            errors.push(
                Diagnostic::error(
                    Some(r.from.pos.clone()),
                    format!("`removed` names `{}`, which is still in the spec", r.from.node),
                )
                .with_hint(
                    "delete its block from the spec first; `removed` says what to do with the object once it is gone",
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;
    use crate::state::{ResourceState, ResourceStatus};
    use crate::value::Value;

    fn record(id: &str) -> ResourceState {
        ResourceState {
            provider: "test".into(),
            identity: Value::str(id),
            attrs: BTreeMap::new(),
            dependencies: vec![],
            private: Value::Null,
            status: ResourceStatus::Ready,
        }
    }

    fn spec(text: &str) -> Spec {
        load_str(std::path::Path::new("m.toml"), text).unwrap()
    }

    #[test]
    fn a_half_recorded_move_then_a_chain_drops_the_duplicate() {
        let mut state = State::new();
        state.resources.insert("t.a".parse().unwrap(), record("x"));
        state.resources.insert("t.b".parse().unwrap(), record("x"));
        let s = spec("[[moved]]\nfrom = \"t.a\"\nto = \"t.b\"\n\n[[moved]]\nfrom = \"t.b\"\nto = \"t.c\"\n");
        let m = plan_moves(&s, &state).unwrap();
        assert_eq!(m.moves, [("t.a".parse().unwrap(), "t.c".parse().unwrap())]);
        assert_eq!(m.dropped, ["t.b".parse::<Address>().unwrap()]);
        let after = apply_moves(&state, &m.moves, &m.dropped);
        assert_eq!(after.resources.keys().map(|a| a.to_string()).collect::<Vec<_>>(), ["t.c"]);
        // A different object at the target is refused.
        state.resources.insert("t.b".parse().unwrap(), record("y"));
        assert!(plan_moves(&s, &state).is_err());
    }

    #[test]
    fn module_moves_carry_instance_keys_and_removed_takes_module_paths() {
        let mut state = State::new();
        for a in ["module.squad[\"a\"].t.x", "module.squad[\"b\"].t.x", "t.keep"] {
            state.resources.insert(a.parse().unwrap(), record(a));
        }
        let s = spec("[[moved]]\nfrom = \"module.squad\"\nto = \"module.team\"\n");
        let m = plan_moves(&s, &state).unwrap();
        let to: Vec<String> = m.moves.iter().map(|(_, t)| t.to_string()).collect();
        assert_eq!(to, ["module.team[\"a\"].t.x", "module.team[\"b\"].t.x"]);
        let after = apply_moves(&state, &m.moves, &m.dropped);
        let s = spec("[[removed]]\nfrom = \"module.team\"\ndestroy = false\n");
        let f = forgotten(&s, &after).unwrap();
        assert_eq!(f.len(), 2, "{f:?}");
        let s = spec("[resource.t.keep]\nname = \"k\"\n\n[[removed]]\nfrom = \"t.keep\"\ndestroy = false\n");
        assert!(forgotten(&s, &after).is_err(), "removed names a resource still in the spec");
    }
}
