//! `[backend.<type>]`: where state is kept. One block at most, in the root spec; its values may
//! use variables only (they are read before anything else is evaluated).

use toml::Spanned as TSpanned;
use toml::de::{DeString, DeValue};

use super::convert::to_expr;
use super::load::Cx;
use super::model::{BackendBlock, Reference, Spec};

type Key<'i> = TSpanned<DeString<'i>>;
type Val<'i> = TSpanned<DeValue<'i>>;

/// The backend types.
pub const BACKENDS: [&str; 1] = ["gcs"];

impl Cx<'_, '_> {
    /// `[backend.gcs]`.
    pub(crate) fn backend(&mut self, spec: &mut Spec, kind: &Key<'_>, v: &Val<'_>) {
        let k = kind.get_ref().to_string();
        let pos = self.val_pos(v);
        if !BACKENDS.contains(&k.as_str()) {
            let kp = self.key_pos(kind);
            let d = self.err(kp, format!("unknown backend `{k}`"));
            *d = d.clone().with_hint("the backends are `gcs` (`[backend.gcs]`); without a backend block, state stays in .skyform/ beside the spec");
            return;
        }
        if let Some(first) = &spec.backend {
            let first = first.pos.clone();
            self.duplicate(pos, "a second backend block".into(), &first);
            return;
        }
        let Some(t) = v.get_ref().as_table() else {
            let d = self.err(pos, format!("`backend.{k}` must be a table"));
            *d = d.clone().with_hint("write `[backend.gcs]` followed by `bucket = \"...\"` and `prefix = \"...\"`");
            return;
        };
        let mut bucket = None;
        let mut prefix = None;
        for (key, val) in t.iter() {
            let kp = self.key_pos(key);
            let name = key.get_ref().as_ref();
            match name {
                "bucket" | "prefix" => {
                    if val.get_ref().as_str().is_none() {
                        self.err(kp, format!("`{name}` of `[backend.{k}]` must be a string"));
                        continue;
                    }
                    let e = to_expr(self.src, val, self.val_pos(val), self.errors);
                    for r in e.node.references() {
                        if !matches!(r.node, Reference::Var(_)) {
                            let d =
                                self.err(r.pos.clone(), format!("`{name}` of `[backend.{k}]` may use only variables"));
                            *d = d.clone().with_hint(
                                "the backend is read before anything else is evaluated: write `${var.<name>}` or a literal",
                            );
                        }
                    }
                    if name == "bucket" { bucket = Some(e) } else { prefix = Some(e) }
                }
                other => {
                    let d = self.err(kp, format!("unknown key `{other}` in `[backend.{k}]`"));
                    *d = d.clone().with_suggestion(other, ["bucket", "prefix"]);
                    if d.hint.is_none() {
                        *d = d.clone().with_hint("`[backend.gcs]` takes `bucket` and `prefix`");
                    }
                }
            }
        }
        let Some(bucket) = bucket else {
            let d = self.err(pos, format!("`[backend.{k}]` needs `bucket`"));
            *d = d.clone().with_hint("add `bucket = \"<bucket name>\"`");
            return;
        };
        spec.backend = Some(BackendBlock { kind: k, pos, bucket, prefix });
    }
}
