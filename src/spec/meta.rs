//! Meta-arguments of resource blocks: `depends_on`, `lifecycle`, `timeouts`,
//! `provider`. They are taken out of the block's body when it is loaded.

use std::collections::BTreeMap;

use toml::Spanned as TSpanned;
use toml::de::DeValue;

use crate::address::{Address, is_identifier};
use crate::diag::did_you_mean;

use super::load::Cx;
use super::model::{Lifecycle, Spanned};

type Val<'i> = TSpanned<DeValue<'i>>;

/// `depends_on = ["<type>.<name>", "data.<type>.<name>"]`.
pub(crate) fn depends_on(cx: &mut Cx<'_, '_>, v: &Val<'_>) -> Vec<Spanned<Address>> {
    let Some(items) = v.get_ref().as_array() else {
        let p = cx.val_pos(v);
        let d = cx.err(p, "`depends_on` must be a list of resource addresses");
        *d = d.clone().with_hint("write `depends_on = [\"<type>.<name>\"]`");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let p = cx.val_pos(item);
        match item.get_ref().as_str() {
            Some(s) => match s.parse::<Address>() {
                Ok(a) => out.push(Spanned { node: a, pos: p }),
                Err(_) => {
                    let d = cx.err(p, format!("`{s}` in `depends_on` is not a resource address"));
                    let hint = if s.starts_with("${") {
                        "write the address itself, without `${...}`: `\"<type>.<name>\"`"
                    } else {
                        "addresses are `<type>.<name>` or `data.<type>.<name>`"
                    };
                    *d = d.clone().with_hint(hint);
                }
            },
            None => {
                let d = cx.err(p, "`depends_on` entries must be strings");
                *d = d.clone().with_hint("write `depends_on = [\"<type>.<name>\"]`");
            }
        }
    }
    out
}

const LIFECYCLE_KEYS: [&str; 3] = ["prevent_destroy", "ignore_changes", "create_before_destroy"];

/// `lifecycle = { prevent_destroy, ignore_changes, create_before_destroy }`.
pub(crate) fn lifecycle(cx: &mut Cx<'_, '_>, v: &Val<'_>) -> Lifecycle {
    let mut l = Lifecycle::default();
    let Some(t) = v.get_ref().as_table() else {
        let p = cx.val_pos(v);
        let d = cx.err(p, "`lifecycle` must be a table");
        *d = d.clone().with_hint("write `lifecycle = { prevent_destroy = true }`");
        return l;
    };
    for (k, v) in t.iter() {
        let kp = cx.key_pos(k);
        match k.get_ref().as_ref() {
            key @ ("prevent_destroy" | "create_before_destroy") => match v.get_ref().as_bool() {
                Some(b) if key == "prevent_destroy" => l.prevent_destroy = b,
                Some(b) => l.create_before_destroy = b,
                None => {
                    cx.err(kp, format!("`lifecycle.{key}` must be `true` or `false`"));
                }
            },
            "ignore_changes" => match v.get_ref() {
                DeValue::String(s) if s == "all" || s == "*" => l.ignore_changes = vec!["*".into()],
                DeValue::Array(items) => {
                    for i in items.iter() {
                        match i.get_ref().as_str() {
                            Some(s) => l.ignore_changes.push(s.to_string()),
                            None => {
                                let p = cx.val_pos(i);
                                cx.err(p, "`lifecycle.ignore_changes` entries must be attribute names (strings)");
                            }
                        }
                    }
                }
                _ => {
                    let d = cx.err(kp, "`lifecycle.ignore_changes` must be a list of attribute names");
                    *d = d.clone().with_hint("write `ignore_changes = [\"<attr>\"]`, or `\"all\"`");
                }
            },
            other => {
                let d = cx.err(kp, format!("unknown key `{other}` in `lifecycle`"));
                *d = match did_you_mean(other, LIFECYCLE_KEYS) {
                    Some(s) => d.clone().with_hint(format!("did you mean `{s}`?")),
                    None => d
                        .clone()
                        .with_hint("`lifecycle` has `prevent_destroy`, `ignore_changes` and `create_before_destroy`"),
                };
            }
        }
    }
    l
}

const TIMEOUT_KEYS: [&str; 4] = ["create", "update", "delete", "read"];

