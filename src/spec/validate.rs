//! Checking a loaded spec against the provider schemas, without network.
//!
//! [`validate`] reports, in one pass: unknown resource and data source types,
//! unknown or computed-only attributes, missing required attributes, literal
//! values of the wrong type, unknown functions or wrong arities, references to
//! undeclared variables, resources, data sources or attributes, unknown
//! `depends_on` targets and `ignore_changes` attributes, and unknown providers
//! or provider settings. Cycles are the graph's to find.
//!
//! Values built by interpolation are not known here; once the engine has
//! evaluated a block it checks the values with [`check_values`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::address::{Address, Mode};
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema, SchemaKind};
use crate::value::Value;

use super::eval::{Scope, eval, ref_text};
use super::functions;
use super::model::{CheckBlock, Expr, Operand, Reference, ResourceBlock, Spanned, Spec, TemplatePart};

/// Settings a spec may no longer make, because a spec is untrusted input
/// ([`crate::foundation::trust`]), with where they went.
const REMOVED_FOR_TRUST: &[(&str, &str)] = &[(
    "helm_path",
    "a spec may not choose a program to run: set the helm binary with the SKYFORM_HELM environment variable \
     (default: `helm` on PATH)",
)];

/// Checks every block of `spec` against `schemas`. Returns all errors (and
/// warnings) sorted by position; an empty result means the spec is valid.
pub fn validate(spec: &Spec, schemas: &[&ProviderSchema]) -> Diagnostics {
    validate_with_vars(spec, schemas, None)
}

/// [`validate`], plus: once the variables' values are known (`vars`, from
/// [`super::vars::resolve_variables`]), every attribute and provider setting is
/// evaluated with resources treated as unknown, so that a template whose value
/// depends only on variables is type-checked (`disk_size_gb = "${var.name}"`
/// with a string variable) and its evaluation errors (a list inside a string,
/// a missing `file()`, bad base64) are reported now rather than at plan time.
/// `htpasswd()` calls are not evaluated here (each one costs a bcrypt hash).
pub fn validate_with_vars(
    spec: &Spec,
    schemas: &[&ProviderSchema],
    vars: Option<&BTreeMap<String, Value>>,
) -> Diagnostics {
    let mut v = Validator { spec, schemas, out: Vec::new(), vars };
    for p in spec.providers.values() {
        v.provider(&p.name, &p.pos, &p.config);
    }
    for r in spec.resources.values() {
        v.resource(r);
    }
    for o in spec.outputs.values() {
        v.expr_refs(&o.value);
    }
    for c in spec.checks.values() {
        v.check(c);
    }
    let mut d = Diagnostics(v.out);
    d.sort();
    d
}

/// Checks evaluated attribute values against a schema's attributes: `values`
/// is the evaluated `body` (a map). Errors are positioned at the attributes in
/// `body`. Unknown values are skipped (checked again once known). `what` names
/// the block in messages (e.g. ``"`gcp_sql_user.admin`"``).
pub fn check_values(attrs: &[Attribute], body: &Spanned<Expr>, values: &Value, what: &str) -> Diagnostics {
    let mut out = Vec::new();
    let Some(m) = values.as_map() else {
        return Diagnostics(out);
    };
    let positions = match &body.node {
        Expr::Map(b) => Some(b),
        _ => None,
    };
    for (k, v) in m {
        let Some(a) = attrs.iter().find(|a| a.name == k) else {
            continue;
        };
        let pos = || positions.and_then(|p| p.get(k)).map(|e| e.pos.clone()).unwrap_or(body.pos.clone());
        if let Some(why) = mismatch(&a.ty, v) {
            out.push(Diagnostic::error(
                Some(pos()),
                format!("attribute `{k}` of {what} must be a {}: {why}", a.ty.name()),
            ));
        } else if let Some(d) = rule_error(a, v, &pos(), what) {
            out.push(d);
        }
    }
    Diagnostics(out)
}

/// The error for a known value that breaks the attribute's naming rule.
fn rule_error(a: &Attribute, v: &Value, pos: &Pos, what: &str) -> Option<Diagnostic> {
    let rule = a.rule?;
    let name = known_name(a, v)?;
    let why = rule.check(&name).err()?;
    // A name built from a secret is checked, but never shown.
    let shown = if v.has_sensitive() { "(sensitive value)".to_string() } else { shown_name(&name) };
    Some(
        Diagnostic::error(Some(pos.clone()), format!("attribute `{}` of {what}: {shown} is not a valid name", a.name))
            .with_hint(format!("it must be {why}")),
    )
}

