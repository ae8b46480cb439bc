//! skyform: a declarative plan/apply engine.
//!
//! Layers (imports flow one way): [`cli`] → `ops` → `engine` → {`graph`, `plan`,
//! [`state`], [`providers`]} → {[`spec`], [`value`]}.
pub mod address;
pub mod cli;
pub mod diag;
pub mod providers;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod value;