/// `timeouts = { create = "30m", update = "1h30m", delete = 90 }` (seconds).
pub(crate) fn timeouts(cx: &mut Cx<'_, '_>, v: &Val<'_>, data: bool) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Some(t) = v.get_ref().as_table() else {
        let p = cx.val_pos(v);
        let d = cx.err(p, "`timeouts` must be a table");
        *d = d.clone().with_hint("write `timeouts = { create = \"30m\" }`");
        return out;
    };
    let allowed: &[&str] = if data { &["read"] } else { &TIMEOUT_KEYS };
    for (k, v) in t.iter() {
        let kp = cx.key_pos(k);
        let key = k.get_ref().as_ref();
        if !allowed.contains(&key) {
            let d = cx.err(kp, format!("unknown key `{key}` in `timeouts`"));
            let list = allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
            *d = match did_you_mean(key, allowed.iter().copied()) {
                Some(s) => d.clone().with_hint(format!("did you mean `{s}`?")),
                None => d.clone().with_hint(format!("the timeouts here are {list}")),
            };
            continue;
        }
        let vp = cx.val_pos(v);
        let secs = match v.get_ref() {
            DeValue::String(s) => parse_duration(s),
            DeValue::Integer(i) => {
                i.as_str().parse::<u64>().ok().filter(|s| i.radix() == 10 && *s <= MAX_DURATION_SECS)
            }
            _ => None,
        };
        match secs {
            Some(s) if s > 0 => {
                out.insert(key.to_string(), s);
            }
            _ => {
                let d = cx.err(vp, format!("invalid duration for `timeouts.{key}`"));
                *d = d.clone().with_hint(
                    "write a positive duration of at most 7 days, such as \"90s\", \"30m\" or \"1h30m\", or a number of seconds",
                );
            }
        }
    }
    out
}

/// `provider = "<name>"`.
pub(crate) fn provider(cx: &mut Cx<'_, '_>, v: &Val<'_>) -> Option<String> {
    let p = cx.val_pos(v);
    match v.get_ref().as_str() {
        Some(s) if is_identifier(s) => Some(s.to_string()),
        Some(s) => {
            let d = cx.err(p, format!("`{s}` is not a provider name"));
            *d = d.clone().with_hint("write the name of a provider, e.g. `provider = \"gcp\"`");
            None
        }
        None => {
            cx.err(p, "`provider` must be a string naming a provider");
            None
        }
    }
}

/// The longest duration skyform takes anywhere (operation timeouts, check intervals,
/// `--lock-timeout`): seven days. Longer is a typo, and arithmetic on it must never overflow.
pub const MAX_DURATION_SECS: u64 = 7 * 86_400;

/// Parses `"90s"`, `"30m"`, `"1h30m"`, `"2h"`, `"1d"` into seconds, at most
/// [`MAX_DURATION_SECS`]. Units must be in decreasing order and appear once each.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut last_unit = u64::MAX;
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        if num.is_empty() || unit >= last_unit {
            return None;
        }
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
        last_unit = unit;
        any = true;
    }
    (any && num.is_empty() && total <= MAX_DURATION_SECS).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("1d2h3m4s"), Some(93_784));
        assert_eq!(parse_duration("7d"), Some(MAX_DURATION_SECS));
        for huge in ["18446744073709551615s", "8d", "99999999999999999999s", "1000000h"] {
            assert_eq!(parse_duration(huge), None, "{huge}: out of range, no overflow");
        }
        for bad in ["", "30", "m", "1m1h", "1m1m", "1.5h", "-1s", "99999999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    fn errs(text: &str) -> String {
        super::super::load::load_str(std::path::Path::new("t.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn meta_errors() {
        let e = errs(concat!(
            "[resource.a.b]\n",
            "depends_on = [\"x\", 3, \"${a.c}\"]\n",
            "lifecycle = { prevent_destroy = 1, ignore_change = [], ignore_changes = [2] }\n",
            "timeouts = { create = \"30 minutes\", creat = \"1m\" }\n",
            "provider = \"a b\"\n",
            "[data.a.c]\nlifecycle = {}\ntimeouts = { create = \"1m\" }\n",
        ));
        for want in [
            "t.toml:2:15: error: `x` in `depends_on` is not a resource address",
            "t.toml:2:20: error: `depends_on` entries must be strings",
            "t.toml:2:23: error: `${a.c}` in `depends_on` is not a resource address\n  hint: write the address itself",
            "t.toml:3:15: error: `lifecycle.prevent_destroy` must be `true` or `false`",
            "t.toml:3:36: error: unknown key `ignore_change` in `lifecycle`\n  hint: did you mean `ignore_changes`?",
            "t.toml:3:74: error: `lifecycle.ignore_changes` entries must be attribute names (strings)",
            "t.toml:4:23: error: invalid duration for `timeouts.create`",
            "t.toml:4:37: error: unknown key `creat` in `timeouts`\n  hint: did you mean `create`?",
            "t.toml:5:12: error: `a b` is not a provider name",
            "t.toml:7:1: error: data sources have no `lifecycle`",
            "t.toml:8:14: error: unknown key `create` in `timeouts`\n  hint: the timeouts here are `read`",
        ] {
            assert!(e.contains(want), "missing {want:?} in\n{e}");
        }
    }
}
