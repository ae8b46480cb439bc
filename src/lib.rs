//! skyform: a declarative plan/apply engine.
pub mod cli;
