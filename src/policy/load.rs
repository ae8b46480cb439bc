//! Reading a policy set: every `.rego` file under the directories, parsed and compiled once;
//! errors located as spec errors are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::PolicyError;
use super::data::{DataFile, is_data};
use crate::diag::{Diagnostic, Diagnostics, Pos};

/// The package namespace evaluated when none is configured (conftest's `--namespace`).
pub const DEFAULT_NAMESPACE: &str = "skyform";

/// A set of Rego policies, loaded and compiled, ready to evaluate.
#[derive(Clone)]
pub struct PolicySet {
    pub(super) engine: regorus::Engine,
    /// The files, in the order they were loaded (sorted paths).
    pub(super) files: Vec<PathBuf>,
    /// The namespace, split (`skyform` → `["skyform"]`).
    pub(super) namespace: Vec<String>,
    pub(super) digest: String,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet").field("files", &self.files).field("namespace", &self.namespace).finish()
    }
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet::empty()
    }
}

impl PolicySet {
    /// No policy at all: evaluating it finds nothing.
    pub fn empty() -> PolicySet {
        let namespace = vec![DEFAULT_NAMESPACE.to_string()];
        let digest = digest_of(&namespace, &[]);
        PolicySet { engine: regorus::Engine::new(), files: Vec::new(), namespace, digest }
    }

    /// Loads every `.rego` file under `dirs` (recursively; a directory named twice counts once;
    /// a path that is a file is taken as is), evaluating the packages under `namespace`
    /// (dot-separated, e.g. `skyform` or `acme.platform`).
    ///
    /// Every file's parse error is reported, located; then, when all parse, the set is compiled
    /// once and its first error located (the interpreter stops at it).
    pub fn load(dirs: &[PathBuf], namespace: &str) -> Result<PolicySet, PolicyError> {
        let namespace: Vec<String> = namespace.split('.').map(str::to_string).collect();
        if namespace.iter().any(|c| !is_rego_identifier(c)) {
            return Err(PolicyError::Invalid(Diagnostics(vec![
                Diagnostic::error(None, format!("`{}` is not a policy namespace", namespace.join(".")))
                    .with_hint("a namespace is a Rego package path such as `skyform` or `acme.platform`"),
            ])));
        }
        let _t = crate::timings::span("policy", || "load and compile".into());
        let mut files = Vec::new();
        let mut data = Vec::new();
        for d in dirs {
            collect(d, d, &mut files, &mut data)?;
        }
        files.sort();
        files.dedup();
        data.sort();
        data.dedup_by(|a, b| a.path == b.path);
        let mut engine = regorus::Engine::new();
        // Rego v1 (OPA 1.x's default): `if` and `contains` are required; `import rego.v1` is accepted.
        engine.set_rego_v0(false);
        // A built-in that fails is an error (as `opa eval --strict-builtin-errors`), never a silent
        // "undefined" that lets a deny rule pass.
        engine.set_strict_builtin_errors(true);
        let mut texts = Vec::new();
        let mut diags = Diagnostics::default();
        let mut data_texts = Vec::new();
        for d in &data {
            let text = std::fs::read_to_string(&d.path)
                .map_err(|error| PolicyError::Io { path: d.path.display().to_string(), error })?;
            match d.document(&text) {
                Ok(doc) => {
                    if let Err(e) = engine.add_data(regorus::Value::from(doc)) {
                        diags.push(Diagnostic::error(None, format!("policy data {}: {e}", d.path.display())));
                    }
                }
                Err(diag) => diags.push(diag),
            }
            data_texts.push((d.path.display().to_string(), text));
        }
        for f in &files {
            let text =
                std::fs::read_to_string(f).map_err(|error| PolicyError::Io { path: f.display().to_string(), error })?;
            if let Err(e) = engine.add_policy(f.display().to_string(), text.clone()) {
                diags.push(located(&e.to_string(), f));
            }
            texts.push(text);
        }
        if diags.is_empty() && !files.is_empty() {
            // Compiling (rule analysis, imports, functions) happens at the first evaluation.
            engine.set_input(regorus::Value::new_object());
            if let Err(e) = engine.eval_query("data".to_string(), false) {
                diags.push(located(&e.to_string(), &files[0]));
            }
        }
        if !diags.is_empty() {
            diags.sort();
            return Err(PolicyError::Invalid(diags));
        }
        let named: Vec<(String, &str)> = files
            .iter()
            .zip(&texts)
            .map(|(f, t)| (f.display().to_string(), t.as_str()))
            .chain(data_texts.iter().map(|(p, t)| (p.clone(), t.as_str())))
            .collect();
        let digest = digest_of(&namespace, &named);
        Ok(PolicySet { engine, files, namespace, digest })
    }

    /// Whether the set holds no policy file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files, as found.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The namespace evaluated (`skyform`).
    pub fn namespace(&self) -> String {
        self.namespace.join(".")
    }

    /// A digest of the namespace and every file's path and content (data documents included): a
    /// saved plan records it, and
    /// apply refuses the plan when the policies changed since.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

fn digest_of(namespace: &[String], files: &[(String, &str)]) -> String {
    let mut h = Sha256::new();
    h.update(namespace.join(".").as_bytes());
    h.update([0]);
    for (path, text) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The `.rego` files under `path` into `out`, the data documents into `data` (with `root`, the
/// policy directory they were found under).
fn collect(root: &Path, path: &Path, out: &mut Vec<PathBuf>, data: &mut Vec<DataFile>) -> Result<(), PolicyError> {
    let io = |error| PolicyError::Io { path: path.display().to_string(), error };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        // A file named directly must be a policy: nothing else is ever parsed (an error would
        // quote it).
        if path.extension().is_some_and(|x| x == "rego") {
            out.push(path.to_path_buf());
            return Ok(());
        }
        return Err(PolicyError::Io {
            path: path.display().to_string(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory nor a .rego file"),
        });
    }
    for e in std::fs::read_dir(path).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.is_dir() {
            collect(root, &p, out, data)?;
        } else if is_data(&p) {
            data.push(DataFile { root: root.to_path_buf(), path: p });
        } else if p.extension().is_some_and(|x| x == "rego") {
            // conftest skips tests (`*_test.rego`): they are for `opa test`, not for the gate.
            if !p.file_stem().is_some_and(|s| s.to_string_lossy().ends_with("_test")) {
                out.push(p);
            }
        }
    }
    Ok(())
}

fn is_rego_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// The interpreter's message as a diagnostic: its `--> file:line:col` becomes the position, its
/// last `error: …` line the message (the source excerpt it draws is left out: the position says it).
pub(super) fn located(message: &str, fallback: &Path) -> Diagnostic {
    let pos = message.lines().find_map(|l| l.trim().strip_prefix("--> ")).and_then(parse_pos);
    let text = message
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(message))
        .to_string();
    match pos {
        Some(p) => Diagnostic::error(Some(p), format!("policy: {text}")),
        None => Diagnostic::error(None, format!("policy {}: {text}", fallback.display())),
    }
}

fn parse_pos(s: &str) -> Option<Pos> {
    let mut parts = s.rsplitn(3, ':');
    let col = parts.next()?.trim().parse().ok()?;
    let line = parts.next()?.trim().parse().ok()?;
    let file = parts.next()?;
    Some(Pos { file: Arc::new(PathBuf::from(file)), line, col })
}