/// The value an API sees (after the attribute's normalization), when known.
fn known_name(a: &Attribute, v: &Value) -> Option<String> {
    if v.has_unknown() {
        return None;
    }
    let v = v.unmarked();
    let v = match a.normalize {
        Some(f) => f(&v),
        None => v,
    };
    v.as_str().map(str::to_string)
}

/// A name for an error message: quoted, escaped, cut to a readable length.
fn shown_name(name: &str) -> String {
    let cut: String = name.chars().take(80).collect();
    let more = if cut.len() < name.len() { format!("… ({} bytes)", name.len()) } else { String::new() };
    format!("{cut:?}{more}")
}

struct Validator<'a> {
    spec: &'a Spec,
    schemas: &'a [&'a ProviderSchema],
    out: Vec<Diagnostic>,
    vars: Option<&'a BTreeMap<String, Value>>,
}

/// Variables as given, everything else unknown (and undeclared variables
/// unknown too: they are reported by the reference check).
struct VarsOnly<'a> {
    vars: &'a BTreeMap<String, Value>,
    dir: &'a Path,
}

impl Scope for VarsOnly<'_> {
    fn lookup(&self, r: &Reference) -> Option<Value> {
        match r {
            Reference::Var(n) => Some(self.vars.get(n).cloned().unwrap_or(Value::Unknown)),
            Reference::Resource { .. } => Some(Value::Unknown),
            // Replaced by `spec::expand`.
            _ => None,
        }
    }
    fn base_dir(&self) -> &Path {
        self.dir
    }
}

fn schema_kind(mode: Mode) -> SchemaKind {
    match mode {
        Mode::Managed => SchemaKind::Resource,
        Mode::Data => SchemaKind::Data,
    }
}

impl<'a> Validator<'a> {
    fn err(&mut self, pos: &Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.out.push(Diagnostic::error(Some(pos.clone()), msg));
        self.out.last_mut().expect("just pushed")
    }

    fn find(&self, kind: SchemaKind, type_name: &str) -> Option<(&'a ProviderSchema, &'a ResourceSchema)> {
        self.schemas.iter().find_map(|p| p.get(kind, type_name).map(|t| (*p, t)))
    }

    fn provider(&mut self, name: &str, pos: &Pos, config: &Spanned<Expr>) {
        self.expr_refs(config);
        let Some(schema) = self.schemas.iter().copied().find(|s| s.name == name) else {
            let names: Vec<&str> = self.schemas.iter().map(|s| s.name).collect();
            let d = self.err(pos, format!("unknown provider `{name}`"));
            *d = match did_you_mean(name, names.iter().copied()) {
                Some(s) => d.clone().with_hint(format!("did you mean `{s}`?")),
                None => d.clone().with_hint(format!("the providers are {}", quoted(&names))),
            };
            return;
        };
        self.attributes(&schema.config, config, &format!("provider `{name}`"), &format!("`[provider.{name}]`"), pos);
    }

