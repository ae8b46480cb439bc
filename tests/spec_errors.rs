//! Golden tests of spec diagnostics.
//!
//! Each directory `testdata/spec/<case>/` is a spec (its `*.toml` files); its
//! `expected.txt` holds the exact diagnostics, as printed, of running the spec
//! through the whole front end: `load`, then (if it loaded) `resolve_variables`
//! with the case's `vars.txt` (`name=value` lines, as `--var`) and
//! `validate_with_vars` against the schemas of `spec_common`, then (if valid)
//! `eval` of every output.
//!
//! Run with `UPDATE_EXPECT=1` to rewrite the `expected.txt` files; review the
//! diff before committing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use skyform::diag::Diagnostics;
use skyform::foundation::schema::ProviderSchema;
use skyform::spec::eval::MapScope;
use skyform::spec::expand::{Mode, expand};
use skyform::spec::{eval, load, resolve_variables, validate_with_vars};
use skyform::value::Value;

mod spec_common;
use spec_common::schemas;

/// Runs the front end on a case and renders what it reports.
fn run(dir: &Path) -> String {
    let spec = match load(dir) {
        Ok(s) => s,
        Err(d) => return d.to_string(),
    };
    let owned = schemas();
    let refs: Vec<&ProviderSchema> = owned.iter().collect();
    let cli: Vec<String> = std::fs::read_to_string(dir.join("vars.txt"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    // As `skyform validate` does: variables first, then the schema checks
    // (with the variables' values when they all resolved).
    let mut d = Diagnostics::default();
    let vars = match resolve_variables(&spec, &cli, &[], &BTreeMap::new()) {
        Ok(v) => Some(v),
        Err(e) => {
            d.extend(e);
            None
        }
    };
    // Then expansion (locals, count, for_each, modules), as `ops::load` does.
    let mode = if vars.is_some() { Mode::Plan } else { Mode::Validate };
    let spec = match expand(&spec, vars.as_ref().unwrap_or(&BTreeMap::new()), mode) {
        Ok(s) => s,
        Err(e) => {
            d.extend(e);
            d.sort();
            return d.to_string();
        }
    };
    d.extend(validate_with_vars(&spec, &refs, vars.as_ref()));
    d.sort();
    if d.has_errors() {
        return d.to_string();
    }
    let vars = vars.unwrap_or_default();
    let mut scope = MapScope { vars, dir: spec.dir.clone(), ..MapScope::default() };
    for a in spec.resources.keys() {
        scope.resources.insert(a.to_string(), Value::Unknown);
    }
    let mut out = Diagnostics::default();
    let mut shown = String::new();
    for o in spec.outputs.values() {
        match eval(&o.value, &scope) {
            Ok(v) => shown.push_str(&format!("output {} = {v}\n", o.name)),
            Err(d) => out.extend(d),
        }
    }
    out.sort();
    format!("{out}{shown}")
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("testdata/spec")
        .expect("testdata/spec exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_diagnostics() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 10, "expected the fixture cases under testdata/spec");
    for dir in all {
        let got = run(&dir);
        let file = dir.join("expected.txt");
        if update {
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        if got != want {
            failures.push(format!("== {} ==\n--- want\n{want}--- got\n{got}", dir.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (UPDATE_EXPECT=1 rewrites):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_case_reports_something_with_a_position() {
    for dir in cases() {
        let got = run(&dir);
        if dir.ends_with("valid") || dir.ends_with("valid_language") {
            assert!(!got.contains("error:"), "{}: {got}", dir.display());
            continue;
        }
        assert!(got.contains("error:"), "{} reports no error", dir.display());
        for line in got.lines().filter(|l| l.contains("error:")) {
            assert!(line.starts_with("testdata/spec/"), "{}: unpositioned: {line}", dir.display());
        }
    }
}
