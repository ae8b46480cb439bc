//! One function per verb. Each takes the loaded spec and options, does the work
//! through the engine, and returns data for the CLI to render. Nothing here
//! prints.

pub mod apply;
pub mod check;
pub mod drift;
pub mod inspect;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::address::Target;
use crate::diag::{Diagnostic, Diagnostics};
use crate::engine::{Cancel, Context, Hook};
use crate::graph::{self, SpecGraph};
use crate::providers::Registry;
use crate::secrets::Fingerprinter;
use crate::spec::expand::Mode as ExpandMode;
use crate::spec::model::Spec;
use crate::state::Backend;
use crate::state::local::LocalBackend;
use crate::value::Value;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Problems with the spec or variables (positioned).
    #[error("{0}")]
    Diagnostics(Diagnostics),
    /// State could not be read, written or locked.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A saved plan could not be used.
    #[error(transparent)]
    PlanFile(#[from] crate::plan::file::PlanFileError),
    /// The policies could not be evaluated.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The policies deny the plan: apply refuses before any change.
    #[error("{}", policy::denied_message(.0))]
    PolicyDenied(crate::policy::Outcome),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

impl From<Diagnostics> for OpError {
    fn from(d: Diagnostics) -> Self {
        OpError::Diagnostics(d)
    }
}

/// Where the spec is and what values its variables take.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    /// `-f`: a file or a directory.
    pub file: PathBuf,
    /// `--var name=value`.
    pub vars: Vec<String>,
    /// `--var-file FILE`.
    pub var_files: Vec<PathBuf>,
    /// `validate` and `graph`: a variable without a value is an unknown of its
    /// type (as `terraform validate`), not an error; a `count`/`for_each` that
    /// depends on one stands for a single representative instance.
    pub lenient_vars: bool,
    /// `--policy DIR`: policy directories besides the spec's `[policy] paths`.
    pub policies: Vec<PathBuf>,
}

/// A spec loaded, checked and ready to plan.
pub struct Loaded {
    /// The spec.
    pub spec: Arc<Spec>,
    /// Its graph.
    pub graph: Arc<SpecGraph>,
    /// Variable values.
    pub vars: Arc<BTreeMap<String, Value>>,
    /// Providers.
    pub registry: Registry,
    /// Warnings found while loading (errors abort loading).
    pub warnings: Diagnostics,
    /// The state backend: `[backend.gcs]`, else the local files.
    pub backend: Arc<dyn Backend>,
    /// The local files beside the spec (`state migrate` moves state between them and `backend`).
    pub local: LocalBackend,
    /// The policies plan, apply, drift and check evaluate (empty: none configured).
    pub policies: crate::policy::PolicySet,
}

impl Loaded {
    /// An engine context over this spec.
    pub fn context(&self, hook: Arc<dyn Hook>, parallelism: usize, cancel: Cancel) -> Context {
        Context {
            spec: self.spec.clone(),
            graph: self.graph.clone(),
            vars: self.vars.clone(),
            registry: self.registry.clone(),
            hook,
            parallelism: parallelism.max(1),
            cancel,
        }
    }

    /// The mask of this run's secrets (the sensitive variables' values), for every text that
    /// comes from outside.
    pub fn mask(&self) -> crate::mask::Mask {
        crate::mask::Mask::of(self.vars.values())
    }

