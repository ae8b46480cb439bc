//! Hostile strings in every string attribute of every resource type of the
//! real providers: `validate` never panics; a name the API constrains is
//! refused with a located error and the rule it breaks; a value built from a
//! secret is never shown in an error. (That values which pass are handed to
//! the tools safely is proven where the tools run: helm positionals after
//! `--` in `tests/helm.rs`, quoted PostgreSQL identifiers in
//! `tests/postgres.rs`, percent-encoded URL segments in the GCP provider.)

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use skyform::foundation::schema::{AttrType, Attribute, ProviderSchema, SchemaKind};
use skyform::providers::Registry;
use skyform::spec::{load_str, validate_with_vars};
use skyform::value::Value;

const SECRET: &str = "Hunter2-secret-9f8e";

/// Strings that have broken tools before: flags, quotes, SQL and shell
/// metacharacters, template syntax, control characters, non-ASCII, length.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("--kubeconfig=/etc/passwd".to_string()),
        Just("-n".to_string()),
        Just("\"; DROP ROLE postgres; --".to_string()),
        Just("'".to_string()),
        Just("`id`".to_string()),
        Just("$(id)".to_string()),
        Just("${".to_string()),
        Just("{{ .Values }}".to_string()),
        Just("\n".to_string()),
        Just("\0".to_string()),
        Just("../../x".to_string()),
        Just("?a=b&c".to_string()),
        Just("é日本".to_string()),
        Just("UPPER_case".to_string()),
        Just("x".repeat(10_000)),
        "[a-z0-9-]{1,12}",
        any::<String>(),
    ];
    prop::collection::vec(pieces, 1..4).prop_map(|v| v.concat())
}

