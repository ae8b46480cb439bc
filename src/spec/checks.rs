//! `[check.<name>]` blocks: the shape of each one (keys, `url` xor `via` +
//! `service`, durations, `depends_on`). What the values refer to is
//! [`super::validate`]'s to check; the engine runs them (`engine::checks`).

use std::collections::BTreeMap;

use toml::Spanned as TSpanned;
use toml::de::{DeString, DeValue};

use super::convert::to_expr;
use super::load::Cx;
use super::meta;
use super::model::{CheckBlock, Expr, Spanned, Spec};

type Key<'i> = TSpanned<DeString<'i>>;
type Val<'i> = TSpanned<DeValue<'i>>;

/// Every key a check takes.
pub const CHECK_KEYS: [&str; 11] = [
    "url",
    "via",
    "service",
    "path",
    "expect_status",
    "expect_json",
    "headers",
    "timeout",
    "interval",
    "depends_on",
    "description",
];

/// Default `timeout`, in seconds.
pub const DEFAULT_TIMEOUT: u64 = 300;
/// Default `interval`, in seconds.
pub const DEFAULT_INTERVAL: u64 = 5;

/// Splits `service = "<namespace>/<name>:<port>"`; the error says what is wrong.
pub fn parse_service(s: &str) -> Result<(String, String, String), String> {
    let (ns, rest) = s.split_once('/').ok_or("has no `/` between the namespace and the Service's name")?;
    let (name, port) = rest.rsplit_once(':').ok_or("has no `:<port>` after the Service's name")?;
    let ok = |x: &str| {
        !x.is_empty() && x.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !ok(ns) || !ok(name) || !ok(port) {
        return Err("is not `<namespace>/<name>:<port>` with Kubernetes names (lowercase letters, digits, `-`)".into());
    }
    Ok((ns.to_string(), name.to_string(), port.to_string()))
}

impl Cx<'_, '_> {
    /// `[check.<name>]`.
    pub(crate) fn check(&mut self, spec: &mut Spec, name: &Key<'_>, v: &Val<'_>) {
        let n = name.get_ref().to_string();
        let pos = self.val_pos(v);
        let Some(t) = v.get_ref().as_table() else {
            let p = self.val_pos(v);
            let d = self.err(p, format!("`check.{n}` must be a table"));
            *d = d
                .clone()
                .with_hint(format!("write `[check.{n}]` followed by `url = \"...\"` or `via`/`service`/`path`"));
            return;
        };
        let mut body = BTreeMap::new();
        let mut via = None;
        let mut expect_status = 200u16;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut interval = DEFAULT_INTERVAL;
        let mut depends_on = Vec::new();
        for (k, v) in t.iter() {
            let kp = self.key_pos(k);
            let key = k.get_ref().as_ref();
            match key {
                "url" | "service" | "path" => {
                    if v.get_ref().as_str().is_none() {
                        let d = self.err(kp, format!("`{key}` of check `{n}` must be a string"));
                        *d = d.clone().with_hint(match key {
                            "url" => "write `url = \"https://host/path\"`",
                            "service" => "write `service = \"<namespace>/<name>:<port>\"`",
                            _ => "write `path = \"/api/health\"`",
                        });
                        continue;
                    }
                    body.insert(key.to_string(), to_expr(self.src, v, self.val_pos(v), self.errors));
                }
                "headers" | "expect_json" => {
                    if !v.get_ref().is_table() {
                        let d = self.err(kp, format!("`{key}` of check `{n}` must be a table"));
                        *d = d.clone().with_hint(if key == "headers" {
                            "write `headers = { Authorization = \"${var.health_auth}\" }`"
                        } else {
                            "write `expect_json = { status = \"healthy\" }`"
                        });
                        continue;
                    }
                    body.insert(key.to_string(), to_expr(self.src, v, kp, self.errors));
                }
                "via" => match v.get_ref().as_str() {
                    Some(s) if crate::address::is_identifier(s) => {
                        via = Some(Spanned { node: s.to_string(), pos: self.val_pos(v) })
                    }
                    _ => {
                        let p = self.val_pos(v);
                        let d = self.err(p, format!("`via` of check `{n}` must name a provider"));
                        *d = d.clone().with_hint("write `via = \"kubernetes\"`");
                    }
                },
                "expect_status" => match v.get_ref() {
                    DeValue::Integer(i) if i.as_str().parse::<u16>().is_ok_and(|s| (100..=599).contains(&s)) => {
                        expect_status = i.as_str().parse().expect("checked")
                    }
                    _ => {
                        let p = self.val_pos(v);
                        let d = self.err(p, format!("`expect_status` of check `{n}` must be an HTTP status code"));
                        *d = d.clone().with_hint("write a number from 100 to 599, e.g. `expect_status = 200`");
                    }
                },
                "timeout" | "interval" => {
                    let secs = v.get_ref().as_str().and_then(meta::parse_duration).filter(|s| *s > 0);
                    match secs {
                        Some(s) if key == "timeout" => timeout = s,
                        Some(s) => interval = s,
                        None => {
                            let p = self.val_pos(v);
                            let d = self.err(p, format!("invalid duration for `{key}` of check `{n}`"));
                            *d = d.clone().with_hint("write a positive duration such as \"5s\", \"30s\" or \"5m\"");
                        }
                    }
                }
                "depends_on" => depends_on = meta::depends_on(self, v),
                "description" => {
                    if v.get_ref().as_str().is_none() {
                        self.err(kp, "`description` must be a string");
                    }
                }
                other => {
                    let d = self.err(kp, format!("unknown key `{other}` in check `{n}`"));
                    *d = d.clone().with_suggestion(other, CHECK_KEYS.iter().copied());
                    if d.hint.is_none() {
                        *d = d.clone().with_hint(format!(
                            "a check takes {}",
                            CHECK_KEYS.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
        }
        // Where the request goes: a URL, or a Service through a provider's API server.
        let has = |k: &str| body.contains_key(k);
        match (has("url"), via.is_some() || has("service") || has("path")) {
            (true, true) => {
                let d = self.err(pos.clone(), format!("check `{n}` has both `url` and `via`/`service`/`path`"));
                *d = d.clone().with_hint(
                    "use `url` for an address reachable from where skyform runs, or `via` + `service` + `path` for a \
                     Kubernetes Service reached through the API server; not both",
                );
            }
            (false, false) => {
                let d = self.err(pos.clone(), format!("check `{n}` says nothing to request"));
                *d = d.clone().with_hint(
                    "add `url = \"https://...\"`, or `via = \"kubernetes\"`, `service = \"<namespace>/<name>:<port>\"` \
                     and `path = \"/...\"`",
                );
            }
            (false, true) => {
                for (missing, present) in [("via", via.is_some()), ("service", has("service"))] {
                    if !present {
                        let d = self.err(pos.clone(), format!("check `{n}` needs `{missing}` to reach a Service"));
                        *d = d.clone().with_hint(if missing == "via" {
                            "add `via = \"kubernetes\"` (the provider whose API server proxies the request)"
                        } else {
                            "add `service = \"<namespace>/<name>:<port>\"`"
                        });
                    }
                }
            }
            (true, false) => {}
        }
        if let (Some(via), Some(h)) = (&via, body.get("headers"))
            && let Expr::Map(m) = &h.node
            && let Some((_, e)) = m.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            let d = self.err(e.pos.clone(), format!("check `{n}`: an `Authorization` header cannot go through `via`"));
            *d = d.clone().with_hint(format!(
                "the API server of provider.{} authenticates skyform with that header and removes it before proxying; \
                 check the Service without it, or use `url` with an address that enforces it (the Ingress)",
                via.node
            ));
        }
        let block = CheckBlock {
            name: n.clone(),
            pos: pos.clone(),
            body: Spanned { node: Expr::Map(body), pos: pos.clone() },
            via,
            expect_status,
            timeout,
            interval,
            depends_on,
        };
        match spec.checks.get(&n) {
            Some(first) => {
                let first = first.pos.clone();
                self.duplicate(pos, format!("duplicate check `{n}`"), &first);
            }
            None => {
                spec.checks.insert(n, block);
            }
        }
    }
}