    /// A digest of the spec files and the variable values (secrets by keyed
    /// fingerprint), so a saved plan can refuse a changed spec.
    pub fn digest(&self, fp: &Fingerprinter) -> String {
        let mut h = Sha256::new();
        for f in &self.spec.files {
            h.update(f.display().to_string().as_bytes());
            h.update([0]);
            h.update(std::fs::read(f).unwrap_or_default());
            h.update([0]);
        }
        for (k, v) in self.vars.iter() {
            h.update(k.as_bytes());
            h.update([0]);
            let shown = if v.has_sensitive() { fp.fingerprint(v) } else { v.to_json_clear().to_string() };
            h.update(shown.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// Loads, resolves variables, validates and builds the graph, collecting every
/// problem in one pass. Needs no network.
pub fn load(opts: &SpecOptions, registry: Registry) -> Result<Loaded, OpError> {
    let _t = crate::timings::span("load", || "spec, variables, validation".into());
    load_with(opts, registry, BackendNeed::AsVariables)
}

/// [`load`] for the state commands (`state list/show/rm/unlock/migrate`): they touch only the
/// state, so only the variables the `[backend.gcs]` block uses need values (the others are
/// unknowns, as for `validate`); a backend whose values are still unknown is an error that names
/// them, never a silent fall-back to the local files.
pub fn load_for_state(opts: &SpecOptions, registry: Registry) -> Result<Loaded, OpError> {
    load_with(&SpecOptions { lenient_vars: true, ..opts.clone() }, registry, BackendNeed::Required)
}

/// Whether the backend block must evaluate to known values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendNeed {
    /// Known when the variables are (`validate` and `graph` may leave it unknown: they never
    /// touch state).
    AsVariables,
    /// Always known.
    Required,
}

fn load_with(opts: &SpecOptions, registry: Registry, backend_need: BackendNeed) -> Result<Loaded, OpError> {
    let template = crate::spec::load(&opts.file)?;
    // Like Terraform, environment values for variables this spec does not
    // declare are ignored (one environment often serves several specs); a
    // `--var` or var-file entry for an undeclared variable is still an error.
    let env: BTreeMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| k.strip_prefix("SKYFORM_VAR_").map(|n| (n.to_string(), v)))
        .filter(|(n, _)| template.variables.contains_key(n))
        .collect();
    let mut diags = Diagnostics::default();
    // The state commands touch only the state: a broken policy does not stand in their way.
    let policies = if backend_need == BackendNeed::Required {
        crate::policy::PolicySet::empty()
    } else {
        match policy::load(&template, &opts.policies) {
            Ok(p) => p,
            Err(OpError::Diagnostics(d)) => {
                diags.extend(d);
                crate::policy::PolicySet::empty()
            }
            Err(e) => return Err(e),
        }
    };
    let resolved = if opts.lenient_vars {
        let mut t = template.clone();
        for v in t.variables.values_mut() {
            v.default.get_or_insert(Value::Unknown);
        }
        crate::spec::vars::resolve_variables(&t, &opts.vars, &opts.var_files, &env)
    } else {
        crate::spec::vars::resolve_variables(&template, &opts.vars, &opts.var_files, &env)
    };
    let vars = match resolved {
        Ok(v) => Some(v),
        Err(d) => {
            diags.extend(d);
            None
        }
    };
    // Expansion needs the values of what `count`/`for_each` use; without
    // variable values (an error above) it still checks everything else.
    let mode = if opts.lenient_vars || vars.is_none() { ExpandMode::Validate } else { ExpandMode::Plan };
    let unknown_vars: BTreeMap<String, Value> = BTreeMap::new();
    let spec = match crate::spec::expand::expand(&template, vars.as_ref().unwrap_or(&unknown_vars), mode) {
        Ok(s) => s,
        Err(d) => {
            diags.extend(d);
            diags.sort();
            return Err(OpError::Diagnostics(diags));
        }
    };
    let schemas: Vec<_> = registry.schemas().collect();
    diags.extend(crate::spec::validate::validate_with_vars(&spec, &schemas, vars.as_ref()));
    let vars = vars.unwrap_or_default();
    let graph = match graph::build(&spec, &registry) {
        Ok(g) => Some(g),
        Err(d) => {
            diags.extend(d);
            None
        }
    };
    diags.sort();
    if diags.has_errors() {
        return Err(OpError::Diagnostics(diags));
    }
    let local = LocalBackend::new(&spec.dir, &spec.name);
    let lenient = opts.lenient_vars && backend_need == BackendNeed::AsVariables;
    let backend: Arc<dyn Backend> = match backend_of(&spec, &vars, lenient, registry.net())? {
        Some(gcs) => Arc::new(gcs),
        None => Arc::new(local.clone()),
    };
    Ok(Loaded {
        spec: Arc::new(spec),
        graph: Arc::new(graph.expect("no errors means a graph")),
        vars: Arc::new(vars),
        registry,
        warnings: diags,
        backend,
        local,
        policies,
    })
}

/// The `[backend.gcs]` of the spec, its values evaluated with the variables; `None` without a
/// block (or, for `validate` and `graph`, when a variable it uses has no value: they never touch
/// state).
fn backend_of(
    spec: &Spec,
    vars: &BTreeMap<String, Value>,
    lenient: bool,
    net: &crate::foundation::net::Net,
) -> Result<Option<crate::state::gcs::GcsBackend>, OpError> {
    let Some(b) = &spec.backend else {
        return Ok(None);
    };
    let scope = crate::engine::scope::EvalScope { vars, values: &Default::default(), dir: spec.dir.clone() };
    let text = |e: &crate::spec::model::Spanned<crate::spec::model::Expr>| -> Result<Option<String>, OpError> {
        let v = crate::spec::eval(e, &scope)?;
        if v.has_unknown() {
            return Ok(None);
        }
        match v.as_str() {
            Some(s) if !v.has_sensitive() => Ok(Some(s.to_string())),
            _ => Err(OpError::Diagnostics(Diagnostics(vec![Diagnostic::error(
                Some(e.pos.clone()),
                "the backend's values must be plain strings (not sensitive)",
            )]))),
        }
    };
    let bucket = text(&b.bucket)?;
    let prefix = match &b.prefix {
        Some(p) => text(p)?,
        None => Some(String::new()),
    };
    let (Some(bucket), Some(prefix)) = (bucket, prefix) else {
        if lenient {
            return Ok(None);
        }
        let mut names: Vec<String> = [Some(&b.bucket), b.prefix.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|e| e.node.references())
            .filter_map(|r| match r.node {
                crate::spec::model::Reference::Var(v) => Some(format!("`{v}`")),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        return Err(OpError::Diagnostics(Diagnostics(vec![
            Diagnostic::error(Some(b.bucket.pos.clone()), "the backend's bucket or prefix is not known")
                .with_hint(format!("give the variables it uses a value: {}", names.join(", "))),
        ])));
    };
    let valid = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(OpError::Diagnostics(Diagnostics(vec![
            Diagnostic::error(Some(b.bucket.pos.clone()), format!("{bucket:?} is not a valid bucket name")).with_hint(
                "3 to 63 lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit",
            ),
        ])));
    }
    let loc = crate::state::gcs::GcsLocation { bucket, prefix: prefix.trim_matches('/').to_string() };
    Ok(Some(crate::state::gcs::GcsBackend::new(net, loc, None, None)))
}

/// For commands that read state without the lock: what to say when an apply holds it now.
pub fn lock_note(loaded: &Loaded) -> Option<String> {
    let holder = loaded.backend.lock_holder().ok().flatten()?;
    Some(format!("applied state may be changing: locked by {holder}"))
}

/// Resolves `--target`/`--replace`/`--exclude` targets to the instance addresses they name (see
/// [`Target::matches`]): in the spec or, for what is no longer in it, in the state. A target that
/// names nothing is an error.
pub fn resolve_targets(
    loaded: &Loaded,
    state: &crate::state::State,
    targets: &[Target],
) -> Result<Vec<crate::address::Address>, OpError> {
    let mut out = Vec::new();
    for t in targets {
        let found: Vec<_> =
            loaded.spec.resources.keys().chain(state.resources.keys()).filter(|a| t.matches(a)).cloned().collect();
        if found.is_empty() {
            return Err(OpError::Diagnostics(Diagnostics(vec![
                Diagnostic::error(None, format!("`{t}` names nothing in the spec or the state"))
                    .with_hint("see `skyform state list` and `skyform graph` for the addresses"),
            ])));
        }
        out.extend(found);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A command-line duration that is not one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a duration of at most 7 days (examples: 0s, 30s, 5m, 1h)")]
pub struct DurationError(String);

/// Parses a duration like `30s`, `5m`, `1h` (for `--lock-timeout`).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    crate::spec::parse_duration(s).map(Duration::from_secs).ok_or_else(|| DurationError(s.to_string()))
}

/// A diagnostics error with one message.
pub fn error(msg: impl Into<String>) -> OpError {
    OpError::Diagnostics(Diagnostics(vec![Diagnostic::error(None, msg)]))
}