/// A TOML literal for a placeholder of `ty` that every rule accepts.
fn placeholder(a: &Attribute) -> String {
    match &a.ty {
        AttrType::String => "\"valid-name-1\"".into(),
        AttrType::Number => "1".into(),
        AttrType::Bool => "false".into(),
        AttrType::List(_) => "[]".into(),
        AttrType::Map(_) => "{}".into(),
        _ => "{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = { name = \"valid-name-1\" } }".into(),
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

struct Case {
    type_name: &'static str,
    attr: &'static str,
    rule: Option<skyform::foundation::names::NameRule>,
    normalize: Option<fn(&Value) -> Value>,
}

fn schemas() -> Vec<ProviderSchema> {
    Registry::builtin().schemas().cloned().collect()
}

fn cases(schemas: &[ProviderSchema]) -> Vec<Case> {
    let mut out = Vec::new();
    for p in schemas {
        for t in p.types.iter().filter(|t| t.kind == SchemaKind::Resource) {
            for a in t.attributes.iter().filter(|a| a.settable() && matches!(a.ty, AttrType::String)) {
                out.push(Case { type_name: t.type_name, attr: a.name, rule: a.rule, normalize: a.normalize });
            }
        }
    }
    out
}

/// A spec with every provider configured, and one resource of `type_name`
/// whose `attr` is `value` (a TOML literal or a reference).
fn spec(schemas: &[ProviderSchema], type_name: &str, attr: &str, value: &str) -> String {
    let mut s = String::from("[variable.s]\ntype = \"string\"\nsensitive = true\n\n");
    for p in schemas {
        s.push_str(&format!("[provider.{}]\n", p.name));
        for a in p.config.iter().filter(|a| a.required) {
            s.push_str(&format!("{} = {}\n", a.name, placeholder(a)));
        }
        s.push('\n');
    }
    let t = schemas
        .iter()
        .flat_map(|p| &p.types)
        .find(|t| t.type_name == type_name && t.kind == SchemaKind::Resource)
        .unwrap();
    s.push_str(&format!("[resource.{type_name}.x]\n"));
    for a in t.attributes.iter().filter(|a| a.required && a.name != attr) {
        s.push_str(&format!("{} = {}\n", a.name, placeholder(a)));
    }
    s.push_str(&format!("{attr} = {value}\n"));
    s
}

fn check(schemas: &[ProviderSchema], case: &Case, value: &str) -> Result<(), TestCaseError> {
    let refs: Vec<&ProviderSchema> = schemas.iter().collect();
    let path = Path::new("hostile/main.toml");
    // 1. The value written in the spec.
    let text = spec(schemas, case.type_name, case.attr, &toml_string(value));
    let loaded = match load_str(path, &text) {
        Ok(s) => s,
        // TOML itself refused it: a located parse error is fine.
        Err(d) => {
            prop_assert!(d.to_string().contains("main.toml:"), "unlocated: {d}");
            return Ok(());
        }
    };
    let vars = BTreeMap::from([("s".to_string(), Value::str(SECRET).sensitive())]);
    let d = validate_with_vars(&loaded, &refs, Some(&vars));
    let shown = d.to_string();
    let api_value = {
        let v = Value::str(value);
        case.normalize.map_or(v.clone(), |f| f(&v)).as_str().unwrap_or_default().to_string()
    };
    if let Some(rule) = case.rule {
        let refused = d.has_errors() && shown.contains(&format!("attribute `{}`", case.attr));
        prop_assert_eq!(
            refused,
            !rule.allows(&api_value),
            "{}.{} = {:?}: {}",
            case.type_name,
            case.attr,
            value.chars().take(60).collect::<String>(),
            shown
        );
        if refused {
            prop_assert!(shown.contains("hostile/main.toml:"), "not located: {shown}");
            prop_assert!(shown.contains(rule.describe()), "the rule is not said: {shown}");
        }
    }
    // 2. The same value built from a secret: checked, never shown.
    let text = spec(schemas, case.type_name, case.attr, &toml_string(&format!("${{var.s}}{value}")));
    if let Ok(loaded) = load_str(path, &text) {
        let d = validate_with_vars(&loaded, &refs, Some(&vars));
        prop_assert!(!d.to_string().contains(SECRET), "a secret in an error: {d}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_strings_in_every_string_attribute(value in hostile(), pick in any::<prop::sample::Index>()) {
        let schemas = schemas();
        let all = cases(&schemas);
        let case = &all[pick.index(all.len())];
        check(&schemas, case, &value)?;
    }
}

/// Every (type, attribute) pair once, with each fixed hostile string.
#[test]
fn every_attribute_with_every_fixed_hostile_string() {
    let schemas = schemas();
    let all = cases(&schemas);
    assert!(all.len() > 20, "too few string attributes found: {}", all.len());
    let fixed = [
        "--kubeconfig=/etc/passwd",
        "Bad_Namespace",
        "\"; DROP ROLE postgres; --",
        "line\nbreak",
        "nul\0byte",
        "{{ .Release.Name }}",
        "日本",
        &"x".repeat(10_000),
    ];
    for case in &all {
        for v in fixed {
            if let Err(e) = check(&schemas, case, v) {
                panic!("{}.{}: {e}", case.type_name, case.attr);
            }
        }
    }
}

/// The two names the issue found accepted, now refused at `validate`.
#[test]
fn the_reported_names_are_refused_with_the_rule() {
    let schemas = schemas();
    let refs: Vec<&ProviderSchema> = schemas.iter().collect();
    for (ty, attr, value, rule_words) in [
        ("k8s_namespace", "name", "Bad_Namespace", "RFC 1123 label"),
        ("helm_release", "name", "--kubeconfig=/etc/passwd", "Helm release name"),
        // `..` as a path segment would resolve to another URL (`…/databases/..` is the instance).
        ("gcp_sql_database", "name", "..", "Cloud SQL database or user name"),
        ("gcp_sql_user", "name", "a/b", "Cloud SQL database or user name"),
    ] {
        let text = spec(&schemas, ty, attr, &toml_string(value));
        let loaded = load_str(Path::new("hostile/main.toml"), &text).unwrap();
        let d = validate_with_vars(&loaded, &refs, Some(&BTreeMap::new())).to_string();
        assert!(d.contains(&format!("attribute `{attr}` of")) && d.contains(value) && d.contains(rule_words), "{d}");
        assert!(d.contains("hostile/main.toml:"), "{d}");
    }
}
