//! Property tests: the spec front end (`load`, `validate`, `resolve_variables`,
//! `eval`) never panics, whatever the input: random text, and random
//! mutations of a valid spec.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use skyform::foundation::schema::ProviderSchema;
use skyform::spec::eval::MapScope;
use skyform::spec::expand::{Mode, expand};
use skyform::spec::{eval, load_str, resolve_variables, validate};
use skyform::value::Value;

mod fuzz_common;
mod spec_common;

use fuzz_common::{apply, mutation};

const VALID: &str = include_str!("../testdata/spec/valid/main.toml");
const VALID_LANGUAGE: &str = include_str!("../testdata/spec/valid_language/main.toml");

/// Runs every step that applies; must not panic, and every error of the loader is located
/// (`file:line:column`).
fn front_end(text: &str, cli: &[String]) {
    front_end_at("testdata/spec/valid/fuzz.toml", text, cli)
}

/// [`front_end`] with the spec read as if from `path` (modules are found beside it).
fn front_end_at(path: &str, text: &str, cli: &[String]) {
    let spec = match load_str(Path::new(path), text) {
        Ok(spec) => spec,
        Err(d) => {
            for e in d.errors() {
                assert!(e.pos.is_some(), "an unlocated error of the spec loader: {e}\n--- input:\n{text}");
            }
            return;
        }
    };
    let owned = spec_common::schemas();
    let refs: Vec<&ProviderSchema> = owned.iter().collect();
    let _ = validate(&spec, &refs);
    let vars = resolve_variables(&spec, cli, &[], &BTreeMap::new()).unwrap_or_default();
    // Expansion, both ways; the expanded spec goes through validation too.
    let _ = expand(&spec, &BTreeMap::new(), Mode::Validate);
    let spec = match expand(&spec, &vars, Mode::Plan) {
        Ok(s) => {
            let _ = validate(&s, &refs);
            s
        }
        Err(_) => spec,
    };
    let mut scope = MapScope { vars, dir: spec.dir.clone(), ..MapScope::default() };
    for (i, a) in spec.resources.keys().enumerate() {
        // A mix of unknown, sensitive and known objects.
        let v = match i % 3 {
            0 => Value::Unknown,
            1 => Value::map([("name", Value::str("n").sensitive()), ("endpoint", Value::Redacted("h".into()))]),
            _ => Value::map([("email", Value::str("e")), ("connection_name", Value::List(vec![]))]),
        };
        scope.resources.insert(a.to_string(), v);
    }
    for r in spec.resources.values() {
        let _ = eval(&r.body, &scope);
    }
    for p in spec.providers.values() {
        let _ = eval(&p.config, &scope);
    }
    for o in spec.outputs.values() {
        let _ = eval(&o.value, &scope);
    }
}

/// Fragments that are meaningful to the parsers, to reach deep paths.
fn fragment() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just("${".to_string()),
        Just("$${".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("[[".to_string()),
        Just(".".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just("var.".to_string()),
        Just("data.".to_string()),
        Just("join(".to_string()),
        Just("file(".to_string()),
        Just("base64decode(".to_string()),
        Just("é".to_string()),
        Just("local.".to_string()),
        Just("each.key".to_string()),
        Just("each.value".to_string()),
        Just("count.index".to_string()),
        Just("module.".to_string()),
        Just("[\"k\"]".to_string()),
        Just("[0]".to_string()),
        Just("for_each = ".to_string()),
        Just("count = ".to_string()),
        Just("[locals]\n".to_string()),
        Just("[[moved]]\nfrom = ".to_string()),
        Just("[[removed]]\nfrom = ".to_string()),
        Just("[[import]]\nto = ".to_string()),
        Just("[module.m]\nsource = \"./modules/team\"\n".to_string()),
        Just("\u{0}".to_string()),
        Just("-1e999".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "[a-z_]{1,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

proptest! {
    #![proptest_config(fuzz_common::config(400))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        front_end(&text, &[]);
    }

    #[test]
    fn random_fragments_never_panic(parts in prop::collection::vec(fragment(), 0..60)) {
        front_end(&parts.concat(), &[]);
    }

    #[test]
    fn mutated_valid_spec_never_panics(
        muts in prop::collection::vec(mutation(fragment()), 1..6),
        cli in prop::collection::vec("(project|zones|db_password|nope)=[a-z\\[\\]{}\"=,0-9]{0,10}", 0..3),
    ) {
        front_end(&apply(VALID, &muts), &cli);
    }

    #[test]
    fn mutated_language_spec_never_panics(
        muts in prop::collection::vec(mutation(fragment()), 1..6),
        cli in prop::collection::vec("(env|nope)=[a-z\\[\\]{}\"=,0-9]{0,10}", 0..2),
    ) {
        front_end_at("testdata/spec/valid_language/fuzz.toml", &apply(VALID_LANGUAGE, &muts), &cli);
    }

    #[test]
    fn random_interpolations_never_panic(inner in prop::collection::vec(fragment(), 0..12)) {
        let text = format!("[output.o]\nvalue = '${{{}}}'\n[resource.kubernetes_secret.s]\nname = \"x${{{}}}y\"\n", inner.concat(), inner.concat());
        front_end(&text, &[]);
    }
}

#[test]
fn the_valid_spec_is_valid() {
    let spec = load_str(Path::new("testdata/spec/valid/main.toml"), VALID).unwrap();
    let owned = spec_common::schemas();
    let refs: Vec<&ProviderSchema> = owned.iter().collect();
    let d = validate(&spec, &refs);
    assert!(d.is_empty(), "{d}");
}

/// Found by `mutated_language_spec_never_panics` once errors had to be located: a module whose
/// `source` is a directory without `*.toml` files was refused with no position at all.
#[test]
fn a_module_directory_without_specs_is_refused_at_its_source() {
    let text = "[module.m]\nsource = \"./modules\"\n";
    let d = load_str(Path::new("testdata/spec/valid_language/fuzz.toml"), text).unwrap_err();
    let shown = d.to_string();
    assert!(d.errors().all(|e| e.pos.is_some()), "{shown}");
    assert!(shown.contains("fuzz.toml:2:") && shown.contains("module `m`: no `*.toml` files"), "{shown}");
}
