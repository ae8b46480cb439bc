//! The parsed spec: blocks with their (unevaluated) expressions and positions.
//!
//! This is the contract between the spec loader (`spec::load`) and the engine.
//! Expressions are evaluated later, against a [`Scope`](super::eval::Scope), once
//! the values they refer to are known (or known to be unknown).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::address::{Address, Target};
use crate::diag::Pos;
use crate::value::Value;

/// A whole spec: one file, or all `*.toml` files of a directory, merged.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// A short name for the spec (file stem, or directory name), used to name
    /// the state file: `.skyform/<name>.state.json`.
    pub name: String,
    /// The directory the spec lives in (state and `file()` paths are relative to it).
    pub dir: PathBuf,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// `[variable.<name>]` blocks.
    pub variables: BTreeMap<String, VariableBlock>,
    /// `[provider.<name>]` blocks.
    pub providers: BTreeMap<String, ProviderBlock>,
    /// `[resource.<type>.<name>]` and `[data.<type>.<name>]` blocks.
    pub resources: BTreeMap<Address, ResourceBlock>,
    /// `[output.<name>]` blocks.
    pub outputs: BTreeMap<String, OutputBlock>,
    /// `[locals]`: named values, `${local.<name>}`.
    pub locals: BTreeMap<String, Spanned<Expr>>,
    /// `[module.<name>]` blocks.
    pub modules: BTreeMap<String, ModuleBlock>,
    /// `[[moved]]` blocks.
    pub moved: Vec<MovedBlock>,
    /// `[[removed]]` blocks.
    pub removed: Vec<RemovedBlock>,
    /// `[[import]]` blocks.
    pub imports: Vec<ImportBlock>,
    /// `[check.<name>]` blocks (root spec only).
    pub checks: BTreeMap<String, CheckBlock>,
    /// `[backend.<type>]` (root spec only): where state is kept; none: beside the spec.
    pub backend: Option<BackendBlock>,
    /// `[policy]` (root spec only): the Rego policies plan, apply, drift and check evaluate.
    pub policy: Option<PolicyBlock>,
}

/// `[policy]`: directories of `.rego` files (relative to the spec's directory) and the package
/// namespace evaluated (`docs/policy.md`). Literal values: policies are read before anything is
/// evaluated.
#[derive(Debug, Clone)]
pub struct PolicyBlock {
    /// Where the block starts.
    pub pos: Pos,
    /// `paths`: directories (or files), as written.
    pub paths: Vec<Spanned<String>>,
    /// `namespace` (default `skyform`).
    pub namespace: Option<Spanned<String>>,
}

/// `[backend.gcs]`: state in a Cloud Storage bucket.
#[derive(Debug, Clone)]
pub struct BackendBlock {
    /// The backend type (`gcs`).
    pub kind: String,
    /// Where the block starts.
    pub pos: Pos,
    /// `bucket` (may use `${var.*}`, nothing else).
    pub bucket: Spanned<Expr>,
    /// `prefix`: objects go under `<prefix>/` (may use `${var.*}`).
    pub prefix: Option<Spanned<Expr>>,
}

/// `[check.<name>]`: an HTTP probe that apply waits for after its dependencies,
/// and that `drift` and `skyform check` run.
#[derive(Debug, Clone)]
pub struct CheckBlock {
    /// Its name.
    pub name: String,
    /// Where the block starts.
    pub pos: Pos,
    /// What is evaluated when the check runs, as an [`Expr::Map`]: `url`, or
    /// `service` and `path`; `headers`; `expect_json`.
    pub body: Spanned<Expr>,
    /// `via`: the provider whose API server proxies the request to `service`.
    pub via: Option<Spanned<String>>,
    /// `expect_status` (default 200).
    pub expect_status: u16,
    /// `timeout`: how long apply retries before the check fails, in seconds (default 5m).
    pub timeout: u64,
    /// `interval`: seconds between attempts (default 5s).
    pub interval: u64,
    /// `depends_on`, with the position of each entry.
    pub depends_on: Vec<Spanned<Address>>,
}

