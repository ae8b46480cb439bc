//! The values references resolve to while planning or applying.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::address::Address;
use crate::spec::eval::Scope;
use crate::spec::model::Reference;
use crate::value::Value;

/// Resource values known so far (planned values while planning; real results
/// while applying), shared by the tasks of a walk.
#[derive(Clone, Default)]
pub struct Values(Arc<Mutex<BTreeMap<Address, Value>>>);

impl Values {
    /// Records the value of a resource (a map of its attributes, or unknown).
    pub fn set(&self, a: &Address, v: Value) {
        self.0.lock().expect("values lock").insert(a.clone(), v);
    }
    /// The value of a resource.
    pub fn get(&self, a: &Address) -> Option<Value> {
        self.0.lock().expect("values lock").get(a).cloned()
    }
    /// Whether some resource's value satisfies `f`.
    pub fn any(&self, f: impl Fn(&Address, &Value) -> bool) -> bool {
        self.0.lock().expect("values lock").iter().any(|(a, v)| f(a, v))
    }
}

/// A [`Scope`] over variables and resource values.
pub struct EvalScope<'a> {
    /// Variables.
    pub vars: &'a BTreeMap<String, Value>,
    /// Resource values.
    pub values: &'a Values,
    /// Where `file()` paths are relative to.
    pub dir: PathBuf,
}

impl Scope for EvalScope<'_> {
    fn lookup(&self, r: &Reference) -> Option<Value> {
        match r {
            Reference::Var(name) => self.vars.get(name).cloned(),
            Reference::Resource { address, path } => {
                // A resource that has not been evaluated (its dependency failed or
                // it is not part of this run) is unknown rather than missing: the
                // validator has already checked that the reference is well formed.
                let v = self.values.get(address).unwrap_or(Value::Unknown);
                if path.is_empty() {
                    return Some(v);
                }
                Some(v.get_path(path).unwrap_or(match v {
                    Value::Unknown => Value::Unknown,
                    _ => Value::Null,
                }))
            }
            // Replaced by `spec::expand` before the engine sees the spec.
            _ => None,
        }
    }

    fn base_dir(&self) -> &Path {
        &self.dir
    }
}
