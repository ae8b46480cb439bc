//! Expansion: a spec as written (with `[locals]`, `count`, `for_each` and
//! `[module.*]` blocks) → a flat spec with one resource block per instance,
//! which is all the engine ever sees.
//!
//! One coordination point records each block's repetition once (per module
//! instance) and enumerates its instances; references are rewritten in place:
//! - `${local.x}` becomes the local's own (rewritten) expression;
//! - `${each.key}`, `${each.value}`, `${count.index}` become known values;
//! - inside a module instance, `${var.x}` becomes the input expression given
//!   in the module block (rewritten in the parent's scope), and every resource
//!   address is prefixed with the module path (`module.team["ml"].…`);
//! - `${module.m.out}` becomes the output's expression in that instance;
//! - `${test_object.replica}` (a repeated resource, no key) becomes the list
//!   (count) or table (for_each) of its instances.
//!
//! `count` and `for_each` must be known here. In [`Mode::Plan`] an unknown one
//! (a variable without a value, a resource attribute) is an error naming the
//! reference; in [`Mode::Validate`] (no variable values needed) such a block
//! stands for one representative instance without a key, whose `each.*` and
//! `count.index` are unknown, so the rest of the spec can still be checked.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use crate::address::{Address, InstanceKey, ModuleStep};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::value::Value;

use super::eval::{Scope, eval, ref_text};
use super::model::{Expr, Operand, Reference, Repetition, ResourceBlock, Spanned, Spec, TemplatePart};

/// The most instances one `count`/`for_each` may make (a bound on memory).
pub const MAX_INSTANCES: usize = 100_000;

/// What the expansion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every `count`/`for_each` must be known.
    Plan,
    /// Unknown ones stand for one representative instance.
    Validate,
}

/// Expands `spec` (as loaded) with the root variables' values `vars`
/// (unknown where not given, in [`Mode::Validate`]).
pub fn expand(spec: &Spec, vars: &BTreeMap<String, Value>, mode: Mode) -> Result<Spec, Diagnostics> {
    let mut x = Expander {
        vars,
        mode,
        errors: Vec::new(),
        scopes: BTreeMap::new(),
        building: Vec::new(),
        locals_building: Vec::new(),
        locals_done: BTreeMap::new(),
        reps: BTreeMap::new(),
        evaluating: BTreeSet::new(),
    };
    let root = Rc::new(ModScope { spec, path: Vec::new(), inputs: None, depends: Vec::new() });
    x.scopes.insert(Vec::new(), root.clone());
    let mut out = Spec {
        name: spec.name.clone(),
        dir: spec.dir.clone(),
        files: spec.files.clone(),
        variables: spec.variables.clone(),
        moved: spec.moved.clone(),
        removed: spec.removed.clone(),
        imports: spec.imports.clone(),
        backend: spec.backend.clone(),
        policy: spec.policy.clone(),
        ..Spec::default()
    };
    for (name, p) in &spec.providers {
        let mut p = p.clone();
        p.config = x.rewrite(&p.config, &root, None);
        out.providers.insert(name.clone(), p);
    }
    for i in &mut out.imports {
        i.id = x.rewrite(&i.id, &root, None);
    }
    for (name, o) in &spec.outputs {
        let mut o = o.clone();
        o.value = x.rewrite(&o.value, &root, None);
        out.outputs.insert(name.clone(), o);
    }
    for f in spec.modules.values().flat_map(|m| m.spec.files.iter()) {
        if !out.files.contains(f) {
            out.files.push(f.clone());
        }
    }
    // Module instances first, so that any block may refer to (or depend on)
    // the resources of any module, whatever the order of the blocks.
    x.prepare_scopes(&root);
    x.expand_scope(&root, &mut out);
    for (name, c) in &spec.checks {
        let mut c = c.clone();
        c.body = x.rewrite(&c.body, &root, None);
        c.depends_on = Vec::new();
        for d in &spec.checks[name].depends_on {
            for a in x.resolve_depends(&d.node) {
                c.depends_on.push(Spanned { node: a, pos: d.pos.clone() });
            }
        }
        out.checks.insert(name.clone(), c);
    }
    if x.errors.is_empty() {
        Ok(out)
    } else {
        let mut d = Diagnostics(x.errors);
        d.sort();
        d.0.dedup_by(|a, b| a.to_string() == b.to_string());
        Err(d)
    }
}

