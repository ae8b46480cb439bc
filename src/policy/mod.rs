//! Policy as code: Rego policies evaluated in process (the `regorus` interpreter), with the
//! conventions of conftest so existing policies carry over (`docs/policy.md`).
//!
//! - [`PolicySet::load`] reads every `.rego` file under the given directories (sorted, so the
//!   set and its [`PolicySet::digest`] do not depend on the file system's order), and their data
//!   documents (`.json`, `.yaml`) as `opa eval -d` does. A file that does
//!   not parse or compile is a located diagnostic (`file:line:col`), like a spec error: nothing
//!   is evaluated, nothing changes.
//! - [`PolicySet::evaluate`] takes the input document (built by the floors above: the plan as in
//!   `docs/plan-format.md`, or the live objects for `drift` and `check`) and returns every result
//!   of the rules `deny`, `warn` and `violation` (and `deny_*`, `warn_*`, `violation_*`) of the
//!   packages under the namespace (`skyform` unless configured): [`Outcome`].
//!
//! This floor knows nothing of plans or providers: it turns a JSON document and a set of files
//! into findings. Deciding what a finding means (refuse an apply, report `policy_failed`) is the
//! job of the floors above.

mod data;
mod eval;
mod load;

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostics;

pub use load::{DEFAULT_NAMESPACE, PolicySet};

/// Why policies could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy file does not parse or compile (located diagnostics).
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A policy directory or file could not be read.
    #[error("policy {path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// Evaluating the policies failed (a conflict between rule values, a built-in error); the
    /// message names the file and position when the interpreter gives one.
    #[error("evaluating the policies: {0}")]
    Evaluation(String),
    /// A `deny`/`warn`/`violation` rule produced something that is not a result.
    #[error("policy rule data.{package}.{rule} must be a set of strings or of objects with a string `msg`, got {got}")]
    BadResult {
        /// The package.
        package: String,
        /// The rule.
        rule: String,
        /// What it produced (JSON, cut short).
        got: String,
    },
}

/// How serious a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Level {
    /// `deny` and `violation`: refuses the apply; a `policy_failed` finding in drift.
    Deny,
    /// `warn`: shown, refuses nothing.
    Warn,
}

impl Level {
    /// `deny` or `warn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Warn => "warn",
        }
    }
}

/// One result of one rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// Deny or warn.
    pub level: Level,
    /// The resource instance it is about (`address` of an object result), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The message (`msg`, or the string itself).
    pub msg: String,
    /// `id` of an object result (e.g. `SKY-SQL-001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The package, without `data.` (e.g. `skyform.skypilot`).
    pub package: String,
    /// The rule (`deny`, `warn_images`, `violation`).
    pub rule: String,
    /// The other fields of an object result, as JSON text (sorted keys), for tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

impl std::fmt::Display for Finding {
    /// `module.x.gcp_sql_instance.db: deletion protection is off [SKY-SQL-001]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = &self.address {
            write!(f, "{a}: ")?;
        }
        write!(f, "{}", self.msg)?;
        if let Some(id) = &self.id {
            write!(f, " [{id}]")?;
        }
        write!(f, " (data.{}.{})", self.package, self.rule)
    }
}

/// What a policy set said about one input document; recorded in saved plans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// [`PolicySet::digest`] of the set evaluated: a saved plan whose policies changed since is
    /// refused.
    pub digest: String,
    /// The policy files evaluated, as given.
    pub files: Vec<String>,
    /// Every result, denies first, then by address and message.
    pub findings: Vec<Finding>,
}

impl Outcome {
    /// The `deny`/`violation` results.
    pub fn denies(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Deny)
    }
    /// The `warn` results.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Warn)
    }
    /// Whether anything denies.
    pub fn denied(&self) -> bool {
        self.denies().next().is_some()
    }
}

#[cfg(test)]
mod tests;
