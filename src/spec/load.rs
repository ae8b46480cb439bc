//! Reading spec files: TOML text → [`Spec`].
//!
//! A spec is one file or a directory of `*.toml` files (read in file-name order
//! and merged). Loading checks the *shape* of the spec — block kinds, names,
//! meta-arguments, interpolation syntax — and collects every error of every
//! file in one pass. Checking blocks against provider schemas is
//! [`super::validate`]'s job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned as TSpanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::address::{Address, Target, is_identifier};
use crate::diag::{Diagnostic, Diagnostics, Pos, SourceFile};
use crate::foundation::trust;
use crate::value::Value;

use super::convert::{plain_value, table_exprs, to_expr};
use super::meta;
use super::model::{
    Expr, ImportBlock, Lifecycle, ModuleBlock, MovedBlock, OutputBlock, ProviderBlock, RemovedBlock, Repetition,
    ResourceBlock, Spanned, Spec, VarType, VariableBlock,
};

/// The top-level tables a spec may have.
const BLOCK_KINDS: [&str; 13] = [
    "variable", "provider", "resource", "data", "output", "locals", "module", "moved", "removed", "import", "check",
    "backend", "policy",
];

/// Loads a spec from a file, or from every `*.toml` file of a directory.
///
/// Every error of every file is reported (sorted by position); duplicate
/// blocks across files are errors naming both positions.
pub fn load(path: &Path) -> Result<Spec, Diagnostics> {
    load_inner(path, &mut Vec::new())
}

fn load_inner(path: &Path, stack: &mut Vec<PathBuf>) -> Result<Spec, Diagnostics> {
    let mut errors = Vec::new();
    let (files, dir, name) = if path.is_dir() {
        let files = match toml_files(path) {
            Ok(f) => f,
            Err(e) => {
                return Err(Diagnostics(vec![Diagnostic::error(
                    None,
                    format!("cannot read directory `{}`: {e}", path.display()),
                )]));
            }
        };
        if files.is_empty() {
            return Err(Diagnostics(vec![
                Diagnostic::error(None, format!("no `*.toml` files in `{}`", path.display()))
                    .with_hint("pass a spec file, or a directory holding `*.toml` files"),
            ]));
        }
        (files, path.to_path_buf(), dir_name(path))
    } else {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        (vec![path.to_path_buf()], dir, name)
    };
    let mut sources = Vec::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => sources.push(SourceFile::new(f, text)),
            Err(e) => errors.push(Diagnostic::error(None, format!("cannot read `{}`: {e}", f.display()))),
        }
    }
    let mut spec = Spec { name, dir, files, ..Spec::default() };
    for src in &sources {
        add_source(&mut spec, src, &mut errors);
    }
    load_modules(&mut spec, &mut errors, stack);
    finish(spec, errors)
}

/// Loads the spec of every `[module.<name>]` from its `source` directory
/// (relative to the spec's directory), recursively; a module that sources
/// itself, directly or not, is an error naming the chain.
fn load_modules(spec: &mut Spec, errors: &mut Vec<Diagnostic>, stack: &mut Vec<PathBuf>) {
    if stack.is_empty() {
        if let Ok(here) = std::fs::canonicalize(&spec.dir) {
            stack.push(here);
        }
    }
    let dir = spec.dir.clone();
    for m in spec.modules.values_mut() {
        let path = Path::new(&m.source.node)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .fold(dir.clone(), |p, c| p.join(c));
        let canon = match std::fs::canonicalize(&path) {
            Ok(c) if c.is_dir() => c,
            Ok(_) | Err(_) => {
                errors.push(
                    Diagnostic::error(
                        Some(m.source.pos.clone()),
                        format!("module `{}`: source `{}` is not a directory", m.name, m.source.node),
                    )
                    .with_hint("`source` is a directory of `*.toml` files, relative to this spec's directory"),
                );
                continue;
            }
        };
        // Inside the root spec's directory (symbolic links followed), unless the operator allows
        // more: a spec is untrusted input (foundation::trust).
        if let Some(root) = stack.first()
            && let Err(e) = trust::confine(root, &canon)
        {
            errors.push(
                Diagnostic::error(Some(m.source.pos.clone()), format!("module `{}`: source {e}", m.name))
                    .with_hint(trust::OutsideRoot::hint()),
            );
            continue;
        }
        if stack.contains(&canon) {
            errors.push(
                Diagnostic::error(
                    Some(m.source.pos.clone()),
                    format!(
                        "module `{}`: source `{}` is a spec that is already being loaded above it: modules would include \
                         themselves",
                        m.name, m.source.node
                    ),
                )
                .with_hint("modules form a tree: a module cannot use itself or one of the modules that use it"),
            );
            continue;
        }
        stack.push(canon);
        match load_inner(&path, stack) {
            Ok(sub) => {
                for (what, found) in [
                    ("provider", sub.providers.values().map(|p| p.pos.clone()).next()),
                    ("[[moved]]", sub.moved.first().map(|b| b.pos.clone())),
                    ("[[removed]]", sub.removed.first().map(|b| b.pos.clone())),
                    ("[[import]]", sub.imports.first().map(|b| b.pos.clone())),
                    ("check", sub.checks.values().map(|b| b.pos.clone()).next()),
                    ("backend", sub.backend.as_ref().map(|b| b.pos.clone())),
                    ("policy", sub.policy.as_ref().map(|b| b.pos.clone())),
                ] {
                    if let Some(pos) = found {
                        errors.push(
                            Diagnostic::error(Some(pos), format!("a module cannot have `{what}` blocks")).with_hint(
                                "put them in the root spec, with module addresses (`module.<name>.<type>.<name>`)",
                            ),
                        );
                    }
                }
                *m.spec = sub;
            }
            // What the module's directory itself lacks (no `*.toml` files, an unreadable file) has
            // no position of its own: it is said at the `source` that names the directory.
            Err(d) => errors.extend(d.0.into_iter().map(|mut e| {
                if e.pos.is_none() {
                    e.pos = Some(m.source.pos.clone());
                    e.message = format!("module `{}`: {}", m.name, e.message);
                }
                e
            })),
        }
        stack.pop();
    }
}