/// One module instance (or the root).
struct ModScope<'a> {
    spec: &'a Spec,
    path: Vec<ModuleStep>,
    /// The module block's inputs, rewritten in the parent's scope (`None`: root).
    inputs: Option<BTreeMap<String, Spanned<Expr>>>,
    /// The module blocks' `depends_on` (absolute addresses), for every resource inside.
    depends: Vec<Spanned<Address>>,
}

/// The instance a block body is rewritten for.
#[derive(Clone, Debug)]
struct Inst {
    key: Option<InstanceKey>,
    /// `each.value` (for_each), unknown for a representative.
    value: Option<Value>,
    /// Whether `count.index` / `each.*` are available.
    kind: Option<RepKind>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RepKind {
    Count,
    ForEach,
}

/// The instances of a block.
#[derive(Clone, Debug)]
enum Instances {
    /// No `count`/`for_each`: one instance without a key.
    Single,
    /// Known instances.
    Known(RepKind, Vec<Inst>),
    /// Unknown (validate): one representative without a key.
    Unknown(RepKind),
}

struct Expander<'a> {
    vars: &'a BTreeMap<String, Value>,
    mode: Mode,
    errors: Vec<Diagnostic>,
    scopes: BTreeMap<Vec<ModuleStep>, Rc<ModScope<'a>>>,
    building: Vec<Vec<ModuleStep>>,
    /// Locals being rewritten (`<module path>/<name>`), to refuse cycles.
    locals_building: Vec<String>,
    /// Locals rewritten (by the same key): each is rewritten once.
    locals_done: BTreeMap<String, Spanned<Expr>>,
    /// Blocks whose repetition is being evaluated, to refuse self-reference.
    evaluating: BTreeSet<(Vec<ModuleStep>, String)>,
    /// Instances per (module path, block id), evaluated once.
    reps: BTreeMap<(Vec<ModuleStep>, String), Instances>,
}

/// Evaluation while expanding: variables as given, everything else unknown.
struct KnownOnly<'a> {
    vars: &'a BTreeMap<String, Value>,
    dir: &'a std::path::Path,
}

impl Scope for KnownOnly<'_> {
    fn lookup(&self, r: &Reference) -> Option<Value> {
        match r {
            Reference::Var(n) => Some(self.vars.get(n).cloned().unwrap_or(Value::Unknown)),
            _ => Some(Value::Unknown),
        }
    }
    fn base_dir(&self) -> &std::path::Path {
        self.dir
    }
}

fn err(pos: &Pos, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::error(Some(pos.clone()), msg)
}

impl<'a> Expander<'a> {
    /// Makes the scope of every module instance under `sc`.
    fn prepare_scopes(&mut self, sc: &Rc<ModScope<'a>>) {
        for (name, m) in &sc.spec.modules {
            let instances = self.instances(sc, &format!("m:{name}"), m.repetition.as_ref());
            for inst in list(&instances) {
                let mut path = sc.path.clone();
                path.push(ModuleStep { name: name.clone(), key: inst.key.clone() });
                if let Some(child) = self.module_scope(sc, name, &path, &inst) {
                    self.prepare_scopes(&child);
                }
            }
        }
    }

