//! The verbs that change nothing and read no cloud: `validate`, `graph`, `output`, `show`.

use std::path::Path;

use super::{Loaded, OpError, SpecOptions, error, load};
use crate::address::Mode;
use crate::diag::Diagnostics;
use crate::plan::Plan;
use crate::providers::Registry;
use crate::value::Value;

/// A valid spec, counted.
pub struct Validated {
    /// Warnings (errors abort).
    pub warnings: Diagnostics,
    /// Managed resource instances.
    pub resources: usize,
    /// Data source instances.
    pub data_sources: usize,
    /// Provider blocks.
    pub providers: usize,
}

/// Checks the spec against the provider schemas. No variable needs a value; nothing is read.
pub fn validate(opts: &SpecOptions, registry: Registry) -> Result<Validated, OpError> {
    let loaded = load(&SpecOptions { lenient_vars: true, ..opts.clone() }, registry)?;
    let count = |m: Mode| loaded.spec.resources.keys().filter(|a| a.mode == m).count();
    Ok(Validated {
        resources: count(Mode::Managed),
        data_sources: count(Mode::Data),
        providers: loaded.spec.providers.len(),
        warnings: loaded.warnings,
    })
}

/// The dependency graph as DOT. No variable needs a value.
pub fn graph(opts: &SpecOptions, registry: Registry) -> Result<String, OpError> {
    let loaded = load(&SpecOptions { lenient_vars: true, ..opts.clone() }, registry)?;
    Ok(crate::graph::dot::to_dot(&loaded.graph))
}

/// The outputs recorded by the last apply (all, or the one named), secrets as fingerprints.
pub fn output(loaded: &Loaded, name: Option<&str>) -> Result<Vec<(String, Value)>, OpError> {
    let state = loaded.backend.load()?;
    let outputs: Vec<(String, Value)> =
        state.outputs.into_iter().filter(|(k, _)| name.is_none_or(|n| n == k)).collect();
    if let Some(n) = name
        && outputs.is_empty()
    {
        return Err(error(format!("no output named `{n}` in the state; outputs are recorded by apply")));
    }
    Ok(outputs)
}

/// A saved plan, read without touching the spec, the state or any cloud.
pub fn show(file: &Path) -> Result<Plan, OpError> {
    Ok(crate::plan::file::load(file)?)
}