/// Loads a spec from text, as if read from `path` (for tests and tools).
/// `file()` paths are relative to `path`'s directory.
pub fn load_str(path: &Path, text: &str) -> Result<Spec, Diagnostics> {
    let src = SourceFile::new(path, text.to_string());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut spec = Spec { name, dir, files: vec![path.to_path_buf()], ..Spec::default() };
    let mut errors = Vec::new();
    add_source(&mut spec, &src, &mut errors);
    load_modules(&mut spec, &mut errors, &mut Vec::new());
    finish(spec, errors)
}

/// A TOML syntax error, positioned; a duplicate key is named.
pub(crate) fn toml_error(src: &SourceFile, e: &toml::de::Error) -> Diagnostic {
    let msg = e.message().trim();
    let pos = e.span().map(|s| src.pos(s.start));
    let key = e.span().and_then(|s| src.text.get(s)).map(str::trim).filter(|k| !k.is_empty());
    match (msg, key) {
        ("duplicate key", Some(k)) => Diagnostic::error(pos, format!("invalid TOML: duplicate key `{k}`"))
            .with_hint("a key or table may appear only once in a file"),
        _ => Diagnostic::error(pos, format!("invalid TOML: {msg}")),
    }
}

fn finish(spec: Spec, errors: Vec<Diagnostic>) -> Result<Spec, Diagnostics> {
    let mut d = Diagnostics(errors);
    d.sort();
    if d.has_errors() { Err(d) } else { Ok(spec) }
}

fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn dir_name(path: &Path) -> String {
    let named = path.file_name().map(|s| s.to_string_lossy().into_owned());
    named
        .or_else(|| {
            std::fs::canonicalize(path).ok().and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "spec".into())
}

type Key<'i> = TSpanned<DeString<'i>>;
type Val<'i> = TSpanned<DeValue<'i>>;

/// Adds one file's blocks to `spec`.
fn add_source(spec: &mut Spec, src: &SourceFile, errors: &mut Vec<Diagnostic>) {
    let (root, parse_errors) = DeTable::parse_recoverable(&src.text);
    for e in parse_errors {
        errors.push(toml_error(src, &e));
    }
    let mut cx = Cx { src, errors };
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "variable" => cx.named_blocks(k, v, "variable", |cx, name, v| cx.variable(spec, name, v)),
            "provider" => cx.named_blocks(k, v, "provider", |cx, name, v| cx.provider(spec, name, v)),
            "output" => cx.named_blocks(k, v, "output", |cx, name, v| cx.output(spec, name, v)),
            "check" => cx.named_blocks(k, v, "check", |cx, name, v| cx.check(spec, name, v)),
            "backend" => cx.named_blocks(k, v, "backend", |cx, name, v| cx.backend(spec, name, v)),
            "policy" => cx.policy(spec, v),
            "resource" => cx.typed_blocks(k, v, false, spec),
            "data" => cx.typed_blocks(k, v, true, spec),
            "locals" => cx.locals(spec, v),
            "module" => cx.named_blocks(k, v, "module", |cx, name, v| cx.module(spec, name, v)),
            "moved" => cx.array_blocks(v, "moved", |cx, t, pos| cx.moved(spec, t, pos)),
            "removed" => cx.array_blocks(v, "removed", |cx, t, pos| cx.removed(spec, t, pos)),
            "import" => cx.array_blocks(v, "import", |cx, t, pos| cx.import(spec, t, pos)),
            other => {
                let d = Diagnostic::error(Some(cx.key_pos(k)), format!("unknown block kind `{other}`"));
                let d = match crate::diag::did_you_mean(other, BLOCK_KINDS) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(
                        "top-level tables are `variable`, `provider`, `resource`, `data`, `output`, `locals`, \
                         `module`, `check`, `backend`, `policy`, and the arrays `[[moved]]`, `[[removed]]`, `[[import]]`",
                    ),
                };
                cx.errors.push(d);
            }
        }
    }
}