/// `count = N` or `for_each = [...] | {...}` on a resource or module block.
#[derive(Debug, Clone, PartialEq)]
pub enum Repetition {
    /// `count`: instances `[0]`..`[N-1]`, `${count.index}`.
    Count(Spanned<Expr>),
    /// `for_each`: a list of strings or a table; `${each.key}`, `${each.value}`.
    ForEach(Spanned<Expr>),
}

/// `[module.<name>]`: a directory of `*.toml` whose variables are its inputs
/// and whose outputs are `${module.<name>.<output>}`.
#[derive(Debug, Clone)]
pub struct ModuleBlock {
    /// Its name.
    pub name: String,
    /// Where the block starts.
    pub pos: Pos,
    /// `source`: a directory, relative to the spec's directory.
    pub source: Spanned<String>,
    /// Input values, by variable name.
    pub inputs: BTreeMap<String, Spanned<Expr>>,
    /// `count` / `for_each`.
    pub repetition: Option<Repetition>,
    /// `depends_on`: every resource of the module waits for these.
    pub depends_on: Vec<Spanned<Address>>,
    /// The module's own spec (loaded from `source`; its modules nested).
    pub spec: Box<Spec>,
}

/// `[[moved]]`: the object at `from` is now at `to` (no destroy, no create).
#[derive(Debug, Clone)]
pub struct MovedBlock {
    /// Where the block starts.
    pub pos: Pos,
    /// Old address (a resource, an instance, or a module path).
    pub from: Spanned<Target>,
    /// New address.
    pub to: Spanned<Target>,
}

/// `[[removed]]`: stop managing `from`; `destroy = false` keeps the object.
#[derive(Debug, Clone)]
pub struct RemovedBlock {
    /// Where the block starts.
    pub pos: Pos,
    /// The address no longer in the spec: a resource, an instance or a module path.
    pub from: Spanned<Target>,
    /// Destroy it (true: as if it were just removed from the spec) or forget it.
    pub destroy: bool,
}

/// `[[import]]`: adopt the existing object `id` as `to` during plan/apply.
#[derive(Debug, Clone)]
pub struct ImportBlock {
    /// Where the block starts.
    pub pos: Pos,
    /// The resource (instance) address.
    pub to: Spanned<Address>,
    /// The provider's import id.
    pub id: Spanned<Expr>,
}

/// The declared type of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    /// `"string"`.
    String,
    /// `"number"`.
    Number,
    /// `"bool"`.
    Bool,
    /// `"list"`.
    List,
    /// `"map"`.
    Map,
}

/// `[variable.<name>]`.
#[derive(Debug, Clone)]
pub struct VariableBlock {
    /// Its name.
    pub name: String,
    /// Where the block starts.
    pub pos: Pos,
    /// Declared type (default string).
    pub ty: VarType,
    /// Default value; a variable without one is required.
    pub default: Option<Value>,
    /// For docs and prompts.
    pub description: Option<String>,
    /// Masked everywhere.
    pub sensitive: bool,
}

/// `[provider.<name>]`.
#[derive(Debug, Clone)]
pub struct ProviderBlock {
    /// The provider's name (`gcp`, `kubernetes`, `helm`, `postgres`).
    pub name: String,
    /// Where the block starts.
    pub pos: Pos,
    /// Its configuration (a [`Expr::Map`]).
    pub config: Spanned<Expr>,
}

/// `lifecycle = { ... }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    /// Refuse to destroy while this block is in the spec.
    pub prevent_destroy: bool,
    /// Attributes whose changes are ignored on update (`["*"]`/`all` means all).
    pub ignore_changes: Vec<String>,
    /// Replace by creating the new object before deleting the old one.
    pub create_before_destroy: bool,
}

/// `[resource.<type>.<name>]` or `[data.<type>.<name>]`.
#[derive(Debug, Clone)]
pub struct ResourceBlock {
    /// Its address.
    pub address: Address,
    /// Where the block's header is.
    pub pos: Pos,
    /// Its attributes (meta-arguments removed), as a [`Expr::Map`].
    pub body: Spanned<Expr>,
    /// `depends_on`, with the position of each entry.
    pub depends_on: Vec<Spanned<Address>>,
    /// `lifecycle`.
    pub lifecycle: Lifecycle,
    /// `timeouts = { create = "30m", update = "30m", delete = "30m" }`, in seconds.
    pub timeouts: BTreeMap<String, u64>,
    /// `provider = "<name>"`; `None` means the provider owning the type's prefix.
    pub provider: Option<String>,
    /// `count` / `for_each` (only in a spec as written; an expanded spec has
    /// one block per instance).
    pub repetition: Option<Repetition>,
}

