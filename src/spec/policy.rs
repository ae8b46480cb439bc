//! `[policy]`: the Rego policies of a root spec (`docs/policy.md`). Literal values only: the
//! policies are read before anything is evaluated, and a spec cannot compute them away.

use toml::Spanned as TSpanned;
use toml::de::DeValue;

use super::load::Cx;
use super::model::{PolicyBlock, Spanned, Spec};

type Val<'i> = TSpanned<DeValue<'i>>;

impl Cx<'_, '_> {
    /// `[policy]`: `paths = ["dir", ...]` (relative to the spec's directory), `namespace`.
    pub(crate) fn policy(&mut self, spec: &mut Spec, v: &Val<'_>) {
        let pos = self.val_pos(v);
        if let Some(first) = &spec.policy {
            let first = first.pos.clone();
            self.duplicate(pos, "a second `[policy]` block".into(), &first);
            return;
        }
        let Some(t) = v.get_ref().as_table() else {
            let d = self.err(pos, "`policy` must be a table");
            *d = d.clone().with_hint("write `[policy]` followed by `paths = [\"policies/baseline\"]`");
            return;
        };
        let mut block = PolicyBlock { pos: pos.clone(), paths: Vec::new(), namespace: None };
        let mut saw_paths = false;
        for (key, val) in t.iter() {
            let kp = self.key_pos(key);
            match key.get_ref().as_ref() {
                "paths" => {
                    saw_paths = true;
                    let Some(items) = val.get_ref().as_array() else {
                        self.err(kp, "`paths` of `[policy]` must be a list of directories");
                        continue;
                    };
                    for item in items.iter() {
                        let ip = self.val_pos(item);
                        match item.get_ref().as_str() {
                            Some(s) if s.contains("${") => {
                                let d = self.err(ip, "`paths` of `[policy]` are literal: no `${...}`");
                                *d = d.clone().with_hint("policies are read before anything is evaluated");
                            }
                            Some(s) if !s.trim().is_empty() => {
                                block.paths.push(Spanned { node: s.to_string(), pos: ip })
                            }
                            _ => {
                                self.err(ip, "each entry of `paths` must be a non-empty string (a directory)");
                            }
                        }
                    }
                }
                "namespace" => match val.get_ref().as_str() {
                    Some(s) => block.namespace = Some(Spanned { node: s.to_string(), pos: self.val_pos(val) }),
                    None => {
                        self.err(kp, "`namespace` of `[policy]` must be a string (a Rego package path)");
                    }
                },
                other => {
                    let d = self.err(kp, format!("unknown key `{other}` in `[policy]`"));
                    *d = d.clone().with_suggestion(other, ["paths", "namespace"]);
                    if d.hint.is_none() {
                        *d = d.clone().with_hint("`[policy]` takes `paths` and `namespace`");
                    }
                }
            }
        }
        if !saw_paths {
            let d = self.err(pos, "`[policy]` needs `paths`");
            *d = d.clone().with_hint("add `paths = [\"<directory of .rego files>\"]`, relative to this spec");
            return;
        }
        if block.paths.is_empty() {
            return;
        }
        spec.policy = Some(block);
    }
}