/// Loading context for one file.
pub(crate) struct Cx<'s, 'e> {
    pub(crate) src: &'s SourceFile,
    pub(crate) errors: &'e mut Vec<Diagnostic>,
}

impl Cx<'_, '_> {
    pub(crate) fn key_pos(&self, k: &Key<'_>) -> Pos {
        self.src.pos(k.span().start)
    }
    pub(crate) fn val_pos(&self, v: &Val<'_>) -> Pos {
        self.src.pos(v.span().start)
    }
    pub(crate) fn err(&mut self, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.errors.push(Diagnostic::error(Some(pos), msg));
        self.errors.last_mut().expect("just pushed")
    }

    fn table<'a, 'i>(&mut self, v: &'a Val<'i>, what: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            DeValue::Array(a) if !a.is_empty() && a.iter().all(|i| i.get_ref().is_table()) => {
                let pos = self.val_pos(v);
                let d = self.err(pos, format!("{what} must be a table, not an array of tables"));
                *d = d.clone().with_hint("write `[...]` (one pair of brackets), not `[[...]]`");
                None
            }
            other => {
                let pos = self.val_pos(v);
                self.err(pos, format!("{what} must be a table, found {}", other.type_str()));
                None
            }
        }
    }

    fn check_name(&mut self, k: &Key<'_>, what: &str) -> bool {
        let name = k.get_ref();
        if is_identifier(name) {
            return true;
        }
        let pos = self.key_pos(k);
        let why = match name.chars().next() {
            None => "it is empty".to_string(),
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
                format!("it starts with `{c}`")
            }
            _ => {
                let bad = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')).unwrap_or(' ');
                format!("it contains `{bad}`")
            }
        };
        let d = self.err(pos, format!("invalid {what} name `{name}`: {why}"));
        *d =
            d.clone().with_hint("names start with a letter or `_` and contain only ASCII letters, digits, `_` and `-`");
        false
    }

    /// `[variable.<name>]`, `[provider.<name>]`, `[output.<name>]`.
    fn named_blocks<'i>(
        &mut self,
        k: &Key<'i>,
        v: &Val<'i>,
        kind: &str,
        mut each: impl FnMut(&mut Self, &Key<'i>, &Val<'i>),
    ) {
        let _ = k;
        let Some(t) = self.table(v, &format!("`{kind}`")) else {
            return;
        };
        for (name, body) in t.iter() {
            if self.check_name(name, kind) {
                each(self, name, body);
            }
        }
    }

    /// `[resource.<type>.<name>]` and `[data.<type>.<name>]`.
    fn typed_blocks(&mut self, _k: &Key<'_>, v: &Val<'_>, data: bool, spec: &mut Spec) {
        let kind = if data { "data" } else { "resource" };
        let Some(types) = self.table(v, &format!("`{kind}`")) else {
            return;
        };
        for (ty, names) in types.iter() {
            if !self.check_name(ty, &format!("{kind} type")) {
                continue;
            }
            let what = format!("`{kind}.{}` (blocks are `[{kind}.<type>.<name>]`)", ty.get_ref());
            let Some(names) = self.table(names, &what) else {
                continue;
            };
            for (name, body) in names.iter() {
                if !self.check_name(name, kind) {
                    continue;
                }
                let address = if data {
                    Address::data(ty.get_ref().as_ref(), name.get_ref().as_ref())
                } else {
                    Address::managed(ty.get_ref().as_ref(), name.get_ref().as_ref())
                };
                let Some(t) = body.get_ref().as_table() else {
                    // `[resource.<type>]` followed by `key = value`: the name level is missing.
                    let p = self.key_pos(name);
                    let d = self.err(
                        p,
                        format!(
                            "`{}` is directly under `[{kind}.{}]`, which is not a block",
                            name.get_ref(),
                            ty.get_ref()
                        ),
                    );
                    *d = d.clone().with_hint(format!(
                        "blocks are `[{kind}.<type>.<name>]`: write `[{kind}.{}.<name>]`",
                        ty.get_ref()
                    ));
                    continue;
                };
                let pos = self.val_pos(body);
                if let Some(block) = self.resource(address, pos, t) {
                    let existing = spec.resources.get(&block.address).map(|b| b.pos.clone());
                    match existing {
                        Some(first) => {
                            let msg = format!("duplicate {kind} `{}`", block.address);
                            self.duplicate(block.pos, msg, &first);
                        }
                        None => {
                            spec.resources.insert(block.address.clone(), block);
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn duplicate(&mut self, pos: Pos, msg: String, first: &Pos) {
        let d = self.err(pos, msg);
        *d = d.clone().with_hint(format!("first declared at {first}; names must be unique across all files"));
    }

    fn resource(&mut self, address: Address, pos: Pos, t: &DeTable<'_>) -> Option<ResourceBlock> {
        let data = address.mode == crate::address::Mode::Data;
        let mut body = BTreeMap::new();
        let mut depends_on = Vec::new();
        let mut lifecycle = Lifecycle::default();
        let mut timeouts = BTreeMap::new();
        let mut provider = None;
        let mut repetition = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "count" | "for_each" => self.repetition(k, v, &mut repetition),
                "depends_on" => depends_on = meta::depends_on(self, v),
                "lifecycle" if data => {
                    let p = self.key_pos(k);
                    let d = self.err(p, "data sources have no `lifecycle`");
                    *d = d.clone().with_hint("a data source is only read, never created or destroyed");
                }
                "lifecycle" => lifecycle = meta::lifecycle(self, v),
                "timeouts" => timeouts = meta::timeouts(self, v, data),
                "provider" => provider = meta::provider(self, v),
                _ => {
                    let e = to_expr(self.src, v, self.key_pos(k), self.errors);
                    body.insert(k.get_ref().to_string(), e);
                }
            }
        }
        Some(ResourceBlock {
            address,
            pos: pos.clone(),
            body: Spanned { node: Expr::Map(body), pos },
            depends_on,
            lifecycle,
            timeouts,
            provider,
            repetition,
        })
    }

    /// `count = N` or `for_each = ...`: one of them per block.
    fn repetition(&mut self, k: &Key<'_>, v: &Val<'_>, out: &mut Option<Repetition>) {
        let kp = self.key_pos(k);
        let e = to_expr(self.src, v, kp.clone(), self.errors);
        if out.is_some() {
            let d = self.err(kp, "`count` and `for_each` cannot both be set on one block");
            *d = d.clone().with_hint("use `count` for N identical copies, `for_each` for one per key");
            return;
        }
        *out = Some(if k.get_ref().as_ref() == "count" { Repetition::Count(e) } else { Repetition::ForEach(e) });
    }

    /// `[locals]`: `name = value` pairs.
    fn locals(&mut self, spec: &mut Spec, v: &Val<'_>) {
        let Some(t) = self.table(v, "`locals`") else {
            return;
        };
        for (name, value) in t.iter() {
            if !self.check_name(name, "local") {
                continue;
            }
            let kp = self.key_pos(name);
            let e = to_expr(self.src, value, kp.clone(), self.errors);
            match spec.locals.get(name.get_ref().as_ref()) {
                Some(first) => {
                    let first = first.pos.clone();
                    self.duplicate(kp, format!("duplicate local `{}`", name.get_ref()), &first);
                }
                None => {
                    spec.locals.insert(name.get_ref().to_string(), e);
                }
            }
        }
    }

    /// `[module.<name>]`: `source`, meta-arguments, and inputs.
    fn module(&mut self, spec: &mut Spec, name: &Key<'_>, v: &Val<'_>) {
        let n = name.get_ref().to_string();
        let Some(t) = self.table(v, &format!("`module.{n}`")) else {
            return;
        };
        let pos = self.val_pos(v);
        let mut source = None;
        let mut inputs = BTreeMap::new();
        let mut repetition = None;
        let mut depends_on = Vec::new();
        for (k, v) in t.iter() {
            let kp = self.key_pos(k);
            match k.get_ref().as_ref() {
                "source" => match v.get_ref().as_str() {
                    Some(s) if !s.contains("${") => source = Some(Spanned { node: s.to_string(), pos: kp }),
                    _ => {
                        let d = self.err(kp, "`source` must be a plain string: the module's directory");
                        *d = d.clone().with_hint("write `source = \"./modules/<name>\"` (relative to this spec)");
                    }
                },
                "count" | "for_each" => self.repetition(k, v, &mut repetition),
                "depends_on" => depends_on = meta::depends_on(self, v),
                "providers" | "lifecycle" | "timeouts" | "provider" => {
                    let d = self.err(kp, format!("`{}` is not supported on a module block", k.get_ref()));
                    *d = d.clone().with_hint("a module's resources use the root spec's providers");
                }
                _ => {
                    inputs.insert(k.get_ref().to_string(), to_expr(self.src, v, kp, self.errors));
                }
            }
        }
        let Some(source) = source else {
            let d = self.err(pos, format!("module `{n}` has no `source`"));
            *d = d.clone().with_hint("add `source = \"./modules/<name>\"`: a directory of `*.toml` files");
            return;
        };
        let block = ModuleBlock {
            name: n.clone(),
            pos: pos.clone(),
            source,
            inputs,
            repetition,
            depends_on,
            spec: Box::default(),
        };
        match spec.modules.get(&n) {
            Some(first) => {
                let first = first.pos.clone();
                self.duplicate(pos, format!("duplicate module `{n}`"), &first);
            }
            None => {
                spec.modules.insert(n, block);
            }
        }
    }

    /// `[[moved]]`, `[[removed]]`, `[[import]]`: arrays of tables.
    fn array_blocks(&mut self, v: &Val<'_>, kind: &str, mut each: impl FnMut(&mut Self, &DeTable<'_>, Pos)) {
        let Some(items) = v.get_ref().as_array() else {
            let p = self.val_pos(v);
            let d = self.err(p, format!("`{kind}` must be an array of tables"));
            *d = d.clone().with_hint(format!("write `[[{kind}]]` (two pairs of brackets), one per entry"));
            return;
        };
        for item in items.iter() {
            let pos = self.val_pos(item);
            match item.get_ref().as_table() {
                Some(t) => each(self, t, pos),
                None => {
                    let d = self.err(pos, format!("`{kind}` entries must be tables"));
                    *d = d.clone().with_hint(format!("write `[[{kind}]]` followed by its keys"));
                }
            }
        }
    }

    /// The plain string value of key `k` in `t`, with its position.
    fn plain_str(&mut self, t: &DeTable<'_>, block: &str, k: &str, pos: &Pos) -> Option<Spanned<String>> {
        let Some((key, v)) = t.get_key_value(k) else {
            let d = self.err(pos.clone(), format!("`[[{block}]]` needs `{k}`"));
            *d = d.clone().with_hint(format!("add `{k} = \"<address>\"`"));
            return None;
        };
        let kp = self.key_pos(key);
        match v.get_ref().as_str() {
            Some(s) => Some(Spanned { node: s.to_string(), pos: self.val_pos(v) }),
            None => {
                self.err(kp, format!("`{k}` of `[[{block}]]` must be a string"));
                None
            }
        }
    }

    fn unknown_keys(&mut self, t: &DeTable<'_>, block: &str, allowed: &[&str]) {
        for (k, _) in t.iter() {
            if !allowed.contains(&k.get_ref().as_ref()) {
                let kp = self.key_pos(k);
                let d = self.err(kp, format!("unknown key `{}` in `[[{block}]]`", k.get_ref()));
                *d = d.clone().with_suggestion(k.get_ref(), allowed.iter().copied());
                if d.hint.is_none() {
                    *d = d.clone().with_hint(format!(
                        "`[[{block}]]` takes {}",
                        allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }

    fn address_at(&mut self, s: &Spanned<String>, what: &str) -> Option<Spanned<Address>> {
        match s.node.parse::<Address>() {
            Ok(a) => Some(Spanned { node: a, pos: s.pos.clone() }),
            Err(e) => {
                let d = self.err(s.pos.clone(), format!("{what}: {e}"));
                *d = d.clone().with_hint("write the address itself, e.g. `test_object.replica[0]`, without `${...}`");
                None
            }
        }
    }

    /// A `moved`/`removed` endpoint, parsed once into a typed target.
    fn target_at(&mut self, s: &Spanned<String>) -> Option<Spanned<Target>> {
        match s.node.parse::<Target>() {
            Ok(t) => Some(Spanned { node: t, pos: s.pos.clone() }),
            Err(e) => {
                let d = self.err(s.pos.clone(), e.to_string());
                *d = d.clone().with_hint("e.g. `test_object.old`, `test_object.copies[0]`, `module.team`");
                None
            }
        }
    }

    fn moved(&mut self, spec: &mut Spec, t: &DeTable<'_>, pos: Pos) {
        self.unknown_keys(t, "moved", &["from", "to"]);
        let from = self.plain_str(t, "moved", "from", &pos);
        let to = self.plain_str(t, "moved", "to", &pos);
        let from = from.and_then(|f| self.target_at(&f));
        let to = to.and_then(|t| self.target_at(&t));
        if let (Some(from), Some(to)) = (from, to) {
            spec.moved.push(MovedBlock { pos, from, to });
        }
    }

    fn removed(&mut self, spec: &mut Spec, t: &DeTable<'_>, pos: Pos) {
        self.unknown_keys(t, "removed", &["from", "destroy"]);
        let from = self.plain_str(t, "removed", "from", &pos).and_then(|f| self.target_at(&f));
        let destroy = match t.get_key_value("destroy") {
            None => true,
            Some((k, v)) => match v.get_ref().as_bool() {
                Some(b) => b,
                None => {
                    let kp = self.key_pos(k);
                    self.err(kp, "`destroy` must be `true` or `false`");
                    true
                }
            },
        };
        if let Some(from) = from {
            spec.removed.push(RemovedBlock { pos, from, destroy });
        }
    }

    fn import(&mut self, spec: &mut Spec, t: &DeTable<'_>, pos: Pos) {
        self.unknown_keys(t, "import", &["to", "id"]);
        let to = self.plain_str(t, "import", "to", &pos).and_then(|f| self.address_at(&f, "`to` of `[[import]]`"));
        let id = match t.get_key_value("id") {
            Some((k, v)) => Some(to_expr(self.src, v, self.key_pos(k), self.errors)),
            None => {
                let d = self.err(pos.clone(), "`[[import]]` needs `id`");
                *d = d.clone().with_hint("add `id = \"...\"`: the object's import id (see `skyform import`)");
                None
            }
        };
        if let (Some(to), Some(id)) = (to, id) {
            spec.imports.push(ImportBlock { pos, to, id });
        }
    }

    fn variable(&mut self, spec: &mut Spec, name: &Key<'_>, v: &Val<'_>) {
        let n = name.get_ref().to_string();
        let Some(t) = self.table(v, &format!("`variable.{n}`")) else {
            return;
        };
        let pos = self.val_pos(v);
        let mut ty: Option<VarType> = None;
        let mut default: Option<(Value, Pos)> = None;
        let mut description = None;
        let mut sensitive = false;
        for (k, v) in t.iter() {
            let kp = self.key_pos(k);
            match k.get_ref().as_ref() {
                "type" => match v.get_ref().as_str() {
                    Some(s) => match var_type(s) {
                        Some(t) => ty = Some(t),
                        None => {
                            let vp = self.val_pos(v);
                            let d = self.err(vp, format!("unknown variable type `{s}`"));
                            *d = d.clone().with_hint(format!(
                                "{}the types are {}",
                                crate::diag::did_you_mean(s, VAR_TYPES)
                                    .map(|x| format!("did you mean `{x}`? "))
                                    .unwrap_or_default(),
                                VAR_TYPES.map(|t| format!("`{t}`")).join(", ")
                            ));
                        }
                    },
                    None => {
                        self.err(kp, "`type` must be a string such as `\"string\"`");
                    }
                },
                "default" => match plain_value(v.get_ref()) {
                    Ok(val) => default = Some((val, kp)),
                    Err(msg) => {
                        self.err(kp, msg);
                    }
                },
                "description" => match v.get_ref().as_str() {
                    Some(s) => description = Some(s.to_string()),
                    None => {
                        self.err(kp, "`description` must be a string");
                    }
                },
                "sensitive" => match v.get_ref().as_bool() {
                    Some(b) => sensitive = b,
                    None => {
                        self.err(kp, "`sensitive` must be `true` or `false`");
                    }
                },
                other => {
                    let d = self.err(kp, format!("unknown key `{other}` in variable `{n}`"));
                    let keys = ["type", "default", "description", "sensitive"];
                    *d = d.clone().with_suggestion(other, keys);
                    if d.hint.is_none() {
                        *d = d.clone().with_hint("a variable has `type`, `default`, `description` and `sensitive`");
                    }
                }
            }
        }
        // Without a `type`, a default's type is the variable's type.
        let ty = ty.unwrap_or(match &default {
            Some((Value::Int(_) | Value::Float(_), _)) => VarType::Number,
            Some((Value::Bool(_), _)) => VarType::Bool,
            Some((Value::List(_), _)) => VarType::List,
            Some((Value::Map(_), _)) => VarType::Map,
            _ => VarType::String,
        });
        if let Some((d, dp)) = &default {
            if !var_type_accepts(ty, d) {
                self.err(
                    dp.clone(),
                    format!("default of variable `{n}` is a {}, but its type is {}", d.type_name(), var_type_name(ty)),
                );
            }
        }
        let block = VariableBlock {
            name: n.clone(),
            pos: pos.clone(),
            ty,
            default: default.map(|(v, _)| v),
            description,
            sensitive,
        };
        match spec.variables.get(&n) {
            Some(first) => {
                let first = first.pos.clone();
                self.duplicate(pos, format!("duplicate variable `{n}`"), &first);
            }
            None => {
                spec.variables.insert(n, block);
            }
        }
    }

    fn provider(&mut self, spec: &mut Spec, name: &Key<'_>, v: &Val<'_>) {
        let n = name.get_ref().to_string();
        let Some(t) = self.table(v, &format!("`provider.{n}`")) else {
            return;
        };
        let pos = self.val_pos(v);
        let config = table_exprs(self.src, t, self.errors);
        let block = ProviderBlock {
            name: n.clone(),
            pos: pos.clone(),
            config: Spanned { node: Expr::Map(config), pos: pos.clone() },
        };
        match spec.providers.get(&n) {
            Some(first) => {
                let first = first.pos.clone();
                self.duplicate(pos, format!("duplicate provider `{n}`"), &first);
            }
            None => {
                spec.providers.insert(n, block);
            }
        }
    }

    fn output(&mut self, spec: &mut Spec, name: &Key<'_>, v: &Val<'_>) {
        let n = name.get_ref().to_string();
        let Some(t) = self.table(v, &format!("`output.{n}`")) else {
            return;
        };
        let pos = self.val_pos(v);
        let mut value = None;
        let mut sensitive = false;
        for (k, v) in t.iter() {
            let kp = self.key_pos(k);
            match k.get_ref().as_ref() {
                "value" => value = Some(to_expr(self.src, v, self.val_pos(v), self.errors)),
                "sensitive" => match v.get_ref().as_bool() {
                    Some(b) => sensitive = b,
                    None => {
                        self.err(kp, "`sensitive` must be `true` or `false`");
                    }
                },
                "description" => {
                    if v.get_ref().as_str().is_none() {
                        self.err(kp, "`description` must be a string");
                    }
                }
                other => {
                    let d = self.err(kp, format!("unknown key `{other}` in output `{n}`"));
                    *d = d.clone().with_suggestion(other, ["value", "sensitive", "description"]);
                    if d.hint.is_none() {
                        *d = d.clone().with_hint("an output has `value`, `sensitive` and `description`");
                    }
                }
            }
        }
        let Some(value) = value else {
            let d = self.err(pos, format!("output `{n}` has no `value`"));
            *d = d.clone().with_hint(format!("add `value = \"${{...}}\"` to `[output.{n}]`"));
            return;
        };
        let block = OutputBlock { name: n.clone(), pos: pos.clone(), value, sensitive };
        match spec.outputs.get(&n) {
            Some(first) => {
                let first = first.pos.clone();
                self.duplicate(pos, format!("duplicate output `{n}`"), &first);
            }
            None => {
                spec.outputs.insert(n, block);
            }
        }
    }
}

const VAR_TYPES: [&str; 5] = ["string", "number", "bool", "list", "map"];

fn var_type(s: &str) -> Option<VarType> {
    Some(match s {
        "string" => VarType::String,
        "number" => VarType::Number,
        "bool" => VarType::Bool,
        "list" => VarType::List,
        "map" => VarType::Map,
        _ => return None,
    })
}

/// The name of a variable type, as written in the spec.
pub(crate) fn var_type_name(t: VarType) -> &'static str {
    match t {
        VarType::String => "string",
        VarType::Number => "number",
        VarType::Bool => "bool",
        VarType::List => "list",
        VarType::Map => "map",
    }
}

/// Whether `v` fits a variable type (unknown and secrets are looked through).
pub(crate) fn var_type_accepts(t: VarType, v: &Value) -> bool {
    match (t, v) {
        (_, Value::Sensitive(inner)) => var_type_accepts(t, inner),
        (_, Value::Unknown | Value::Redacted(_)) => true,
        (VarType::String, Value::String(_))
        | (VarType::Number, Value::Int(_) | Value::Float(_))
        | (VarType::Bool, Value::Bool(_))
        | (VarType::List, Value::List(_))
        | (VarType::Map, Value::Map(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Spec {
        match load_str(Path::new("t.toml"), text) {
            Ok(s) => s,
            Err(d) => panic!("{d}"),
        }
    }

    fn err(text: &str) -> String {
        load_str(Path::new("t.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn loads_every_block_kind() {
        let s = ok(r#"
[variable.project]
type = "string"
description = "GCP project id"

[variable.n]
default = 3

[provider.gcp]
project = "${var.project}"

[resource.gcp_service_account.sql_access]
account_id = "skypilot"
depends_on = ["gcp_project_service.iam", "data.gcp_project.p"]
lifecycle = { prevent_destroy = true, ignore_changes = ["display_name"], create_before_destroy = false }
timeouts = { create = "1h30m", delete = 90 }
provider = "gcp"

[data.gcp_container_cluster.main]
name = "my-cluster"
created = 1979-05-27T07:32:00Z

[output.sa_email]
value = "${gcp_service_account.sql_access.email}"
sensitive = true
"#);
        assert_eq!(s.name, "t");
        assert_eq!(s.variables["n"].ty, VarType::Number);
        assert_eq!(s.variables["project"].default, None);
        let r = &s.resources[&Address::managed("gcp_service_account", "sql_access")];
        assert_eq!((r.pos.line, r.pos.col), (12, 1));
        assert_eq!(r.depends_on.len(), 2);
        assert!(r.lifecycle.prevent_destroy);
        assert_eq!(r.lifecycle.ignore_changes, ["display_name"]);
        assert_eq!(r.timeouts["create"], 5400);
        assert_eq!(r.timeouts["delete"], 90);
        assert_eq!(r.provider.as_deref(), Some("gcp"));
        let Expr::Map(body) = &r.body.node else { panic!() };
        assert_eq!(body.keys().collect::<Vec<_>>(), ["account_id"]);
        assert_eq!((body["account_id"].pos.line, body["account_id"].pos.col), (13, 1));
        let d = &s.resources[&Address::data("gcp_container_cluster", "main")];
        let Expr::Map(body) = &d.body.node else { panic!() };
        assert_eq!(body["created"].node, Expr::Literal(Value::str("1979-05-27T07:32:00Z")));
        assert!(s.outputs["sa_email"].sensitive);
        assert_eq!(s.outputs["sa_email"].value.node.references().len(), 1);
    }

    #[test]
    fn nested_tables_are_interpolated() {
        let s = ok("[resource.k.m]\nmanifest.spec = { a = [\"${var.x}\", 1] }\n");
        let r = s.resources.values().next().unwrap();
        let refs = r.body.node.references();
        assert_eq!(refs.len(), 1);
        assert_eq!((refs[0].pos.line, refs[0].pos.col), (2, 27));
    }

    #[test]
    fn unknown_block_kind_has_hint() {
        assert_eq!(
            err("[resources.a.b]\nx = 1\n"),
            "t.toml:1:2: error: unknown block kind `resources`\n  hint: did you mean `resource`?\n"
        );
    }

    #[test]
    fn bad_names() {
        let e = err("[resource.a.\"bad name\"]\n[variable.1x]\n");
        assert!(e.contains("t.toml:1:13: error: invalid resource name `bad name`: it contains ` `"), "{e}");
        assert!(e.contains("t.toml:2:11: error: invalid variable name `1x`: it starts with `1`"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_are_positioned() {
        let e = err("[resource.a.b]\nx = \n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
        assert!(e.contains("invalid TOML"), "{e}");
    }

    #[test]
    fn shape_errors() {
        let e = err("resource = 1\n[variable.v]\ntype = \"strin\"\n[output.o]\nsensitive = true\n[[data.x.y]]\n");
        assert!(e.contains("`resource` must be a table, found integer"), "{e}");
        assert!(e.contains("unknown variable type `strin`"), "{e}");
        assert!(e.contains("output `o` has no `value`"), "{e}");
    }
}