/// `[output.<name>]`.
#[derive(Debug, Clone)]
pub struct OutputBlock {
    /// Its name.
    pub name: String,
    /// Where the block starts.
    pub pos: Pos,
    /// Its value expression.
    pub value: Spanned<Expr>,
    /// Masked when printed.
    pub sensitive: bool,
}

/// A thing with a position.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The thing.
    pub node: T,
    /// Where it starts.
    pub pos: Pos,
}

/// An unevaluated value from the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A value with no interpolation in it (numbers, bools, plain strings).
    Literal(Value),
    /// A string with `${...}` interpolations. A template made of exactly one
    /// interpolation and nothing else keeps the type of the interpolated value.
    Template(Vec<TemplatePart>),
    /// An array.
    List(Vec<Spanned<Expr>>),
    /// A table.
    Map(BTreeMap<String, Spanned<Expr>>),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Literal text (with `$${` already unescaped to `${`).
    Text(String),
    /// `${ operand }`.
    Interp(Spanned<Operand>),
}

/// What can appear inside `${ ... }`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A reference.
    Ref(Reference),
    /// A quoted string literal (function arguments).
    Str(String),
    /// A number literal (function arguments).
    Number(f64),
    /// `name(arg, ...)`, from the closed set of functions.
    Call(String, Vec<Spanned<Operand>>),
    /// A known value put in place by expansion (`each.key`, `count.index`).
    Value(Value),
    /// An expression put in place by expansion (a local, a module input or
    /// output), then the path to take into its value; `sensitive` marks the
    /// value secret (an input of a module variable declared sensitive).
    Expr(Box<Spanned<Expr>>, Vec<String>, bool),
}

/// A reference to a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// `var.<name>`.
    Var(String),
    /// `local.<name>[.<path>...]`.
    Local(String, Vec<String>),
    /// `each.key` (`key: true`) or `each.value[.<path>...]`.
    Each {
        /// `each.key` rather than `each.value`.
        key: bool,
        /// The path into `each.value`.
        path: Vec<String>,
    },
    /// `count.index`.
    CountIndex,
    /// `module.<name>[<key>].<output>[.<path>...]`.
    Module {
        /// The module block's name.
        name: String,
        /// Its instance key.
        key: Option<crate::address::InstanceKey>,
        /// The output.
        output: String,
        /// The path into the output's value.
        path: Vec<String>,
    },
    /// `<type>.<name>[.<attr>[.<path>...]]` or `data.<type>.<name>[...]`: an
    /// empty path means the whole object.
    Resource {
        /// The resource or data source referred to.
        address: Address,
        /// Attribute name then nested keys / list indices.
        path: Vec<String>,
    },
}

impl Reference {
    /// The resource this reference depends on, if any.
    pub fn address(&self) -> Option<&Address> {
        match self {
            Reference::Resource { address, .. } => Some(address),
            _ => None,
        }
    }
}

impl Expr {
    /// Every reference in this expression, with its position.
    pub fn references(&self) -> Vec<Spanned<Reference>> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs(&self, out: &mut Vec<Spanned<Reference>>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Template(parts) => {
                for p in parts {
                    if let TemplatePart::Interp(op) = p {
                        collect_operand_refs(op, out);
                    }
                }
            }
            Expr::List(items) => items.iter().for_each(|i| i.node.collect_refs(out)),
            Expr::Map(m) => m.values().for_each(|i| i.node.collect_refs(out)),
        }
    }
}

fn collect_operand_refs(op: &Spanned<Operand>, out: &mut Vec<Spanned<Reference>>) {
    match &op.node {
        Operand::Ref(r) => out.push(Spanned { node: r.clone(), pos: op.pos.clone() }),
        Operand::Call(_, args) => args.iter().for_each(|a| collect_operand_refs(a, out)),
        Operand::Expr(e, _, _) => e.node.collect_refs(out),
        Operand::Str(_) | Operand::Number(_) | Operand::Value(_) => {}
    }
}