    fn resource(&mut self, r: &ResourceBlock) {
        let kind = schema_kind(r.address.mode);
        let noun = if r.address.mode == Mode::Data { "data source" } else { "resource" };
        self.expr_refs(&r.body);
        for dep in &r.depends_on {
            if !self.spec.resources.contains_key(&dep.node) {
                let msg = format!("`depends_on` names undeclared {} `{}`", mode_noun(dep.node.mode), dep.node);
                self.unknown_address(&dep.pos, msg, &dep.node);
            }
        }
        let found = self.find(kind, &r.address.type_name);
        if let Some(p) = &r.provider {
            match self.schemas.iter().find(|s| s.name == p) {
                None => {
                    let names: Vec<&str> = self.schemas.iter().map(|s| s.name).collect();
                    let d = self.err(&r.pos, format!("`{}` names unknown provider `{p}`", r.address));
                    *d = match did_you_mean(p, names.iter().copied()) {
                        Some(s) => d.clone().with_hint(format!("did you mean `{s}`?")),
                        None => d.clone().with_hint(format!("the providers are {}", quoted(&names))),
                    };
                }
                Some(s) => {
                    if let Some((owner, _)) = found {
                        if owner.name != s.name {
                            let d = self.err(
                                &r.pos,
                                format!(
                                    "`{}` is a `{}` type, but `provider` is `{p}`",
                                    r.address.type_name, owner.name
                                ),
                            );
                            *d = d.clone().with_hint(format!("remove `provider`, or set it to `\"{}\"`", owner.name));
                        }
                    }
                }
            }
        }
        let Some((_, schema)) = found else {
            self.unknown_type(r, kind, noun);
            return;
        };
        let what = format!("`{}`", r.address);
        let block = match r.address.mode {
            Mode::Managed => format!("`[resource.{}.{}]`", r.address.type_name, r.address.name),
            Mode::Data => format!("`[data.{}.{}]`", r.address.type_name, r.address.name),
        };
        self.attributes(&schema.attributes, &r.body, &what, &block, &r.pos);
        for ic in &r.lifecycle.ignore_changes {
            if ic != "*" && ic != "all" && schema.attr(ic).is_none() {
                let d = self.err(
                    &r.pos,
                    format!("`lifecycle.ignore_changes` of `{}` names unknown attribute `{ic}`", r.address),
                );
                *d = d.clone().with_suggestion(ic, schema.all_names());
            }
        }
    }

    fn unknown_type(&mut self, r: &ResourceBlock, kind: SchemaKind, noun: &str) {
        let t = &r.address.type_name;
        let other = match kind {
            SchemaKind::Resource => SchemaKind::Data,
            SchemaKind::Data => SchemaKind::Resource,
        };
        let msg = format!("unknown {noun} type `{t}`");
        if self.find(other, t).is_some() {
            let hint = match kind {
                SchemaKind::Resource => {
                    format!("`{t}` is a data source: declare it as `[data.{t}.{}]`", r.address.name)
                }
                SchemaKind::Data => {
                    format!("`{t}` is a resource type: declare it as `[resource.{t}.{}]`", r.address.name)
                }
            };
            let d = self.err(&r.pos, msg);
            *d = d.clone().with_hint(hint);
            return;
        }
        let names: Vec<&str> =
            self.schemas.iter().flat_map(|p| p.types.iter().filter(|s| s.kind == kind).map(|s| s.type_name)).collect();
        let prefixes: Vec<&str> = self.schemas.iter().map(|p| p.type_prefix).collect();
        let other_names: Vec<&str> =
            self.schemas.iter().flat_map(|p| p.types.iter().filter(|s| s.kind == other).map(|s| s.type_name)).collect();
        let (other_noun, other_block) = match other {
            SchemaKind::Resource => ("resource type", "resource"),
            SchemaKind::Data => ("data source", "data"),
        };
        let hint = if let Some(s) = did_you_mean(t, names.iter().copied()) {
            Some(format!("did you mean `{s}`?"))
        } else if let Some(s) = did_you_mean(t, other_names.iter().copied()) {
            Some(format!("did you mean `{s}`? it is a {other_noun}: `[{other_block}.{s}.{}]`", r.address.name))
        } else if !prefixes.is_empty() && !prefixes.iter().any(|p| t.starts_with(p)) {
            Some(format!("no provider owns this type; types start with {}", quoted(&prefixes)))
        } else {
            None
        };
        let mut d = Diagnostic::error(Some(r.pos.clone()), msg);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        self.out.push(d);
    }

