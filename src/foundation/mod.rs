//! The foundation floor: what both the spec language and the providers stand on, with no I/O of
//! its own beyond the shared network client. Nothing here imports `spec`, `providers`, `state`,
//! `engine`, `ops` or `cli`.
//!
//! - [`schema`]: the attribute and resource schema types providers publish and `validate` checks
//!   against;
//! - [`names`]: the naming rules of the APIs (carried by schema attributes);
//! - [`net`]: the one HTTP client, the TLS set-up, and Google token sources, handed down to
//!   providers, the state bucket, checks and notifications;
//! - [`time`]: RFC 3339 times;
//! - [`htpasswd`]: htpasswd lines, made by the spec function and compared by the Helm provider;
//! - [`files`]: private, atomic file writes (plan files, state files, `--json-out`).
//! - [`trust`]: what a spec may not decide (where credentials go, which files it reads): the
//!   operator's switches.

pub mod files;
pub mod htpasswd;
pub mod names;
pub mod net;
pub mod schema;
pub mod time;
pub mod trust;
