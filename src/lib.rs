//! skyform: a declarative plan/apply engine.
//!
//! Layers (imports flow one way): [`cli`] → [`ops`] → [`engine`] → {[`graph`],
//! [`plan`], [`state`], [`providers`]} → {[`spec`], [`value`]}.
//!
//! - [`spec`]: TOML → a positioned model; interpolation; validation.
//! - [`graph`]: the dependency DAG (petgraph), cycles, DOT.
//! - [`plan`]: the change model (data, serde, deterministic order).
//! - [`engine`]: planner (read + diff), applier (bounded parallel walk), checks, drift.
//! - [`state`]: what skyform manages, with no secrets; journal + snapshot, in local files or a bucket.
//! - [`providers`]: the provider contract and registry.
//! - [`secrets`]: keyed fingerprints that replace secrets in state and plans.
//! - [`join`]: awaiting many futures at once (checks, state deletes).
pub mod address;
pub mod cli;
pub mod diag;
pub mod engine;
pub mod foundation;
pub mod graph;
pub mod join;
pub mod ops;
pub mod plan;
pub mod providers;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod value;