    /// Checks a block's attributes: unknown, computed-only, missing, types.
    fn attributes(&mut self, attrs: &[Attribute], body: &Spanned<Expr>, what: &str, block: &str, pos: &Pos) {
        let Expr::Map(m) = &body.node else { return };
        for (k, e) in m {
            let Some(a) = attrs.iter().find(|a| a.name == k) else {
                let d = self.err(&e.pos, format!("{what} has no attribute `{k}`"));
                *d = match REMOVED_FOR_TRUST.iter().find(|(name, _)| name == k) {
                    Some((_, hint)) => d.clone().with_hint(*hint),
                    None => d.clone().with_suggestion(k, attrs.iter().filter(|a| a.settable()).map(|a| a.name)),
                };
                continue;
            };
            if !a.settable() {
                let d = self
                    .err(&e.pos, format!("attribute `{k}` of {what} cannot be set: it is computed by the provider"));
                *d = d.clone().with_hint(format!("remove it; refer to it elsewhere as `${{<address>.{k}}}`"));
                continue;
            }
            let shape = shape(&e.node);
            if let Some(why) = mismatch(&a.ty, &shape) {
                self.err(&e.pos, format!("attribute `{k}` of {what} must be a {}: {why}", a.ty.name()));
                continue;
            }
            let mut calls = Vec::new();
            collect_calls(&e.node, &mut calls);
            if calls.iter().any(|(name, _, _)| *name == "htpasswd") {
                continue;
            }
            // Without variable values, only what the spec writes out is known
            // (a variable is unknown): names are still checked where known.
            let no_vars = BTreeMap::new();
            let scope = VarsOnly { vars: self.vars.unwrap_or(&no_vars), dir: &self.spec.dir };
            match eval(e, &scope) {
                Ok(v) if self.vars.is_some() && mismatch(&a.ty, &v).is_some() => {
                    let why = mismatch(&a.ty, &v).unwrap_or_default();
                    self.err(&e.pos, format!("attribute `{k}` of {what} must be a {}: {why}", a.ty.name()));
                }
                Ok(v) => {
                    if let Some(d) = rule_error(a, &v, &e.pos, what) {
                        self.out.push(d);
                    }
                    if let Some(s) = v.unmarked().as_str()
                        && let Some((_, w)) = a.warn_on.iter().find(|(value, _)| *value == s)
                    {
                        self.out.push(Diagnostic::warning(Some(e.pos.clone()), format!("{what}: `{k} = {s:?}`: {w}")));
                    }
                }
                Err(d) if self.vars.is_some() => self.out.extend(d.0),
                Err(_) => {}
            }
        }
        let missing: Vec<&str> =
            attrs.iter().filter(|a| a.required && !m.contains_key(a.name)).map(|a| a.name).collect();
        for name in missing {
            let d = self.err(pos, format!("{what} is missing required attribute `{name}`"));
            *d = d.clone().with_hint(format!("add `{name} = ...` to {block}"));
        }
    }

    /// A check: its references, `depends_on`, `via`, and its `url`/`service` once known.
    fn check(&mut self, c: &CheckBlock) {
        self.expr_refs(&c.body);
        for dep in &c.depends_on {
            if !self.spec.resources.contains_key(&dep.node) {
                let msg = format!(
                    "`depends_on` of check `{}` names undeclared {} `{}`",
                    c.name,
                    mode_noun(dep.node.mode),
                    dep.node
                );
                self.unknown_address(&dep.pos, msg, &dep.node);
            }
        }
        if let Some(via) = &c.via {
            match self.schemas.iter().find(|s| s.name == via.node) {
                Some(s) if s.reaches_services => {}
                found => {
                    let reaching: Vec<&str> =
                        self.schemas.iter().filter(|s| s.reaches_services).map(|s| s.name).collect();
                    let msg = match found {
                        Some(_) => format!("check `{}`: provider `{}` cannot reach Services", c.name, via.node),
                        None => format!("check `{}`: `via` names unknown provider `{}`", c.name, via.node),
                    };
                    let d = self.err(&via.pos, msg);
                    *d = d.clone().with_hint(format!(
                        "`via` names a provider with a Kubernetes API server: {}",
                        quoted(&reaching)
                    ));
                }
            }
        }
        let Expr::Map(body) = &c.body.node else { return };
        let no_vars = BTreeMap::new();
        let scope = VarsOnly { vars: self.vars.unwrap_or(&no_vars), dir: &self.spec.dir };
        for key in ["url", "service"] {
            let Some(e) = body.get(key) else { continue };
            let Ok(v) = eval(e, &scope) else { continue };
            let Some(text) = v.as_str().filter(|_| !v.has_unknown()) else { continue };
            let problem = match key {
                "url" => (!(text.starts_with("http://") || text.starts_with("https://")))
                    .then(|| ("is not an http:// or https:// URL".to_string(), "write `url = \"https://host/path\"`")),
                _ => super::checks::parse_service(text).err().map(|why| {
                    (why, "write `service = \"<namespace>/<name>:<port>\"`, e.g. \"skypilot/skypilot-api-service:80\"")
                }),
            };
            if let Some((why, hint)) = problem {
                let shown = if v.has_sensitive() { "(sensitive value)".to_string() } else { format!("{text:?}") };
                let d = self.err(&e.pos, format!("`{key}` of check `{}`: {shown} {why}", c.name));
                *d = d.clone().with_hint(hint);
            }
        }
    }

