//! skyform: a declarative plan/apply engine.
//!
//! Floors, bottom first; a module imports only from the floors below it, or from modules before
//! it on its own floor (held by the test `floors::every_module_imports_only_from_below`):
//!
//! 1. basics: [`timings`] (where a command's time goes: `--timings`), [`value`] (the value type, unknown and secret as variants), [`mask`] (the one mask
//!    of remote text), [`secrets`] (keyed fingerprints), [`diag`] (positioned diagnostics), [`join`], [`address`] (every address form,
//!    parsed once: [`address::Address`], [`address::Target`]);
//! 2. [`foundation`]: what the spec language and the providers both stand on: the schema types,
//!    the APIs' naming rules, the one network client and token source, times, htpasswd lines;
//! 3. [`spec`] (TOML → a positioned model; interpolation; validation), then [`providers`] (the
//!    provider contract, the registry, and the GCP, Kubernetes, Helm and PostgreSQL providers);
//! 4. [`graph`] (the dependency DAG), [`policy`] (Rego policies evaluated in process on a JSON
//!    document: conftest's `deny`/`warn`/`violation`), [`plan`] (the change model: data, serde, deterministic
//!    order), [`state`] (what skyform manages, with no secrets: journal + snapshot, in local files
//!    or a bucket);
//! 5. [`engine`]: planner (read + diff), applier (bounded parallel walk), checks, drift; it never
//!    prints, it emits events;
//! 6. [`ops`]: one function per verb;
//! 7. [`cli`]: clap types, rendering, exit codes.
pub mod address;
pub mod cli;
pub mod diag;
pub mod engine;
pub mod foundation;
pub mod graph;
pub mod join;
pub mod mask;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod providers;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod timings;
pub mod value;

#[cfg(test)]
mod floors {
    use std::path::{Path, PathBuf};

    /// The crate's modules, bottom first, in the order they may import one another.
    const ORDER: &[&str] = &[
        "timings",
        "value",
        "mask",
        "secrets",
        "diag",
        "join",
        "address",
        "foundation",
        "spec",
        "providers",
        "graph",
        "policy",
        "plan",
        "state",
        "engine",
        "ops",
        "cli",
    ];

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The top-level modules `code` names: `crate::x…` and `crate::{x, y::…}`.
    fn named(code: &str) -> Vec<String> {
        let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect::<String>();
        let mut out = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let body = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(body.split(',').map(|part| ident(part.trim())));
            } else {
                out.push(ident(rest));
            }
        }
        out.retain(|n| !n.is_empty());
        out
    }

    #[test]
    fn every_module_imports_only_from_below() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let Some(pos) = ORDER.iter().position(|m| *m == module) else {
                wrong.push(format!("{module}: on no floor (add it to ORDER and the crate docs)"));
                continue;
            };
            let text = std::fs::read_to_string(&file).expect("readable");
            // Tests may reach anywhere; the code they test may not.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for name in named(code) {
                if name == module {
                    continue;
                }
                match ORDER.iter().position(|m| *m == name) {
                    Some(i) if i < pos => {}
                    _ => wrong.push(format!("{}: names crate::{name}, which is not below {module}", rel.display())),
                }
            }
        }
        wrong.sort();
        wrong.dedup();
        assert!(wrong.is_empty(), "imports against the floors:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_checker_sees_grouped_imports() {
        assert_eq!(
            named("use crate::{engine::x, ops};\nlet a = crate::value::Value::Null;"),
            ["engine", "ops", "value"]
        );
    }
}