    fn expand_scope(&mut self, sc: &Rc<ModScope<'a>>, out: &mut Spec) {
        // Every local is checked once, used or not.
        for (name, e) in &sc.spec.locals {
            let op = Spanned { node: Operand::Ref(Reference::Local(name.clone(), Vec::new())), pos: e.pos.clone() };
            let _ = self.operand(&op, sc, None);
        }
        for (addr, block) in &sc.spec.resources {
            let id = format!("r:{addr}");
            let instances = self.instances(sc, &id, block.repetition.as_ref());
            for inst in list(&instances) {
                let address = addr.clone().in_module(&sc.path).with_key(inst.key.clone());
                let mut b = ResourceBlock { address: address.clone(), repetition: None, ..block.clone() };
                b.body = self.rewrite(&block.body, sc, Some(&inst));
                // The block's own (relative to its module), then its module
                // blocks' (absolute).
                b.depends_on = Vec::new();
                for d in &block.depends_on {
                    for a in self.resolve_depends(&d.node.clone().in_module(&sc.path)) {
                        b.depends_on.push(Spanned { node: a, pos: d.pos.clone() });
                    }
                }
                for d in &sc.depends {
                    for a in self.resolve_depends(&d.node) {
                        b.depends_on.push(Spanned { node: a, pos: d.pos.clone() });
                    }
                }
                out.resources.insert(address, b);
            }
        }
        for (name, m) in &sc.spec.modules {
            let id = format!("m:{name}");
            let instances = self.instances(sc, &id, m.repetition.as_ref());
            for inst in list(&instances) {
                let mut path = sc.path.clone();
                path.push(ModuleStep { name: name.clone(), key: inst.key.clone() });
                if let Some(child) = self.module_scope(sc, name, &path, &inst) {
                    self.expand_scope(&child, out);
                }
            }
        }
    }

    /// The instances of block `id` in `sc`, evaluated once.
    fn instances(&mut self, sc: &Rc<ModScope<'a>>, id: &str, rep: Option<&Repetition>) -> Instances {
        let key = (sc.path.clone(), id.to_string());
        if let Some(i) = self.reps.get(&key) {
            return i.clone();
        }
        let i = match rep {
            None => Instances::Single,
            Some(r) if self.evaluating.contains(&key) => {
                let (kind, e, what) = match r {
                    Repetition::Count(e) => (RepKind::Count, e, "count"),
                    Repetition::ForEach(e) => (RepKind::ForEach, e, "for_each"),
                };
                self.errors.push(
                    err(&e.pos, format!("the `{what}` of `{}` depends on its own instances", &id[2..]))
                        .with_hint("which instances exist cannot depend on those instances"),
                );
                return Instances::Known(kind, Vec::new());
            }
            Some(r) => {
                self.evaluating.insert(key.clone());
                let i = self.evaluate_repetition(sc, r);
                self.evaluating.remove(&key);
                i
            }
        };
        self.reps.insert(key, i.clone());
        i
    }

