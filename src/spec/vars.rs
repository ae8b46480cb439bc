//! Variable values: defaults, var files, the environment and `--var`.
//!
//! Precedence, lowest first (a later source overrides an earlier one):
//! 1. the `default` in `[variable.<name>]`;
//! 2. `--var-file FILE` (TOML `name = value`), files in the order given;
//! 3. the environment, `SKYFORM_VAR_<name>=value`;
//! 4. `--var name=value`, in the order given.
//!
//! This is Terraform's order (explicit command-line values beat the
//! environment, which beats files). Values from `--var` and the environment are
//! text, converted to the declared type: numbers and bools are parsed; lists
//! and maps are TOML inline values (`["a","b"]`, `{a=1}`). Every problem is
//! reported at once, including *all* required variables left without a value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::value::Value;

use super::convert::plain_value;
use super::load::{var_type_accepts, var_type_name};
use super::model::{Spec, VarType};

/// The prefix of environment variables that set spec variables.
pub const ENV_PREFIX: &str = "SKYFORM_VAR_";

/// Resolves the value of every declared variable.
///
/// `cli` holds `name=value` strings from `--var`; `env` holds the
/// `SKYFORM_VAR_<name>` environment variables, keyed by `<name>` or by the
/// whole `SKYFORM_VAR_<name>` (callers filter the process environment; every
/// entry must name a declared variable). Sensitive variables' values are
/// wrapped in [`Value::Sensitive`].
pub fn resolve_variables(
    spec: &Spec,
    cli: &[String],
    var_files: &[PathBuf],
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let mut errors = Vec::new();
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    for (name, v) in &spec.variables {
        if let Some(d) = &v.default {
            values.insert(name.clone(), d.clone());
        }
    }
    let names: Vec<&str> = spec.variables.keys().map(String::as_str).collect();
    let unknown = |name: &str, from: &str, pos: Option<crate::diag::Pos>| {
        let d = Diagnostic::error(pos, format!("{from} sets undeclared variable `{name}`"));
        match did_you_mean(name, names.iter().copied()) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => d.with_hint(format!("declare it with `[variable.{name}]`")),
        }
    };

    for file in var_files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(Diagnostic::error(None, format!("cannot read var file `{}`: {e}", file.display())));
                continue;
            }
        };
        let src = SourceFile::new(file, text);
        let (root, parse_errors) = DeTable::parse_recoverable(&src.text);
        for e in &parse_errors {
            errors.push(super::load::toml_error(&src, e));
        }
        if !parse_errors.is_empty() {
            continue;
        }
        for (k, v) in root.get_ref().iter() {
            let name = k.get_ref().as_ref();
            let pos = src.pos(k.span().start);
            let Some(decl) = spec.variables.get(name) else {
                errors.push(unknown(name, "var file", Some(pos)));
                continue;
            };
            match plain_value(v.get_ref()) {
                Ok(val) if var_type_accepts(decl.ty, &val) => {
                    values.insert(name.to_string(), val);
                }
                Ok(val) => {
                    // Given, though wrongly: not also "missing".
                    values.insert(name.to_string(), Value::Null);
                    errors.push(Diagnostic::error(
                        Some(pos),
                        format!(
                            "variable `{name}` is a {}, but the var file gives a {}",
                            var_type_name(decl.ty),
                            val.type_name()
                        ),
                    ))
                }
                Err(msg) => {
                    values.insert(name.to_string(), Value::Null);
                    errors.push(Diagnostic::error(Some(pos), msg));
                }
            }
        }
    }

    for (key, text) in env {
        // Keys may be given with or without the prefix.
        let name = key.strip_prefix(ENV_PREFIX).unwrap_or(key);
        let from = format!("environment variable `{ENV_PREFIX}{name}`");
        let Some(decl) = spec.variables.get(name) else {
            errors.push(unknown(name, &from, None));
            continue;
        };
        match from_text(decl.ty, text) {
            Ok(v) => {
                values.insert(name.to_string(), v);
            }
            Err(why) => {
                values.insert(name.to_string(), Value::Null);
                let why = if decl.sensitive { hidden(decl.ty) } else { why };
                errors.push(type_error(name, decl.ty, &from, &why));
            }
        }
    }

    for arg in cli {
        let Some((name, text)) = arg.split_once('=') else {
            errors.push(
                Diagnostic::error(None, format!("`--var {arg}` is not of the form `name=value`"))
                    .with_hint("write `--var name=value`"),
            );
            continue;
        };
        let name = name.trim();
        let from = format!("`--var {name}=...`");
        let Some(decl) = spec.variables.get(name) else {
            errors.push(unknown(name, "`--var`", None));
            continue;
        };
        match from_text(decl.ty, text) {
            Ok(v) => {
                values.insert(name.to_string(), v);
            }
            Err(why) => {
                values.insert(name.to_string(), Value::Null);
                let why = if decl.sensitive { hidden(decl.ty) } else { why };
                errors.push(type_error(name, decl.ty, &from, &why));
            }
        }
    }

    let missing: Vec<&str> = names.iter().copied().filter(|n| !values.contains_key(*n)).collect();
    for n in &missing {
        let v = &spec.variables[*n];
        let desc = v.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        let mut d = Diagnostic::error(Some(v.pos.clone()), format!("required variable `{n}`{desc} has no value"));
        d = d.with_hint(format!("set it with `--var {n}=...`, `{ENV_PREFIX}{n}=...` or a `--var-file`"));
        errors.push(d);
    }

    // A secret shorter than the mask's minimum could not be hidden in output without hiding
    // ordinary text: refused, with the rule.
    for (name, v) in &values {
        let Some(decl) = spec.variables.get(name).filter(|d| d.sensitive) else { continue };
        if let Some(s) = v.as_str()
            && (1..crate::mask::MIN_SECRET_LEN).contains(&s.chars().count())
        {
            errors.push(
                Diagnostic::error(
                    Some(decl.pos.clone()),
                    format!("sensitive variable `{name}` is shorter than {} characters", crate::mask::MIN_SECRET_LEN),
                )
                .with_hint(
                    "a secret that short cannot be masked in output without masking ordinary text; use a longer one",
                ),
            );
        }
    }

    if !errors.is_empty() {
        let mut d = Diagnostics(errors);
        d.sort();
        return Err(d);
    }
    for (name, v) in values.iter_mut() {
        if spec.variables.get(name).is_some_and(|d| d.sensitive) {
            *v = std::mem::take(v).sensitive();
        }
    }
    Ok(values)
}

