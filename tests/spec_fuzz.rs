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

mod spec_common;

const VALID: &str = include_str!("../testdata/spec/valid/main.toml");
const VALID_LANGUAGE: &str = include_str!("../testdata/spec/valid_language/main.toml");

/// Runs every step that applies; returns nothing, must not panic.
fn front_end(text: &str, cli: &[String]) {
    front_end_at("testdata/spec/valid/fuzz.toml", text, cli)
}

/// [`front_end`] with the spec read as if from `path` (modules are found beside it).
fn front_end_at(path: &str, text: &str, cli: &[String]) {
    let Ok(spec) = load_str(Path::new(path), text) else {
        return;
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
fn fragment() -> impl Strategy<Value = String> {
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

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, String),
    Delete(usize, usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), fragment()).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn boundary(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut s = text.to_string();
    for m in muts {
        match m {
            Mutation::Insert(i, frag) => {
                let at = boundary(&s, *i);
                s.insert_str(at, frag);
            }
            Mutation::Delete(i, n) => {
                let a = boundary(&s, *i);
                let b = boundary(&s, a + n);
                if b > a {
                    s.replace_range(a..b, "");
                }
            }
            Mutation::DuplicateLine(i) | Mutation::SwapLines(i, _) if s.lines().count() == 0 => {
                let _ = i;
            }
            Mutation::DuplicateLine(i) => {
                let mut lines: Vec<&str> = s.lines().collect();
                let k = i % lines.len();
                lines.insert(k, lines[k]);
                s = lines.join("\n");
            }
            Mutation::SwapLines(a, b) => {
                let mut lines: Vec<&str> = s.lines().collect();
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
                s = lines.join("\n");
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

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
        muts in prop::collection::vec(mutation(), 1..6),
        cli in prop::collection::vec("(project|zones|db_password|nope)=[a-z\\[\\]{}\"=,0-9]{0,10}", 0..3),
    ) {
        front_end(&apply(VALID, &muts), &cli);
    }

    #[test]
    fn mutated_language_spec_never_panics(
        muts in prop::collection::vec(mutation(), 1..6),
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
