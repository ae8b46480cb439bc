//! Evaluating expressions against the values known so far.
//!
//! Two properties of [`Value`] carry through evaluation:
//! - *unknown* is contagious: a string built from an unknown part is unknown;
//! - *sensitive* is contagious: a string built from a secret is a secret.
//!
//! A template that is exactly one interpolation (`"${var.labels}"`) keeps the
//! value as it is: its type (list, map, bool, number) and its sensitivity.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{Diagnostic, Diagnostics};
use crate::value::Value;

use super::functions;
use super::model::{Expr, Operand, Reference, Spanned, TemplatePart};

/// Where evaluation finds the values that references point to.
pub trait Scope {
    /// The value of `r`: a variable, or a resource (an empty path is the whole
    /// object) or one of its attributes. `None` when the reference does not
    /// resolve (evaluation then reports "unknown reference"). A value that will
    /// be known only after apply is `Some(Value::Unknown)`.
    fn lookup(&self, r: &Reference) -> Option<Value>;
    /// The directory `file()` paths are relative to (the spec's directory).
    fn base_dir(&self) -> &Path;
}

/// A [`Scope`] over plain maps, for tests and simple callers.
#[derive(Debug, Clone, Default)]
pub struct MapScope {
    /// Variable values.
    pub vars: BTreeMap<String, Value>,
    /// Resource objects, by address (`<type>.<name>` or `data.<type>.<name>`).
    pub resources: BTreeMap<String, Value>,
    /// The directory for `file()`.
    pub dir: std::path::PathBuf,
}

impl Scope for MapScope {
    fn lookup(&self, r: &Reference) -> Option<Value> {
        match r {
            Reference::Var(n) => self.vars.get(n).cloned(),
            Reference::Resource { address, path } => self.resources.get(&address.to_string())?.get_path(path),
            // Replaced by `spec::expand` before anything is evaluated.
            _ => None,
        }
    }
    fn base_dir(&self) -> &Path {
        &self.dir
    }
}

/// Evaluates `expr`. Every error in it is reported (not only the first).
///
/// ```
/// use skyform::spec::eval::{eval, MapScope};
/// use skyform::spec::load_str;
/// use skyform::value::Value;
/// let spec = load_str("s.toml".as_ref(), "[output.o]\nvalue = \"id-${var.p}\"\n").unwrap();
/// let mut scope = MapScope::default();
/// scope.vars.insert("p".into(), Value::str("x"));
/// assert_eq!(eval(&spec.outputs["o"].value, &scope).unwrap(), Value::str("id-x"));
/// ```
pub fn eval(expr: &Spanned<Expr>, scope: &dyn Scope) -> Result<Value, Diagnostics> {
    let mut errors = Vec::new();
    let v = eval_expr(expr, scope, &mut errors);
    if errors.is_empty() {
        Ok(v)
    } else {
        let mut d = Diagnostics(errors);
        d.sort();
        Err(d)
    }
}

fn eval_expr(expr: &Spanned<Expr>, scope: &dyn Scope, errors: &mut Vec<Diagnostic>) -> Value {
    match &expr.node {
        Expr::Literal(v) => v.clone(),
        Expr::List(items) => Value::List(items.iter().map(|i| eval_expr(i, scope, errors)).collect()),
        Expr::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), eval_expr(v, scope, errors))).collect()),
        Expr::Template(parts) => eval_template(parts, scope, errors),
    }
}

fn eval_template(parts: &[TemplatePart], scope: &dyn Scope, errors: &mut Vec<Diagnostic>) -> Value {
    if let [TemplatePart::Interp(op)] = parts {
        return eval_operand(op, scope, errors).unwrap_or(Value::Unknown);
    }
    let mut out = String::new();
    let mut unknown = false;
    let mut sensitive = false;
    let mut failed = false;
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Interp(op) => {
                let Some(v) = eval_operand(op, scope, errors) else {
                    failed = true;
                    continue;
                };
                sensitive |= v.has_sensitive();
                match v.unmarked() {
                    Value::Unknown => unknown = true,
                    // The clear text of a redacted secret is not available (it
                    // was only ever stored as a fingerprint), so the string it
                    // is part of cannot be computed: it is unknown until the
                    // secret is supplied again.
                    Value::Redacted(_) => unknown = true,
                    v @ (Value::List(_) | Value::Map(_)) => {
                        failed = true;
                        errors.push(
                            Diagnostic::error(
                                Some(op.pos.clone()),
                                format!("cannot put a {} inside a string", v.type_name()),
                            )
                            .with_hint(
                                "a string that is exactly one `${...}` keeps the value's type; \
                                 to build text from a list use `join(sep, list)`",
                            ),
                        );
                    }
                    v => out.push_str(&v.to_template_string().unwrap_or_default()),
                }
            }
        }
    }
    if failed || unknown {
        return Value::Unknown;
    }
    let v = Value::String(out);
    if sensitive { v.sensitive() } else { v }
}

