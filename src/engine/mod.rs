//! The engine: plans (read + diff, never mutates) and applies plans.
//!
//! - [`planner`]: walks the spec graph, reads every resource live, diffs, and
//!   produces a [`Plan`](crate::plan::Plan) plus the observations drift needs.
//! - [`applier`]: executes a plan in dependency order with bounded parallelism,
//!   persisting every finished step at once.
//! - [`drift`]: classifies differences between spec, state and live.
//! - [`checks`]: runs the HTTP probes of `[check.<name>]` blocks.
//! - [`walker`]: the bounded, skip-on-failure DAG walk both use.
//! - [`error`]: why a provider, a step or a check failed.
//! - [`events`]: what the engine reports; it never prints.

pub mod applier;
pub mod checks;
pub mod diff;
pub mod drift;
pub mod error;
pub mod events;
pub mod planner;
pub mod providers;
pub mod refactor;
pub mod scope;
pub mod walker;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::address::Address;
use crate::graph::SpecGraph;
use crate::providers::Registry;
use crate::spec::model::Spec;
use crate::value::Value;
pub use events::{Event, Hook};
pub use walker::Cancel;

/// Everything a plan or apply works with.
#[derive(Clone)]
pub struct Context {
    /// The spec.
    pub spec: Arc<Spec>,
    /// Its graph (acyclic).
    pub graph: Arc<SpecGraph>,
    /// Variable values (sensitive ones wrapped).
    pub vars: Arc<BTreeMap<String, Value>>,
    /// Provider factories.
    pub registry: Registry,
    /// Receives events.
    pub hook: Arc<dyn Hook>,
    /// How many resources are read or changed at once.
    pub parallelism: usize,
    /// Ctrl-C.
    pub cancel: Cancel,
}

/// Options of a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Plan to destroy everything managed.
    pub destroy: bool,
    /// Restrict to these resources and what they depend on.
    pub targets: Vec<Address>,
    /// Force replacement of these.
    pub replace: Vec<Address>,
    /// Leave these out, with everything that depends on them.
    pub exclude: Vec<Address>,
}
