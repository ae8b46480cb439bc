//! state list / show / rm / unlock, and import.

use std::time::Duration;

use super::{Loaded, OpError, error};
use crate::address::{Address, Target};
use crate::engine::diff::mark_sensitive;
use crate::graph::provider_of;
use crate::providers::{ReadRequest, SchemaKind};
use crate::state::{Backend, LockInfo, ResourceState, ResourceStatus, StateRecord};
use crate::value::Value;

/// Managed addresses (those the targets name, when there are any).
pub fn list(loaded: &Loaded, targets: &[Target]) -> Result<Vec<Address>, OpError> {
    let state = loaded.backend.load()?;
    Ok(state.resources.keys().filter(|a| targets.is_empty() || targets.iter().any(|t| t.matches(a))).cloned().collect())
}

/// One record (secrets are fingerprints already).
pub fn show(loaded: &Loaded, addr: &Address) -> Result<ResourceState, OpError> {
    loaded
        .backend
        .load()?
        .resources
        .get(addr)
        .cloned()
        .ok_or_else(|| error(format!("{addr} is not in the state (see `skyform state list`)")))
}

/// Forgets what the targets name (an instance, every instance of a resource, everything under a
/// module) without touching the live objects; returns the addresses forgotten. A target that names
/// nothing in the state is an error, and then nothing is forgotten.
pub fn rm(loaded: &Loaded, targets: &[Target], lock_timeout: Duration) -> Result<Vec<Address>, OpError> {
    let _guard = loaded.backend.lock("state rm", lock_timeout)?;
    let state = loaded.backend.load()?;
    let mut gone = Vec::new();
    for t in targets {
        let named: Vec<&Address> = state.resources.keys().filter(|a| t.matches(a)).collect();
        if named.is_empty() {
            return Err(error(format!("{t} is not in the state (see `skyform state list`)")));
        }
        gone.extend(named.into_iter().cloned());
    }
    gone.sort();
    gone.dedup();
    let w = loaded.backend.writer(&state)?;
    w.record(&StateRecord::Serial { serial: state.serial + 1 })?;
    for a in &gone {
        w.record(&StateRecord::Remove { address: a.clone() })?;
    }
    w.compact()?;
    Ok(gone)
}

/// Removes a lock left behind by a crashed run (only the lock `id`, when given).
pub fn unlock(loaded: &Loaded, id: Option<&str>) -> Result<LockInfo, OpError> {
    Ok(loaded.backend.force_unlock(id)?)
}

/// Which way `state migrate` moves state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the local files into `[backend.gcs]`.
    ToBackend,
    /// From `[backend.gcs]` back into the local files.
    ToLocal,
}

/// Copies the state between the local files and the configured backend, both locked. Refuses when
/// the destination holds another lineage, or a newer serial of the same one. Returns the serial
/// copied and where to.
pub fn migrate(loaded: &Loaded, direction: Direction, lock_timeout: Duration) -> Result<(u64, String), OpError> {
    if loaded.spec.backend.is_none() {
        return Err(error("the spec has no `[backend.gcs]` block: there is nowhere to migrate to"));
    }
    let local: &dyn Backend = &loaded.local;
    let remote: &dyn Backend = loaded.backend.as_ref();
    let (from, to) = match direction {
        Direction::ToBackend => (local, remote),
        Direction::ToLocal => (remote, local),
    };
    let _from_lock = from.lock("state migrate", lock_timeout)?;
    let _to_lock = to.lock("state migrate", lock_timeout)?;
    if !from.exists()? {
        return Err(error(format!("there is no state at {} to migrate", from.describe())));
    }
    let state = from.load()?;
    if to.exists()? {
        let there = to.load()?;
        if there.lineage != state.lineage {
            return Err(error(format!(
                "{} already holds another state (lineage {}, this one is {}): refusing to replace it",
                to.describe(),
                there.lineage,
                state.lineage
            )));
        }
        if there.serial > state.serial {
            return Err(error(format!(
                "{} holds a newer serial of this state ({} there, {} here): refusing to go back",
                to.describe(),
                there.serial,
                state.serial
            )));
        }
    }
    // Nothing there, or an older serial of the same lineage: the copy replaces it.
    to.replace(&state)?;
    Ok((state.serial, to.describe()))
}

/// Takes an existing object under management: `import ADDR ID`.
pub async fn import(
    loaded: &Loaded,
    addr: &Address,
    id: &str,
    lock_timeout: Duration,
) -> Result<ResourceState, OpError> {
    let ctx = &loaded.context(std::sync::Arc::new(crate::engine::events::NoHook), 1, crate::engine::Cancel::new());
    if !loaded.spec.resources.contains_key(addr) {
        return Err(error(format!(
            "{addr} is not declared in the spec; add a [resource.{}.{}] block first",
            addr.type_name, addr.name
        )));
    }
    let _guard = loaded.backend.lock("import", lock_timeout)?;
    let state = loaded.backend.load()?;
    if state.resources.contains_key(addr) {
        return Err(error(format!("{addr} is already managed; `skyform state rm` it first to re-import")));
    }
    let provider_name = provider_of(&loaded.spec, &loaded.registry, addr);
    let values = crate::engine::scope::Values::default();
    let set = crate::engine::providers::ProviderSet::default();
    let p = match set.get(ctx, &values, &provider_name).await {
        crate::engine::providers::Slot::Configured(p) => p,
        crate::engine::providers::Slot::Deferred(w) => {
            return Err(error(format!(
                "provider.{provider_name} depends on {} which must exist before importing",
                w.join(", ")
            )));
        }
        crate::engine::providers::Slot::Failed(m) => return Err(error(m.to_string())),
    };
    let identity = p.import_identity(&addr.type_name, id).map_err(|e| error(e.to_string()))?;
    let live = p
        .read(&ReadRequest {
            address: addr.clone(),
            type_name: addr.type_name.clone(),
            identity: Some(identity.clone()),
            config: Value::Null,
            private: Value::Null,
        })
        .await
        .map_err(|e| error(format!("{addr}: reading {id}: {e}")))?
        .ok_or_else(|| error(format!("{addr}: no object with id {id:?} exists")))?;
    let fp = state.fingerprinter();
    let mut attrs = live.attrs;
    if let Some(schema) = loaded.registry.type_schema(SchemaKind::Resource, &addr.type_name) {
        mark_sensitive(schema, &mut attrs);
    }
    let rs = ResourceState {
        provider: provider_name,
        identity: fp.redact(&live.identity),
        attrs: attrs.iter().map(|(k, v)| (k.clone(), fp.redact(v))).collect(),
        dependencies: loaded.graph.resource_dependencies(addr),
        private: Value::Null,
        status: ResourceStatus::Ready,
    };
    let w = loaded.backend.writer(&state)?;
    w.record(&StateRecord::Serial { serial: state.serial + 1 })?;
    w.record(&StateRecord::Upsert { address: addr.clone(), resource: rs.clone() })?;
    w.compact()?;
    Ok(rs)
}