/// `None` when an error was pushed.
fn eval_operand(op: &Spanned<Operand>, scope: &dyn Scope, errors: &mut Vec<Diagnostic>) -> Option<Value> {
    match &op.node {
        Operand::Str(s) => Some(Value::String(s.clone())),
        Operand::Number(n) => Some(number(*n)),
        Operand::Value(v) => Some(v.clone()),
        Operand::Expr(e, path, sensitive) => {
            let v = eval_expr(e, scope, errors);
            let v = if *sensitive && !v.has_sensitive() { v.sensitive() } else { v };
            if path.is_empty() || v.has_unknown() && v.get_path(path).is_none() {
                return Some(if path.is_empty() { v } else { Value::Unknown });
            }
            match v.get_path(path) {
                Some(x) => Some(x),
                None => {
                    errors.push(Diagnostic::error(
                        Some(op.pos.clone()),
                        format!("the value has no `{}`", path.join(".")),
                    ));
                    None
                }
            }
        }
        Operand::Ref(r) => match scope.lookup(r) {
            Some(v) => Some(v),
            None => {
                errors.push(Diagnostic::error(Some(op.pos.clone()), format!("unknown reference `{}`", ref_text(r))));
                None
            }
        },
        Operand::Call(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            let mut ok = true;
            for a in args {
                match eval_operand(a, scope, errors) {
                    Some(v) => vals.push(v),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            match functions::call(name, vals, scope.base_dir(), &op.pos) {
                Ok(v) => Some(v),
                Err(d) => {
                    errors.push(d);
                    None
                }
            }
        }
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { Value::Int(n as i64) } else { Value::Float(n) }
}

/// A reference as written in the spec (`var.x`, `a.b.attr.0`).
pub fn ref_text(r: &Reference) -> String {
    let with_path = |mut s: String, path: &[String]| {
        for p in path {
            s.push('.');
            s.push_str(p);
        }
        s
    };
    match r {
        Reference::Var(n) => format!("var.{n}"),
        Reference::Resource { address, path } => with_path(address.to_string(), path),
        Reference::Local(n, path) => with_path(format!("local.{n}"), path),
        Reference::Each { key: true, .. } => "each.key".into(),
        Reference::Each { key: false, path } => with_path("each.value".into(), path),
        Reference::CountIndex => "count.index".into(),
        Reference::Module { name, key, output, path } => {
            let k = key.as_ref().map(|k| k.to_string()).unwrap_or_default();
            with_path(format!("module.{name}{k}.{output}"), path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    fn scope() -> MapScope {
        let mut s = MapScope::default();
        s.vars.insert("name".into(), Value::str("sky"));
        s.vars.insert("n".into(), Value::Int(3));
        s.vars.insert("on".into(), Value::Bool(true));
        s.vars.insert("l".into(), Value::List(vec!["a".into(), "b".into()]));
        s.vars.insert("pw".into(), Value::str("p@ss").sensitive());
        s.vars.insert("old".into(), Value::Redacted("hmac-sha256:00".into()));
        s.resources.insert("gcp_sa.main".into(), Value::map([("email", Value::Unknown), ("id", Value::str("42"))]));
        s
    }

    fn ev(template: &str) -> Result<Value, String> {
        let text = format!("[output.o]\nvalue = '{template}'\n");
        let spec = load_str("t.toml".as_ref(), &text).map_err(|d| d.to_string())?;
        eval(&spec.outputs["o"].value, &scope()).map_err(|d| d.to_string())
    }

    #[test]
    fn single_interpolation_keeps_type() {
        assert_eq!(ev("${var.n}").unwrap(), Value::Int(3));
        assert_eq!(ev("${var.on}").unwrap(), Value::Bool(true));
        assert_eq!(ev("${var.l}").unwrap(), Value::List(vec!["a".into(), "b".into()]));
        assert_eq!(ev("${var.pw}").unwrap(), Value::str("p@ss").sensitive());
        assert_eq!(ev("${gcp_sa.main.email}").unwrap(), Value::Unknown);
        assert_eq!(ev("${gcp_sa.main}").unwrap().get("id"), Some(&Value::str("42")));
        assert_eq!(ev("${7}").unwrap(), Value::Int(7));
        assert_eq!(ev("${1.5}").unwrap(), Value::Float(1.5));
    }

    #[test]
    fn concatenation() {
        assert_eq!(ev("${var.name}-${var.n}-${var.on}").unwrap(), Value::str("sky-3-true"));
        assert_eq!(ev("x${gcp_sa.main.email}").unwrap(), Value::Unknown);
        assert_eq!(ev("u:${var.pw}").unwrap(), Value::str("u:p@ss").sensitive());
        assert_eq!(ev("u:${urlencode(var.pw)}").unwrap(), Value::str("u:p%40ss").sensitive());
        assert_eq!(ev("x${var.old}").unwrap(), Value::Unknown);
        assert_eq!(ev("${var.old}").unwrap(), Value::Redacted("hmac-sha256:00".into()));
        assert_eq!(ev("${join(\",\", var.l)}!").unwrap(), Value::str("a,b!"));
    }

    #[test]
    fn errors_collected() {
        let e = ev("${var.nope} ${var.l} ${lower(var.zz)}").unwrap_err();
        assert_eq!(
            e,
            "t.toml:2:12: error: unknown reference `var.nope`\n\
             t.toml:2:24: error: cannot put a list inside a string\n  \
             hint: a string that is exactly one `${...}` keeps the value's type; to build text from a list use `join(sep, list)`\n\
             t.toml:2:39: error: unknown reference `var.zz`\n"
        );
        let e = ev("${lowr(var.name)}").unwrap_err();
        assert_eq!(e, "t.toml:2:12: error: unknown function `lowr`\n  hint: did you mean `lower`?\n");
    }

    #[test]
    fn nested_structures() {
        let spec = load_str(
            "t.toml".as_ref(),
            "[resource.k.m]\nspec = { names = [\"${var.name}\", \"${var.n}\"], on = \"${var.on}\" }\n",
        )
        .unwrap();
        let b = &spec.resources.values().next().unwrap().body;
        let v = eval(b, &scope()).unwrap();
        assert_eq!(
            v,
            Value::map([(
                "spec",
                Value::map([("names", Value::List(vec![Value::str("sky"), Value::Int(3)])), ("on", Value::Bool(true))])
            )])
        );
    }
}