    /// Checks every reference and function call in `e`.
    fn expr_refs(&mut self, e: &Spanned<Expr>) {
        for r in e.node.references() {
            self.reference(&r);
        }
        let mut calls = Vec::new();
        collect_calls(&e.node, &mut calls);
        for (name, n, pos) in calls {
            if let Err(d) = functions::check_call(name, n, pos) {
                self.out.push(d);
            }
        }
    }

    fn reference(&mut self, r: &Spanned<Reference>) {
        let spec = self.spec;
        match &r.node {
            Reference::Var(n) if !self.spec.variables.contains_key(n) => {
                let d = self.err(&r.pos, format!("reference to undeclared variable `var.{n}`"));
                *d = match did_you_mean(n, spec.variables.keys().map(String::as_str)) {
                    Some(s) => d.clone().with_hint(format!("did you mean `var.{s}`?")),
                    None => d.clone().with_hint(format!("declare it with `[variable.{n}]`")),
                };
            }
            Reference::Var(_) => {}
            Reference::Resource { address, path } => {
                if !self.spec.resources.contains_key(address) {
                    let msg = format!("reference to undeclared {} `{address}`", mode_noun(address.mode));
                    self.unknown_address(&r.pos, msg, address);
                    return;
                }
                let Some(attr) = path.first() else { return };
                let Some((_, schema)) = self.find(schema_kind(address.mode), &address.type_name) else {
                    return;
                };
                if schema.attr(attr).is_none() {
                    let d = self.err(
                        &r.pos,
                        format!("`{}`: `{}` has no attribute `{attr}`", ref_text(&r.node), address.type_name),
                    );
                    *d = d.clone().with_suggestion(attr, schema.all_names());
                }
            }
            // Checked (and replaced) by `spec::expand`.
            _ => {}
        }
    }

    fn unknown_address(&mut self, pos: &Pos, msg: String, address: &Address) {
        let spec = self.spec;
        let d = self.err(pos, msg);
        if let Some(s) = suggest_address(address, spec.resources.keys()) {
            *d = d.clone().with_hint(format!("did you mean `{s}`?"));
            return;
        }
        let same_type: Vec<String> = spec
            .resources
            .keys()
            .filter(|a| a.mode == address.mode && a.type_name == address.type_name)
            .map(|a| format!("`{a}`"))
            .collect();
        if !same_type.is_empty() {
            let noun = match address.mode {
                Mode::Managed => "resources",
                Mode::Data => "data sources",
            };
            *d = d.clone().with_hint(format!("declared `{}` {noun}: {}", address.type_name, same_type.join(", ")));
        }
    }
}

/// The declared address closest to `got` (same mode, a few edits away).
/// Edit distance rather than Jaro-Winkler: long addresses share long prefixes
/// (`gcp_sql_...`) that make unrelated ones look close.
fn suggest_address<'s>(got: &Address, known: impl Iterator<Item = &'s Address>) -> Option<&'s Address> {
    let g = got.to_string();
    known
        .filter(|a| a.mode == got.mode)
        .map(|a| (strsim::levenshtein(&g, &a.to_string()), a))
        .filter(|(d, _)| *d <= 3.max(g.len() / 8))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn mode_noun(m: Mode) -> &'static str {
    match m {
        Mode::Managed => "resource",
        Mode::Data => "data source",
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn collect_calls<'e>(e: &'e Expr, out: &mut Vec<(&'e str, usize, &'e Pos)>) {
    fn op<'e>(o: &'e Spanned<Operand>, out: &mut Vec<(&'e str, usize, &'e Pos)>) {
        if let Operand::Call(name, args) = &o.node {
            out.push((name, args.len(), &o.pos));
            args.iter().for_each(|a| op(a, out));
        }
    }
    match e {
        Expr::Literal(_) => {}
        Expr::Template(parts) => parts.iter().for_each(|p| {
            if let TemplatePart::Interp(o) = p {
                op(o, out);
            }
        }),
        Expr::List(items) => items.iter().for_each(|i| collect_calls(&i.node, out)),
        Expr::Map(m) => m.values().for_each(|i| collect_calls(&i.node, out)),
    }
}

