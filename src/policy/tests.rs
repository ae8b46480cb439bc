use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const RULES: &str = r#"package skyform.sql

import data.lib.names

deny contains {"msg": sprintf("%s: deletion protection is off", [r.address]), "id": "SQL-1", "address": r.address, "severity": "high"} if {
  some r in input.resource_changes
  r.type == "gcp_sql_instance"
  r.after.deletion_protection == false
}

warn_names contains msg if {
  some r in input.resource_changes
  not names.valid(r.name)
  msg := sprintf("%s: name %q is not snake_case", [r.address, r.name])
}

violation contains "always" if input.always
"#;

const LIB: &str = r#"package lib.names

valid(n) if regex.match(`^[a-z_]+$`, n)
"#;

fn input(protected: bool) -> serde_json::Value {
    json!({"resource_changes": [
        {"address": "gcp_sql_instance.db", "type": "gcp_sql_instance", "name": "db",
         "after": {"deletion_protection": protected}},
        {"address": "gcp_sql_database.Bad", "type": "gcp_sql_database", "name": "Bad", "after": {}}
    ]})
}

#[test]
fn deny_warn_and_violation_results_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sql.rego", RULES);
    write(dir.path(), "lib/names.rego", LIB);
    // Tests of the policies are not policies.
    write(dir.path(), "sql_test.rego", "package skyform.sql_test\n\ndeny contains \"from a test\" if true\n");
    let set = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    assert_eq!(set.files().len(), 2);
    let out = set.evaluate(input(false)).unwrap();
    let denies: Vec<_> = out.denies().collect();
    assert_eq!(denies.len(), 1, "{out:?}");
    assert_eq!(denies[0].address.as_deref(), Some("gcp_sql_instance.db"));
    assert_eq!(denies[0].id.as_deref(), Some("SQL-1"));
    assert_eq!(denies[0].package, "skyform.sql");
    assert_eq!(denies[0].metadata.as_deref(), Some(r#"{"severity":"high"}"#));
    let warns: Vec<_> = out.warnings().collect();
    assert_eq!(warns.len(), 1);
    assert_eq!(warns[0].msg, r#"gcp_sql_database.Bad: name "Bad" is not snake_case"#);
    assert_eq!(warns[0].rule, "warn_names");
    assert!(out.denied());

    let out = set.evaluate(input(true)).unwrap();
    assert!(!out.denied());
    let mut always = input(true);
    always["always"] = json!(true);
    let out = set.evaluate(always).unwrap();
    assert_eq!(out.denies().map(|f| f.msg.as_str()).collect::<Vec<_>>(), ["always"]);
    assert_eq!(out.digest, set.digest());
}

#[test]
fn only_the_namespace_is_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rego", "package other\n\ndeny contains \"not ours\" if true\n");
    write(dir.path(), "b.rego", "package acme.platform\n\ndeny contains \"ours\" if true\n");
    let set = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    assert!(set.evaluate(json!({})).unwrap().findings.is_empty());
    let set = PolicySet::load(&[dir.path().to_path_buf()], "acme.platform").unwrap();
    let out = set.evaluate(json!({})).unwrap();
    assert_eq!(out.findings.iter().map(|f| f.msg.as_str()).collect::<Vec<_>>(), ["ours"]);
    assert!(PolicySet::load(&[], "not a namespace").is_err());
}

#[test]
fn a_syntax_error_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "broken.rego", "package skyform\n\ndeny contains msg if {\n  msg := \"x\n}\n");
    let Err(PolicyError::Invalid(d)) = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE) else {
        panic!("a broken file loads")
    };
    let first = &d.0[0];
    let pos = first.pos.as_ref().expect("located");
    assert_eq!(pos.file.as_path(), f.as_path());
    assert_eq!(pos.line, 4, "{first}");
    assert!(first.to_string().starts_with(&format!("{}:4:", f.display())), "{first}");
}

#[test]
fn a_compile_error_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "unsafe.rego", "package skyform\n\ndeny contains msg if {\n  x == 1\n}\n");
    let Err(PolicyError::Invalid(d)) = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE) else {
        panic!("an unsafe rule loads")
    };
    let pos = d.0[0].pos.as_ref().unwrap_or_else(|| panic!("not located: {}", d.0[0]));
    assert_eq!((pos.file.as_path(), pos.line, pos.col), (f.as_path(), 4, 3), "{}", d.0[0]);
}

#[test]
fn a_result_that_is_not_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rego", "package skyform\n\ndeny contains {\"message\": \"no msg\"} if true\n");
    let set = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    assert!(matches!(set.evaluate(json!({})), Err(PolicyError::BadResult { .. })));
}

#[test]
fn the_digest_follows_the_content() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.rego", "package skyform\n\nwarn contains \"a\" if true\n");
    let one = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    write(dir.path(), "a.rego", "package skyform\n\nwarn contains \"b\" if true\n");
    let two = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    assert_ne!(one.digest(), two.digest());
    assert_ne!(PolicySet::empty().digest(), one.digest());
}

#[test]
fn a_built_in_left_out_is_a_located_error_where_it_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "net.rego",
        "package skyform\n\ndeny contains x if {\n  input.never\n  x := http.send({\"method\": \"get\", \"url\": \"http://a\"})\n}\n",
    );
    // regorus resolves functions when a call is evaluated: the set loads ...
    let set = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    assert!(set.evaluate(json!({})).unwrap().findings.is_empty());
    // ... and the call is an error, located, never a silent pass.
    match set.evaluate(json!({"never": true})) {
        Err(PolicyError::Evaluation(m)) => {
            assert!(m.contains("net.rego:5:") && m.contains("http.send"), "{m}")
        }
        other => panic!("http.send ran or passed silently: {other:?}"),
    }
}

#[test]
fn data_documents_load_at_their_directory_path_as_opa_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "registries/data.json", r#"{"allowed": ["gcr.io"]}"#);
    write(dir.path(), "limits/deep/anything.yaml", "max: 2\n");
    write(dir.path(), "top.json", r#"{"owner": "platform"}"#);
    write(
        dir.path(),
        "p.rego",
        "package skyform\n\nimport data.limits.deep\nimport data.registries\n\nwarn contains sprintf(\"%s %v %s\", [registries.allowed[0], deep.max, data.owner]) if true\n",
    );
    let set = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    let out = set.evaluate(json!({})).unwrap();
    assert_eq!(out.warnings().map(|f| f.msg.as_str()).collect::<Vec<_>>(), ["gcr.io 2 platform"]);
    // The data is part of the set: a change is a new digest.
    let before = set.digest().to_string();
    write(dir.path(), "limits/deep/anything.yaml", "max: 3\n");
    let set = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE).unwrap();
    assert_ne!(set.digest(), before);
    // A broken document is located.
    let f = write(dir.path(), "registries/data.json", "{\"allowed\": [\n  \"gcr.io\",\n}");
    let Err(PolicyError::Invalid(d)) = PolicySet::load(&[dir.path().to_path_buf()], DEFAULT_NAMESPACE) else {
        panic!("broken data loads")
    };
    let pos = d.0[0].pos.as_ref().expect("located");
    assert_eq!((pos.file.as_path(), pos.line), (f.as_path(), 3), "{}", d.0[0]);
}