/// Why a sensitive value does not fit its type, without the value.
fn hidden(ty: VarType) -> String {
    format!("gives a value that is not a {} (it is sensitive: not shown)", var_type_name(ty))
}

fn type_error(name: &str, ty: VarType, from: &str, why: &str) -> Diagnostic {
    let example = match ty {
        VarType::String => "any text",
        VarType::Number => "e.g. `3` or `2.5`",
        VarType::Bool => "`true` or `false`",
        VarType::List => "a TOML array, e.g. `[\"a\", \"b\"]`",
        VarType::Map => "a TOML inline table, e.g. `{ a = 1 }`",
    };
    Diagnostic::error(None, format!("variable `{name}` is a {}: {from} {why}", var_type_name(ty)))
        .with_hint(format!("a {} is {example}", var_type_name(ty)))
}

/// Converts text from `--var` or the environment to the declared type.
pub fn from_text(ty: VarType, text: &str) -> Result<Value, String> {
    let t = text.trim();
    match ty {
        VarType::String => Ok(Value::String(text.to_string())),
        VarType::Number => {
            if let Ok(i) = t.parse::<i64>() {
                Ok(Value::Int(i))
            } else {
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                    _ => Err(format!("gives `{text}`, which is not a number")),
                }
            }
        }
        VarType::Bool => match t {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("gives `{text}`, which is not `true` or `false`")),
        },
        VarType::List | VarType::Map => {
            let (v, errs) = DeValue::parse_recoverable(t);
            if let Some(e) = errs.first() {
                return Err(format!("is not valid TOML ({})", e.message().trim()));
            }
            let v = plain_value(v.get_ref())?;
            if var_type_accepts(ty, &v) { Ok(v) } else { Err(format!("gives a {}", v.type_name())) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    fn spec() -> Spec {
        load_str(
            "s.toml".as_ref(),
            r#"
[variable.project]
description = "GCP project id"
[variable.region]
default = "us-central1"
[variable.nodes]
type = "number"
default = 1
[variable.debug]
type = "bool"
default = false
[variable.zones]
type = "list"
default = []
[variable.labels]
type = "map"
default = {}
[variable.password]
sensitive = true
"#,
        )
        .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn precedence_default_file_env_cli() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(&f, "region = \"file\"\nnodes = 2\nzones = [\"a\"]\nproject = \"p\"\npassword = \"pw-long\"\n")
            .unwrap();
        let e = env(&[("SKYFORM_VAR_region", "env"), ("nodes", "5")]);
        let v = resolve_variables(&spec(), &["region=cli".into(), "labels={a=1}".into()], &[f], &e).unwrap();
        assert_eq!(v["region"], Value::str("cli"));
        assert_eq!(v["nodes"], Value::Int(5));
        assert_eq!(v["zones"], Value::List(vec!["a".into()]));
        assert_eq!(v["labels"], Value::map([("a", Value::Int(1))]));
        assert_eq!(v["debug"], Value::Bool(false));
        assert_eq!(v["password"], Value::str("pw-long").sensitive());
    }

    #[test]
    fn secrets_stay_hidden_in_errors_and_short_ones_are_refused() {
        let e = resolve_variables(&spec(), &["project=p".into(), "password=abc".into()], &[], &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sensitive variable `password` is shorter than 4 characters"), "{e}");
        assert!(!e.contains("abc"), "{e}");
    }

    #[test]
    fn all_missing_reported_at_once() {
        let e = resolve_variables(&spec(), &[], &[], &BTreeMap::new()).unwrap_err().to_string();
        assert_eq!(
            e,
            "s.toml:2:1: error: required variable `project` (GCP project id) has no value\n  \
             hint: set it with `--var project=...`, `SKYFORM_VAR_project=...` or a `--var-file`\n\
             s.toml:18:1: error: required variable `password` has no value\n  \
             hint: set it with `--var password=...`, `SKYFORM_VAR_password=...` or a `--var-file`\n"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let base = ["project=p".to_string(), "password=x".to_string()];
        let mut cli = base.to_vec();
        cli.extend(["nodes=many".into(), "projct=x".into(), "novalue".into(), "zones={a=1}".into()]);
        let e = env(&[("SKYFORM_VAR_debug", "yes")]);
        let out = resolve_variables(&spec(), &cli, &[], &e).unwrap_err().to_string();
        for want in [
            "error: variable `nodes` is a number: `--var nodes=...` gives `many`, which is not a number\n  hint: a number is e.g. `3` or `2.5`",
            "error: `--var` sets undeclared variable `projct`\n  hint: did you mean `project`?",
            "error: `--var novalue` is not of the form `name=value`",
            "error: variable `zones` is a list: `--var zones=...` gives a map",
            "error: variable `debug` is a bool: environment variable `SKYFORM_VAR_debug` gives `yes`, which is not `true` or `false`",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn var_file_errors_are_positioned() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.toml");
        std::fs::write(&f, "project = 1\nregon = \"x\"\n").unwrap();
        let out = resolve_variables(&spec(), &["password=x".into()], std::slice::from_ref(&f), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        let p = f.display();
        assert!(
            out.contains(&format!("{p}:1:1: error: variable `project` is a string, but the var file gives a number")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{p}:2:1: error: var file sets undeclared variable `regon`\n  hint: did you mean `region`?"
            )),
            "{out}"
        );
    }
}