    fn evaluate_repetition(&mut self, sc: &Rc<ModScope<'a>>, rep: &Repetition) -> Instances {
        let (kind, e, what) = match rep {
            Repetition::Count(e) => (RepKind::Count, e, "count"),
            Repetition::ForEach(e) => (RepKind::ForEach, e, "for_each"),
        };
        let e = self.rewrite(e, sc, None);
        let scope = KnownOnly { vars: self.vars, dir: &sc.spec.dir };
        let v = match eval(&e, &scope) {
            Ok(v) => v,
            Err(d) => {
                self.errors.extend(d.0);
                return Instances::Known(kind, Vec::new());
            }
        };
        if v.has_unknown() {
            if self.mode == Mode::Validate {
                return Instances::Unknown(kind);
            }
            let why: Vec<String> = unknown_causes(&e, self.vars);
            self.errors.push(
                err(
                    &e.pos,
                    format!(
                        "the `{what}` value is not known when planning: it depends on {}",
                        if why.is_empty() { "values known only after apply".to_string() } else { why.join(", ") }
                    ),
                )
                .with_hint(format!(
                    "`{what}` decides which instances exist, so it must be known at plan time: build it from \
                     variables, locals and literals, not from attributes of resources"
                )),
            );
            return Instances::Known(kind, Vec::new());
        }
        if v.has_sensitive() {
            self.errors.push(
                err(&e.pos, format!("the `{what}` value is sensitive"))
                    .with_hint("instance keys appear in addresses and plans: they cannot be secrets"),
            );
            return Instances::Known(kind, Vec::new());
        }
        match (kind, v) {
            (_, Value::Int(n)) if n > MAX_INSTANCES as i64 => self.too_many(&e.pos, what, n as usize, kind),
            (_, Value::List(l)) if l.len() > MAX_INSTANCES => self.too_many(&e.pos, what, l.len(), kind),
            (_, Value::Map(m)) if m.len() > MAX_INSTANCES => self.too_many(&e.pos, what, m.len(), kind),
            (RepKind::Count, Value::Int(n)) if n >= 0 => Instances::Known(
                kind,
                (0..n).map(|i| Inst { key: Some(InstanceKey::Int(i)), value: None, kind: Some(kind) }).collect(),
            ),
            (RepKind::Count, other) => {
                self.errors.push(
                    err(&e.pos, format!("`count` must be a whole number of 0 or more, not {}", describe(&other)))
                        .with_hint("e.g. `count = 2`, or `count = \"${var.replicas}\"`"),
                );
                Instances::Known(kind, Vec::new())
            }
            (RepKind::ForEach, Value::List(items)) => {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => {
                            if !seen.insert(s.clone()) {
                                self.errors.push(
                                    err(&e.pos, format!("`for_each` has the key {s:?} twice"))
                                        .with_hint("each key names one instance: keys must be unique"),
                                );
                                continue;
                            }
                            out.push(Inst {
                                key: Some(InstanceKey::Str(s.clone())),
                                value: Some(Value::String(s)),
                                kind: Some(kind),
                            });
                        }
                        other => {
                            self.errors.push(
                                err(
                                    &e.pos,
                                    format!("`for_each` over a list takes strings, found {}", describe(&other)),
                                )
                                .with_hint("use a list of strings, or a table whose keys name the instances"),
                            );
                            return Instances::Known(kind, Vec::new());
                        }
                    }
                }
                Instances::Known(kind, out)
            }
            (RepKind::ForEach, Value::Map(m)) => Instances::Known(
                kind,
                m.into_iter()
                    .map(|(k, v)| Inst { key: Some(InstanceKey::Str(k)), value: Some(v), kind: Some(kind) })
                    .collect(),
            ),
            (RepKind::ForEach, other) => {
                self.errors.push(
                    err(&e.pos, format!("`for_each` must be a list of strings or a table, not {}", describe(&other)))
                        .with_hint("e.g. `for_each = [\"a\", \"b\"]` or `for_each = { ml = \"gpu\" }`"),
                );
                Instances::Known(kind, Vec::new())
            }
        }
    }

    fn too_many(&mut self, pos: &Pos, what: &str, n: usize, kind: RepKind) -> Instances {
        self.errors.push(
            err(pos, format!("`{what}` asks for {n} instances; at most {MAX_INSTANCES} are allowed"))
                .with_hint("split the deployment into several specs"),
        );
        Instances::Known(kind, Vec::new())
    }

    /// The scope of module instance `path` (block `name` in `parent`), made once.
    fn module_scope(
        &mut self,
        parent: &Rc<ModScope<'a>>,
        name: &str,
        path: &[ModuleStep],
        inst: &Inst,
    ) -> Option<Rc<ModScope<'a>>> {
        if let Some(s) = self.scopes.get(path) {
            return Some(s.clone());
        }
        let m = parent.spec.modules.get(name)?;
        if self.building.iter().any(|p| p == path) {
            let chain: Vec<String> = self.building.iter().map(|p| display_path(p)).collect();
            self.errors.push(
                err(&m.pos, format!("cycle through modules: {} -> {}", chain.join(" -> "), display_path(path)))
                    .with_hint("a module's inputs cannot depend on its own outputs, directly or through other modules"),
            );
            return None;
        }
        self.building.push(path.to_vec());
        let mut inputs = BTreeMap::new();
        for (k, e) in &m.inputs {
            match m.spec.variables.get(k) {
                Some(_) => {
                    inputs.insert(k.clone(), self.rewrite(e, parent, Some(inst)));
                }
                None => {
                    let d = err(&e.pos, format!("module `{name}` has no input `{k}`"));
                    let d = d.with_suggestion(k, m.spec.variables.keys().map(String::as_str));
                    let d = if d.hint.is_none() {
                        d.with_hint(format!(
                            "its inputs are the variables of `{}`: {}",
                            m.source.node,
                            m.spec.variables.keys().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                        ))
                    } else {
                        d
                    };
                    self.errors.push(d);
                }
            }
        }
        for (v, block) in &m.spec.variables {
            if block.default.is_none() && !m.inputs.contains_key(v) {
                self.errors.push(
                    err(
                        &m.pos,
                        format!("module `{name}` needs input `{v}` (a variable of the module without a default)"),
                    )
                    .with_hint(format!("add `{v} = ...` to `[module.{name}]`")),
                );
            }
        }
        // Resolved (to instances) when the resources are expanded, once every
        // module instance exists.
        let mut depends = parent.depends.clone();
        for d in &m.depends_on {
            depends.push(Spanned { node: d.node.clone().in_module(&parent.path), pos: d.pos.clone() });
        }
        let sc = Rc::new(ModScope { spec: &m.spec, path: path.to_vec(), inputs: Some(inputs), depends });
        self.building.pop();
        self.scopes.insert(path.to_vec(), sc.clone());
        Some(sc)
    }

    /// The scope of the module instance `name[key]` used from `sc`.
    fn module_instance(
        &mut self,
        sc: &Rc<ModScope<'a>>,
        name: &str,
        key: Option<&InstanceKey>,
        pos: &Pos,
    ) -> Option<Rc<ModScope<'a>>> {
        let Some(m) = sc.spec.modules.get(name) else {
            let d = err(pos, format!("reference to undeclared module `module.{name}`"))
                .with_suggestion(name, sc.spec.modules.keys().map(String::as_str));
            let d = if d.hint.is_none() { d.with_hint(format!("declare it with `[module.{name}]`")) } else { d };
            self.errors.push(d);
            return None;
        };
        let instances = self.instances(sc, &format!("m:{name}"), m.repetition.as_ref());
        let inst = match (&instances, key) {
            (Instances::Single, None) => Inst { key: None, value: None, kind: None },
            (Instances::Single, Some(k)) => {
                self.errors.push(
                    err(pos, format!("module `{name}` has no `count` or `for_each`: there is no instance {k}"))
                        .with_hint(format!("write `module.{name}.<output>`")),
                );
                return None;
            }
            (Instances::Unknown(kind), _) => Inst { key: None, value: Some(Value::Unknown), kind: Some(*kind) },
            (Instances::Known(_, list), Some(k)) => match list.iter().find(|i| i.key.as_ref() == Some(k)) {
                Some(i) => i.clone(),
                None => {
                    self.errors.push(
                        err(pos, format!("module `{name}` has no instance {k}"))
                            .with_hint(format!("its instances are {}", keys_text(list))),
                    );
                    return None;
                }
            },
            (Instances::Known(..), None) => {
                self.errors.push(
                    err(pos, format!("module `{name}` has `count` or `for_each`: name one instance"))
                        .with_hint(format!("write `module.{name}[<key>].<output>`")),
                );
                return None;
            }
        };
        let mut path = sc.path.clone();
        path.push(ModuleStep { name: name.to_string(), key: inst.key.clone() });
        self.module_scope(sc, name, &path, &inst)
    }

    /// `depends_on` entry `a` (absolute): every instance of a repeated block.
    fn resolve_depends(&mut self, a: &Address) -> Vec<Address> {
        if a.key.is_some() {
            return vec![a.clone()];
        }
        match self.lookup_block(a) {
            Some((sc, block)) => {
                let rep = block.repetition.clone();
                let id = format!("r:{}", block.address);
                match self.instances(&sc, &id, rep.as_ref()) {
                    Instances::Known(_, list) => list.into_iter().map(|i| a.clone().with_key(i.key)).collect(),
                    _ => vec![a.clone()],
                }
            }
            None => vec![a.clone()],
        }
    }

    /// The scope and template block of an absolute address, if its module
    /// instance has been made.
    fn lookup_block(&self, a: &Address) -> Option<(Rc<ModScope<'a>>, &'a ResourceBlock)> {
        let sc = self.scopes.get(&a.module)?.clone();
        let local = Address { module: Vec::new(), key: None, ..a.clone() };
        let block = sc.spec.resources.get(&local)?;
        Some((sc, block))
    }

    /// `e` rewritten for instance `inst` of a block in `sc`.
    fn rewrite(&mut self, e: &Spanned<Expr>, sc: &Rc<ModScope<'a>>, inst: Option<&Inst>) -> Spanned<Expr> {
        let node = match &e.node {
            Expr::Literal(v) => Expr::Literal(v.clone()),
            Expr::List(items) => Expr::List(items.iter().map(|i| self.rewrite(i, sc, inst)).collect()),
            Expr::Map(m) => Expr::Map(m.iter().map(|(k, v)| (k.clone(), self.rewrite(v, sc, inst))).collect()),
            Expr::Template(parts) => Expr::Template(
                parts
                    .iter()
                    .map(|p| match p {
                        TemplatePart::Text(t) => TemplatePart::Text(t.clone()),
                        TemplatePart::Interp(op) => TemplatePart::Interp(self.operand(op, sc, inst)),
                    })
                    .collect(),
            ),
        };
        Spanned { node, pos: e.pos.clone() }
    }

    fn operand(&mut self, op: &Spanned<Operand>, sc: &Rc<ModScope<'a>>, inst: Option<&Inst>) -> Spanned<Operand> {
        let node = match &op.node {
            Operand::Ref(r) => self.reference(r, &op.pos, sc, inst),
            Operand::Call(name, args) => {
                let mut args: Vec<Spanned<Operand>> = args.iter().map(|a| self.operand(a, sc, inst)).collect();
                // `file("x")` in a module is relative to the module's directory.
                if name == "file"
                    && !sc.path.is_empty()
                    && let Some(Spanned { node: Operand::Str(p), .. }) = args.first_mut()
                    && std::path::Path::new(p.as_str()).is_relative()
                {
                    *p = sc.spec.dir.join(&*p).display().to_string();
                }
                Operand::Call(name.clone(), args)
            }
            Operand::Expr(e, path, sensitive) => {
                Operand::Expr(Box::new(self.rewrite(e, sc, inst)), path.clone(), *sensitive)
            }
            other => other.clone(),
        };
        Spanned { node, pos: op.pos.clone() }
    }

    fn reference(&mut self, r: &Reference, pos: &Pos, sc: &Rc<ModScope<'a>>, inst: Option<&Inst>) -> Operand {
        let unknown = Operand::Value(Value::Unknown);
        match r {
            Reference::Var(n) => match &sc.inputs {
                None => Operand::Ref(r.clone()),
                Some(inputs) => match inputs.get(n) {
                    // A sensitive module variable keeps its input secret.
                    Some(e) => Operand::Expr(
                        Box::new(e.clone()),
                        Vec::new(),
                        sc.spec.variables.get(n).is_some_and(|v| v.sensitive),
                    ),
                    None => match sc.spec.variables.get(n).and_then(|v| v.default.clone()) {
                        Some(d) => Operand::Value(d),
                        // Undeclared (or a required input not given: reported
                        // with the module block).
                        None if sc.spec.variables.contains_key(n) => unknown,
                        None => {
                            self.errors.push(
                                err(pos, format!("reference to undeclared variable `var.{n}`"))
                                    .with_suggestion(n, sc.spec.variables.keys().map(String::as_str)),
                            );
                            unknown
                        }
                    },
                },
            },
            Reference::Local(n, path) => match sc.spec.locals.get(n) {
                Some(e) => {
                    let key = format!("{}/{n}", display_path(&sc.path));
                    if let Some(done) = self.locals_done.get(&key) {
                        return Operand::Expr(Box::new(done.clone()), path.clone(), false);
                    }
                    if self.locals_building.contains(&key) {
                        self.errors.push(
                            err(pos, format!("`local.{n}` refers to itself"))
                                .with_hint("locals may refer to other locals, but not in a cycle"),
                        );
                        return unknown;
                    }
                    self.locals_building.push(key.clone());
                    let e = self.rewrite(e, sc, None);
                    self.locals_building.pop();
                    self.locals_done.insert(key, e.clone());
                    Operand::Expr(Box::new(e), path.clone(), false)
                }
                None => {
                    let d = err(pos, format!("reference to undeclared local `local.{n}`"))
                        .with_suggestion(n, sc.spec.locals.keys().map(String::as_str));
                    let d = if d.hint.is_none() {
                        d.with_hint(format!("declare it under `[locals]`: `{n} = ...`"))
                    } else {
                        d
                    };
                    self.errors.push(d);
                    unknown
                }
            },
            Reference::Each { key, path } => match inst {
                Some(Inst { kind: Some(RepKind::ForEach), key: k, value }) => {
                    if *key {
                        Operand::Value(k.as_ref().map(InstanceKey::to_value).unwrap_or(Value::Unknown))
                    } else {
                        let v = value.clone().unwrap_or(Value::Unknown);
                        match v.get_path(path) {
                            Some(x) => Operand::Value(x),
                            None => {
                                self.errors.push(err(pos, format!("`each.value` has no `{}`", path.join("."))));
                                unknown
                            }
                        }
                    }
                }
                _ => {
                    self.errors.push(
                        err(pos, format!("`{}` is only available in a block with `for_each`", ref_text(r)))
                            .with_hint("add `for_each = ...` to this block, or use `count.index` with `count`"),
                    );
                    unknown
                }
            },
            Reference::CountIndex => match inst {
                Some(Inst { kind: Some(RepKind::Count), key, .. }) => match key {
                    Some(k) => Operand::Value(k.to_value()),
                    None => unknown,
                },
                _ => {
                    self.errors.push(
                        err(pos, "`count.index` is only available in a block with `count`")
                            .with_hint("add `count = N` to this block, or use `each.key` with `for_each`"),
                    );
                    unknown
                }
            },
            Reference::Module { name, key, output, path } => {
                let Some(child) = self.module_instance(sc, name, key.as_ref(), pos) else { return unknown };
                match child.spec.outputs.get(output) {
                    Some(o) => {
                        let e = self.rewrite(&o.value, &child, None);
                        Operand::Expr(Box::new(e), path.clone(), o.sensitive)
                    }
                    None => {
                        self.errors.push(
                            err(pos, format!("module `{name}` has no output `{output}`"))
                                .with_suggestion(output, child.spec.outputs.keys().map(String::as_str)),
                        );
                        unknown
                    }
                }
            }
            Reference::Resource { address, path } => self.resource_ref(address, path, pos, sc),
        }
    }

    fn resource_ref(&mut self, address: &Address, path: &[String], pos: &Pos, sc: &Rc<ModScope<'a>>) -> Operand {
        let local = Address { key: None, ..address.clone() };
        let abs = address.clone().in_module(&sc.path);
        let Some(block) = sc.spec.resources.get(&local) else {
            // Undeclared: the validator reports it, at this position.
            return Operand::Ref(Reference::Resource { address: abs, path: path.to_vec() });
        };
        let id = format!("r:{local}");
        let instances = self.instances(sc, &id, block.repetition.as_ref());
        let as_ref = |a: Address| Operand::Ref(Reference::Resource { address: a, path: path.to_vec() });
        match (&instances, &address.key) {
            (Instances::Single, None) => as_ref(abs),
            (Instances::Single, Some(k)) => {
                self.errors.push(
                    err(pos, format!("`{local}` has no `count` or `for_each`: there is no instance {k}"))
                        .with_hint(format!("refer to it as `{local}`")),
                );
                Operand::Value(Value::Unknown)
            }
            // Validate: the representative instance.
            (Instances::Unknown(_), _) => as_ref(abs.with_key(None)),
            (Instances::Known(_, list), Some(k)) => {
                if list.iter().any(|i| i.key.as_ref() == Some(k)) {
                    as_ref(abs)
                } else {
                    self.errors.push(
                        err(pos, format!("`{local}` has no instance {k}"))
                            .with_hint(format!("its instances are {}", keys_text(list))),
                    );
                    Operand::Value(Value::Unknown)
                }
            }
            // The whole collection: a list (count) or a table (for_each).
            (Instances::Known(kind, list), None) => {
                let item = |i: &Inst| Spanned {
                    node: Expr::Template(vec![TemplatePart::Interp(Spanned {
                        node: Operand::Ref(Reference::Resource {
                            address: abs.clone().with_key(i.key.clone()),
                            path: Vec::new(),
                        }),
                        pos: pos.clone(),
                    })]),
                    pos: pos.clone(),
                };
                let coll = match kind {
                    RepKind::Count => Expr::List(list.iter().map(item).collect()),
                    RepKind::ForEach => Expr::Map(
                        list.iter()
                            .map(|i| match &i.key {
                                Some(InstanceKey::Str(s)) => (s.clone(), item(i)),
                                Some(InstanceKey::Int(n)) => (n.to_string(), item(i)),
                                None => (String::new(), item(i)),
                            })
                            .collect(),
                    ),
                };
                Operand::Expr(Box::new(Spanned { node: coll, pos: pos.clone() }), path.to_vec(), false)
            }
        }
    }
}