/// What is known of an expression's value before evaluation: literals as they
/// are, a single interpolation unknown, other templates some string.
fn shape(e: &Expr) -> Value {
    match e {
        Expr::Literal(v) => v.clone(),
        Expr::Template(parts) if matches!(parts.as_slice(), [TemplatePart::Interp(_)]) => Value::Unknown,
        Expr::Template(_) => Value::String(String::new()),
        Expr::List(items) => Value::List(items.iter().map(|i| shape(&i.node)).collect()),
        Expr::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), shape(&v.node))).collect()),
    }
}

/// Why `v` does not fit `ty` (`None` if it does), naming the offending item.
fn mismatch(ty: &AttrType, v: &Value) -> Option<String> {
    if ty.accepts(v) {
        return None;
    }
    let v = match v {
        Value::Sensitive(inner) => inner.as_ref(),
        v => v,
    };
    match (ty, v) {
        (AttrType::List(inner), Value::List(items)) => {
            items.iter().enumerate().find_map(|(i, item)| mismatch(inner, item).map(|why| format!("item {i}: {why}")))
        }
        (AttrType::Map(inner), Value::Map(m)) => {
            m.iter().find_map(|(k, item)| mismatch(inner, item).map(|why| format!("key `{k}`: {why}")))
        }
        _ => Some(format!("got a {}", v.type_name())),
    }
    .or_else(|| Some(format!("got a {}", v.type_name())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    fn schema() -> ProviderSchema {
        ProviderSchema {
            name: "gcp",
            type_prefix: "gcp_",
            config: vec![
                Attribute::required("project", AttrType::String, "project"),
                Attribute::optional("region", AttrType::String, "region"),
            ],
            reaches_services: false,
            types: vec![
                ResourceSchema {
                    type_name: "gcp_service_account",
                    kind: SchemaKind::Resource,
                    description: "",
                    attributes: vec![
                        Attribute::required("account_id", AttrType::String, "").force_new(),
                        Attribute::optional("display_name", AttrType::String, ""),
                        Attribute::optional("labels", AttrType::Map(Box::new(AttrType::String)), ""),
                        Attribute::optional("roles", AttrType::List(Box::new(AttrType::String)), ""),
                        Attribute::optional("disabled", AttrType::Bool, ""),
                        Attribute::computed("email", AttrType::String, ""),
                    ],
                },
                ResourceSchema {
                    type_name: "gcp_container_cluster",
                    kind: SchemaKind::Data,
                    description: "",
                    attributes: vec![
                        Attribute::required("name", AttrType::String, ""),
                        Attribute::computed("endpoint", AttrType::String, ""),
                    ],
                },
            ],
        }
    }

    fn check(text: &str) -> String {
        let spec = load_str("t.toml".as_ref(), text).unwrap_or_else(|d| panic!("{d}"));
        let s = schema();
        validate(&spec, &[&s]).to_string()
    }

    #[test]
    fn valid_spec_has_no_diagnostics() {
        let out = check(
            r#"
[variable.project]
[provider.gcp]
project = "${var.project}"
[resource.gcp_service_account.sa]
account_id = "sa-${lower(var.project)}"
labels = { team = "sky", p = "${var.project}" }
roles = ["${var.project}"]
disabled = "${var.project}"
depends_on = ["data.gcp_container_cluster.c"]
lifecycle = { ignore_changes = ["display_name"] }
[data.gcp_container_cluster.c]
name = "c"
[output.e]
value = "${gcp_service_account.sa.email} ${data.gcp_container_cluster.c.endpoint}"
"#,
        );
        assert_eq!(out, "");
    }

    #[test]
    fn every_kind_of_error_in_one_pass() {
        let out = check(
            r#"[variable.project]
[provider.gcp]
projetc = "x"
[provider.gpc]
[resource.gcp_service_acount.a]
[resource.gcp_service_account.sa]
acount_id = "x"
email = "e"
labels = { a = 1 }
roles = "r"
disabled = "${var.projct}"
depends_on = ["gcp_service_account.ss"]
lifecycle = { ignore_changes = ["display"] }
provider = "gcp"
[resource.gcp_container_cluster.c]
name = "x"
[output.o]
value = "${gcp_service_account.sa.emial}${lowr(data.gcp_container_cluster.d.name)}${join(var.project)}"
"#,
        );
        let want = "\
t.toml:2:1: error: provider `gcp` is missing required attribute `project`
  hint: add `project = ...` to `[provider.gcp]`
t.toml:3:1: error: provider `gcp` has no attribute `projetc`
  hint: did you mean `project`?
t.toml:4:1: error: unknown provider `gpc`
  hint: the providers are `gcp`
t.toml:5:1: error: unknown resource type `gcp_service_acount`
  hint: did you mean `gcp_service_account`?
t.toml:6:1: error: `gcp_service_account.sa` is missing required attribute `account_id`
  hint: add `account_id = ...` to `[resource.gcp_service_account.sa]`
t.toml:6:1: error: `lifecycle.ignore_changes` of `gcp_service_account.sa` names unknown attribute `display`
  hint: did you mean `display_name`?
t.toml:7:1: error: `gcp_service_account.sa` has no attribute `acount_id`
  hint: did you mean `account_id`?
t.toml:8:1: error: attribute `email` of `gcp_service_account.sa` cannot be set: it is computed by the provider
  hint: remove it; refer to it elsewhere as `${<address>.email}`
t.toml:9:1: error: attribute `labels` of `gcp_service_account.sa` must be a map of string: key `a`: got a number
t.toml:10:1: error: attribute `roles` of `gcp_service_account.sa` must be a list of string: got a string
t.toml:11:15: error: reference to undeclared variable `var.projct`
  hint: did you mean `var.project`?
t.toml:12:15: error: `depends_on` names undeclared resource `gcp_service_account.ss`
  hint: did you mean `gcp_service_account.sa`?
t.toml:15:1: error: unknown resource type `gcp_container_cluster`
  hint: `gcp_container_cluster` is a data source: declare it as `[data.gcp_container_cluster.c]`
t.toml:18:12: error: `gcp_service_account.sa.emial`: `gcp_service_account` has no attribute `emial`
  hint: did you mean `email`?
t.toml:18:43: error: unknown function `lowr`
  hint: did you mean `lower`?
t.toml:18:48: error: reference to undeclared data source `data.gcp_container_cluster.d`
t.toml:18:85: error: `join` takes 2 arguments, got 1
  hint: call it as `join(separator, list)`
";
        assert_eq!(out, want);
    }

    #[test]
    fn templates_are_checked_once_variables_are_known() {
        let spec = load_str(
            "t.toml".as_ref(),
            "[variable.name]\n[variable.l]\ntype = \"list\"\n[resource.gcp_service_account.sa]\n\
             account_id = \"${var.name}\"\ndisabled = \"${var.name}\"\ndisplay_name = \"x ${var.l}\"\n\
             roles = \"${var.l}\"\nlabels = { a = \"${gcp_service_account.sa.email}\" }\n",
        )
        .unwrap();
        let s = schema();
        let vars: BTreeMap<String, Value> =
            [("name".to_string(), Value::str("n")), ("l".to_string(), Value::List(vec![Value::Int(1)]))].into();
        let out = validate_with_vars(&spec, &[&s], Some(&vars)).to_string();
        assert_eq!(
            out,
            "t.toml:6:1: error: attribute `disabled` of `gcp_service_account.sa` must be a bool: got a string\n\
             t.toml:7:21: error: cannot put a list inside a string\n  \
             hint: a string that is exactly one `${...}` keeps the value's type; to build text from a list use `join(sep, list)`\n\
             t.toml:8:1: error: attribute `roles` of `gcp_service_account.sa` must be a list of string: item 0: got a number\n"
        );
        assert_eq!(validate(&spec, &[&s]).to_string(), "");
    }

    #[test]
    fn check_values_after_eval() {
        let spec =
            load_str("t.toml".as_ref(), "[resource.gcp_service_account.sa]\naccount_id = \"${var.x}\"\n").unwrap();
        let r = spec.resources.values().next().unwrap();
        let s = schema();
        let attrs = &s.types[0].attributes;
        let v = Value::map([("account_id", Value::Int(3))]);
        let d = check_values(attrs, &r.body, &v, "`gcp_service_account.sa`").to_string();
        assert_eq!(
            d,
            "t.toml:2:1: error: attribute `account_id` of `gcp_service_account.sa` must be a string: got a number\n"
        );
        let v = Value::map([("account_id", Value::Unknown)]);
        assert!(check_values(attrs, &r.body, &v, "x").is_empty());
    }
}
