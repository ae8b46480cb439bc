//! The spec language: TOML files → [`model::Spec`] with positioned expressions.
pub mod model;
