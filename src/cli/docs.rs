//! Generates `docs/spec-reference.md` from the provider schemas, so the
//! reference cannot drift from the code (`tests/docs.rs` checks it is current;
//! `UPDATE_DOCS=1 cargo test --test docs` rewrites it).

use std::fmt::Write;

use crate::providers::{Attribute, Registry, ResourceSchema, SchemaKind};
use crate::value::Value;

const LANGUAGE: &str = include_str!("spec_language.md");

/// The whole spec reference, in Markdown.
pub fn spec_reference(registry: &Registry) -> String {
    let mut out = String::from(LANGUAGE);
    out.push_str("\n# Providers, resource types and data sources\n\n");
    out.push_str(
        "Generated from the provider schemas (`skyform` source); do not edit by hand.\n\
         Flags: **required**; *optional*; `computed` (set by the provider, known after apply);\n\
         `force-new` (a change replaces the object); `sensitive` (masked everywhere, only a keyed\n\
         fingerprint in state); `sensitive values` (a table whose keys are shown and whose values are\n\
         masked); `write-only` (never read back; compared through its fingerprint). A name the API\n\
         constrains says its rule (\"Must be ...\"); `validate` refuses a known value that breaks it.\n",
    );
    let mut schemas: Vec<_> = registry.schemas().collect();
    schemas.sort_by_key(|s| s.name);
    for p in schemas {
        let _ = writeln!(out, "\n## Provider `{}` (types `{}*`)\n", p.name, p.type_prefix);
        if p.config.is_empty() {
            out.push_str("`[provider.");
            out.push_str(p.name);
            out.push_str("]` takes no settings.\n");
        } else {
            let _ = writeln!(out, "`[provider.{}]` settings:\n", p.name);
            table(&mut out, &p.config);
        }
        let mut types: Vec<&ResourceSchema> = p.types.iter().collect();
        types.sort_by_key(|t| (t.kind == SchemaKind::Data, t.type_name));
        for t in types {
            let head = match t.kind {
                SchemaKind::Resource => format!("[resource.{}.<name>]", t.type_name),
                SchemaKind::Data => format!("[data.{}.<name>]", t.type_name),
            };
            let _ = writeln!(out, "\n### `{head}`\n\n{}\n", t.description.trim());
            table(&mut out, &t.attributes);
        }
    }
    out
}

fn table(out: &mut String, attrs: &[Attribute]) {
    out.push_str("| attribute | type | flags | default | description |\n|---|---|---|---|---|\n");
    for a in attrs {
        let mut flags = Vec::new();
        if a.required {
            flags.push("**required**".to_string());
        } else if a.optional {
            flags.push("*optional*".to_string());
        }
        if a.computed {
            flags.push("`computed`".into());
        }
        if a.force_new {
            flags.push("`force-new`".into());
        }
        if a.write_only {
            flags.push("`write-only`".into());
        } else if a.sensitive {
            flags.push("`sensitive`".into());
        } else if a.sensitive_values {
            flags.push("`sensitive values`".into());
        }
        let default = match &a.default {
            Some(Value::String(s)) => format!("`\"{s}\"`"),
            Some(v) => format!("`{v}`"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            a.name,
            a.ty.name(),
            flags.join(", "),
            default,
            match a.rule {
                Some(r) => format!("{} Must be {}.", a.description, r.describe()),
                None => a.description.to_string(),
            }
            .replace('|', "\\|")
            .replace('\n', " ")
        );
    }
}
