//! Saved plans (`plan --out FILE`): JSON, secrets redacted, written 0600 through
//! [`crate::foundation::files::write_private`], as the state files and other outputs are.

use std::path::Path;

use super::{PLAN_FORMAT, Plan};
use crate::foundation::files::write_private;

/// Why a plan file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanFileError {
    /// Reading or writing failed.
    #[error("plan file {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The cause (in the message, so not also a `source`: printed once).
        error: std::io::Error,
    },
    /// Not a skyform plan, or another format version.
    #[error("plan file {path} is not a skyform plan of format {PLAN_FORMAT}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Writes a (redacted) plan: 0600, atomically, never through a symbolic link.
pub fn save(path: &Path, plan: &Plan) -> Result<(), PlanFileError> {
    let text = serde_json::to_vec_pretty(plan).expect("plans serialize");
    write_private(path, &text).map_err(|error| PlanFileError::Io { path: path.display().to_string(), error })
}

/// Reads a plan.
pub fn load(path: &Path) -> Result<Plan, PlanFileError> {
    let text =
        std::fs::read(path).map_err(|source| PlanFileError::Io { path: path.display().to_string(), error: source })?;
    let plan: Plan = serde_json::from_slice(&text)
        .map_err(|e| PlanFileError::Invalid { path: path.display().to_string(), message: e.to_string() })?;
    if plan.format_version != PLAN_FORMAT {
        return Err(PlanFileError::Invalid {
            path: path.display().to_string(),
            message: format!("format_version is {:?}", plan.format_version),
        });
    }
    Ok(plan)
}
