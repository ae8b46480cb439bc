//! Data documents beside the policies, as `opa eval -d DIR` loads them: every `.json`, `.yaml`
//! and `.yml` file under a policy directory is merged into `data` at the path of its directory
//! relative to that policy directory (the file's own name does not count), so
//! `policies/registries/data.json` holding `{"allowed": [...]}` is `data.registries.allowed`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as J;

use crate::diag::{Diagnostic, Pos};

/// A data file and the policy directory it was found under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct DataFile {
    /// The policy directory (`--policy DIR`, a `[policy]` path).
    pub root: PathBuf,
    /// The file.
    pub path: PathBuf,
}

/// Whether `p` is a data document by its extension.
pub(super) fn is_data(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "json" || x == "yaml" || x == "yml")
}

impl DataFile {
    /// The document, nested under its directory's path: `{"registries": {"allowed": [...]}}`.
    /// A file that does not parse is a located error (serde's line and column).
    pub fn document(&self, text: &str) -> Result<J, Diagnostic> {
        let at = |line: usize, col: usize, msg: String| {
            let pos = Pos { file: Arc::new(self.path.clone()), line: line as u32, col: col as u32 };
            Diagnostic::error(Some(pos), format!("policy data: {msg}"))
        };
        let value: J = if self.path.extension().is_some_and(|x| x == "json") {
            serde_json::from_str(text).map_err(|e| at(e.line(), e.column(), e.to_string()))?
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                at(line, col, e.to_string())
            })?
        };
        if !value.is_object() {
            return Err(at(1, 1, "a data document must be an object".into()));
        }
        let dir = self.path.parent().and_then(|d| d.strip_prefix(&self.root).ok()).unwrap_or(Path::new(""));
        let nested = dir.components().rev().fold(value, |inner, c| {
            J::Object([(c.as_os_str().to_string_lossy().into_owned(), inner)].into_iter().collect())
        });
        Ok(nested)
    }
}
