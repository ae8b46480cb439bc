//! Saved plans (`plan --out FILE`): JSON, secrets redacted, written 0600.

use std::io::Write;
use std::path::Path;

use super::{PLAN_FORMAT, Plan};

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

/// Writes a (redacted) plan.
pub fn save(path: &Path, plan: &Plan) -> Result<(), PlanFileError> {
    let io = |source| PlanFileError::Io { path: path.display().to_string(), error: source };
    let text = serde_json::to_vec_pretty(plan).expect("plans serialize");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
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
