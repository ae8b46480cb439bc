//! The spec language: TOML files → a validated [`model::Spec`], and the
//! evaluation of its expressions.
//!
//! The pipeline, one module per step:
//! - [`load`]: reads a file or a directory of `*.toml` files into a
//!   [`model::Spec`], checking the shape of every block (kinds, names,
//!   meta-arguments) and parsing `${...}` interpolations ([`expr`]).
//! - [`vars`]: resolves variable values from defaults, `--var-file`,
//!   `SKYFORM_VAR_<name>` and `--var`.
//! - [`validate`]: checks every block against the provider schemas, without
//!   network: types, attributes, references, `depends_on`.
//! - [`eval`]: evaluates an expression against a [`eval::Scope`], with the
//!   closed set of [`functions`].
//!
//! Every error carries `file:line:column`, a message and, where one helps, a
//! hint; each step collects all its errors in one pass and never panics.
#![warn(missing_docs)]

pub mod eval;
pub mod expand;
pub mod expr;
pub mod functions;
pub mod load;
pub mod model;
pub mod validate;
pub mod vars;

mod backend;
pub mod checks;
mod convert;
mod meta;
mod policy;

pub use eval::{Scope, eval};
pub use load::{load, load_str};
pub use meta::parse_duration;
pub use validate::{validate, validate_with_vars};
pub use vars::resolve_variables;