fn list(i: &Instances) -> Vec<Inst> {
    match i {
        Instances::Single => vec![Inst { key: None, value: None, kind: None }],
        Instances::Known(_, l) => l.clone(),
        Instances::Unknown(kind) => vec![Inst { key: None, value: Some(Value::Unknown), kind: Some(*kind) }],
    }
}

fn keys_text(list: &[Inst]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    let mut keys: Vec<String> = list.iter().filter_map(|i| i.key.as_ref().map(|k| k.to_string())).take(8).collect();
    if list.len() > 8 {
        keys.push("…".into());
    }
    keys.join(", ")
}

fn display_path(p: &[ModuleStep]) -> String {
    if p.is_empty() {
        return "the root".into();
    }
    p.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(".")
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        Value::Int(n) => format!("the number {n}"),
        Value::Float(n) => format!("the number {n}"),
        other => format!("a {}", other.type_name()),
    }
}

/// What makes an expression unknown at plan time, for the error message.
fn unknown_causes(e: &Spanned<Expr>, vars: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in e.node.references() {
        match &r.node {
            Reference::Var(n) if vars.get(n).is_none_or(Value::has_unknown) => {
                out.insert(format!("`var.{n}`, which has no value"));
            }
            Reference::Resource { .. } => {
                out.insert(format!("`{}`, known only after apply", ref_text(&r.node)));
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}
