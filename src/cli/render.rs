//! Human rendering of plans, drift reports and states, in the style of
//! Terraform (`+ ~ - -/+`). Secrets are always masked; multi-line values are
//! shown as unified diffs.

use std::collections::BTreeMap;
use std::fmt::Write;

use similar::{ChangeTag, TextDiff};

use crate::engine::drift::DriftClass;
use crate::ops::drift::DriftReport;
use crate::plan::{Action, Plan, ResourceChange};
use crate::value::{MASK, UNKNOWN_TEXT, Value};

/// Renders a whole plan.
pub fn plan(p: &Plan) -> String {
    let mut out = String::new();
    for w in &p.warnings {
        let _ = writeln!(out, "{w}");
    }
    for (from, to) in &p.moved {
        let _ = writeln!(out, "  # {from} has moved to {to}");
    }
    for a in &p.forget {
        let _ = writeln!(out, "  # {a} will no longer be managed: removed from state, the object is not destroyed");
    }
    for a in &p.dropped {
        let _ = writeln!(out, "  # {a}: a duplicate record left by an interrupted move is dropped");
    }
    if !p.moved.is_empty() || !p.forget.is_empty() || !p.dropped.is_empty() {
        out.push('\n');
    }
    let changes: Vec<&ResourceChange> = p.changes.iter().filter(|c| c.action != Action::NoOp).collect();
    if changes.is_empty() {
        out.push_str("No changes. The live objects match the spec.\n");
    } else {
        out.push_str("skyform will perform the following actions:\n\n");
        for c in changes {
            change(&mut out, c);
            out.push('\n');
        }
        let _ = writeln!(out, "{}", p.summary());
    }
    outputs(&mut out, &p.outputs);
    checks(&mut out, &p.checks);
    if let Some(o) = &p.policy {
        policy(&mut out, o, "the plan passes");
    }
    out
}

/// What the policies said: every warning and deny, one a line, then a count.
fn policy(out: &mut String, o: &crate::policy::Outcome, what: &str) {
    let (denies, warns) = (o.denies().count(), o.warnings().count());
    let _ = writeln!(
        out,
        "\nPolicies ({} files): {denies} deny, {warns} warn{}",
        o.files.len(),
        if denies + warns == 0 { format!(": {what}.") } else { ".".into() }
    );
    for f in o.denies() {
        let _ = writeln!(out, "  error: {f}");
    }
    for f in o.warnings() {
        let _ = writeln!(out, "  warning: {f}");
    }
}

/// `skyform check`'s policy part: what the policies said about the live objects.
pub fn policy_live(o: &crate::policy::Outcome) -> String {
    let mut out = String::new();
    policy(&mut out, o, "the live objects pass");
    out
}

/// `Checks apply will run:` with what each one requests and what it waits for.
fn checks(out: &mut String, checks: &[crate::plan::PlannedCheck]) {
    if checks.is_empty() {
        return;
    }
    out.push_str("\nChecks apply will run:\n");
    for c in checks {
        let names: Vec<String> = c.after.iter().take(4).map(|a| a.to_string()).collect();
        let after = match c.after.len() {
            0 => String::new(),
            1..=4 => format!(", after {}", names.join(", ")),
            n => format!(", after {} and {} more", names[..3].join(", "), n - 3),
        };
        let _ = writeln!(out, "  check.{}: {}{after}", c.name, c.target);
    }
}

fn outputs(out: &mut String, outputs: &BTreeMap<String, Value>) {
    if outputs.is_empty() {
        return;
    }
    out.push_str("\nOutputs:\n");
    let width = outputs.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in outputs {
        let _ = writeln!(out, "  {k:width$} = {}", short(v));
    }
}

fn headline(c: &ResourceChange) -> &'static str {
    match c.action {
        Action::Create => "will be created",
        Action::Update => "will be updated in-place",
        Action::DeleteThenCreate => "must be replaced",
        Action::CreateThenDelete => "must be replaced (the new object is created first)",
        Action::Delete => "will be destroyed",
        Action::Read => "will be read during apply",
        Action::Adopt if c.changed.is_empty() => "exists and will be adopted",
        Action::Adopt => "exists and will be adopted, then updated in-place",
        Action::NoOp => "is unchanged",
    }
}

/// Renders one change.
pub fn change(out: &mut String, c: &ResourceChange) {
    let _ = writeln!(out, "  # {} {}", c.address, headline(c));
    if let Some(r) = &c.reason {
        let _ = writeln!(out, "  # ({r})");
    }
    for n in &c.notes {
        let _ = writeln!(out, "  # note: {n}");
    }
    let kind = if c.address.mode == crate::address::Mode::Data { "data" } else { "resource" };
    let sym = c.action.symbol();
    let _ = writeln!(out, "{sym:>3} {kind} \"{}\" \"{}\" {{", c.address.type_name, c.address.name);
    let empty = BTreeMap::new();
    let before = c.before.as_ref().unwrap_or(&empty);
    let after = c.after.as_ref().unwrap_or(&empty);
    let rows: Vec<(String, &'static str, String)> = match c.action {
        Action::Create | Action::DeleteThenCreate | Action::CreateThenDelete
            if c.before.is_none() || c.action == Action::Create =>
        {
            after.iter().map(|(k, v)| (k.clone(), "+", short(v))).collect()
        }
        Action::Delete => before.iter().map(|(k, v)| (k.clone(), "-", short(v))).collect(),
        Action::Read => vec![],
        _ => {
            let mut rows = Vec::new();
            for k in &c.changed {
                let b = before.get(k).cloned().unwrap_or(Value::Null);
                let a = after.get(k).cloned().unwrap_or(Value::Null);
                let mut line = transition(&b, &a);
                if c.requires_replace.contains(k) {
                    line.push_str(" # forces replacement");
                }
                rows.push((k.clone(), "~", line));
            }
            // Computed values that become unknown because of the change.
            for (k, v) in after {
                if matches!(v, Value::Unknown) && !c.changed.contains(k) {
                    rows.push((
                        k.clone(),
                        "~",
                        format!("{} -> {UNKNOWN_TEXT}", short(before.get(k).unwrap_or(&Value::Null))),
                    ));
                }
            }
            rows
        }
    };
    let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    for (k, s, v) in &rows {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or_default();
        let _ = writeln!(out, "      {s} {k:width$} = {first}");
        for l in lines {
            let _ = writeln!(out, "          {l}");
        }
    }
    let hidden = match c.action {
        Action::Update | Action::Adopt | Action::DeleteThenCreate | Action::CreateThenDelete if c.before.is_some() => {
            after.len().saturating_sub(rows.len())
        }
        _ => 0,
    };
    if hidden > 0 {
        let _ = writeln!(out, "        # ({hidden} unchanged attributes hidden)");
    }
    out.push_str("    }\n");
}

/// A value on one line (or a few: multi-line strings, and tables or lists too long for a line, shown
/// as YAML with secrets masked).
fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains('\n') => format!("<<EOT\n{}EOT", with_newline(s)),
        v => match yaml(v) {
            Some(y) => format!("(yaml)\n{}", y.trim_end()),
            None => v.to_string(),
        },
    }
}

/// A table or list as YAML (keys in order, secrets masked) when it does not fit on a line.
fn yaml(v: &Value) -> Option<String> {
    if !matches!(v, Value::List(_) | Value::Map(_)) || v.has_unknown() {
        return None;
    }
    let j = v.to_json_masked();
    (serde_json::to_string(&j).unwrap_or_default().len() > 60).then(|| serde_yaml::to_string(&j).unwrap_or_default())
}

fn with_newline(s: &str) -> String {
    if s.ends_with('\n') { s.to_string() } else { format!("{s}\n") }
}

/// `before -> after`, or a unified diff for multi-line text and long tables.
fn transition(b: &Value, a: &Value) -> String {
    if b.is_sensitive() || a.is_sensitive() {
        return format!("{MASK} -> {MASK}");
    }
    // Tables of plain values with secrets among them: the keys that change, one per line (secret
    // values stay masked, but which key changes is shown).
    let plain = |m: &BTreeMap<String, Value>| m.values().all(|v| !matches!(v, Value::Map(_) | Value::List(_)));
    if let (Value::Map(x), Value::Map(y)) = (b, a)
        && plain(x)
        && plain(y)
        && (x.values().chain(y.values()).any(Value::has_sensitive) || x.len() + y.len() > 4)
    {
        let mut s = String::from("{");
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) if p == q => {}
                (Some(p), Some(q)) => {
                    let _ = write!(s, "\n  ~ {k} = {} -> {}", short(p), short(q));
                }
                (None, Some(q)) => {
                    let _ = write!(s, "\n  + {k} = {}", short(q));
                }
                (Some(p), None) => {
                    let _ = write!(s, "\n  - {k} = {}", short(p));
                }
                (None, None) => {}
            }
        }
        s.push_str("\n}");
        return s;
    }
    // Text, and tables or lists too long for a line as YAML: a line diff.
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        v => yaml(v),
    };
    match (text(b), text(a)) {
        (Some(x), Some(y)) if x.contains('\n') || y.contains('\n') => {
            let mut s = String::from("(diff)\n");
            let diff = TextDiff::from_lines(&x, &y);
            for op in diff.ops() {
                for ch in diff.iter_changes(op) {
                    let sign = match ch.tag() {
                        ChangeTag::Delete => "-",
                        ChangeTag::Insert => "+",
                        ChangeTag::Equal => " ",
                    };
                    let _ = write!(s, "{sign} {}", ch.value());
                    if ch.missing_newline() {
                        s.push('\n');
                    }
                }
            }
            s.trim_end().to_string()
        }
        _ => format!("{b} -> {a}"),
    }
}

/// One attribute of a finding: `path: last applied X, live Y`; for tables, one line per key that
/// differs (or whose secret value cannot be compared); a Helm release's `live_drift` as the list of
/// objects changed outside the chart, with what changed.
fn attribute_drift(out: &mut String, path: &str, last: &serde_json::Value, other: &serde_json::Value, word: &str) {
    use serde_json::Value as J;
    let text = |j: Option<&J>| j.map(|j| j.to_string()).unwrap_or_else(|| "(none)".into());
    match (last, other) {
        (J::Object(_), J::Object(y)) if path == "live_drift" => {
            let _ = writeln!(out, "      {path}: objects of the release changed outside it:");
            for (k, v) in y {
                let _ =
                    writeln!(out, "        {k}: {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            }
        }
        (J::Object(x), J::Object(y)) => {
            let _ = writeln!(out, "      {path}:");
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (p, q) = (x.get(k), y.get(k));
                let masked = |j: Option<&J>| j.and_then(J::as_str) == Some(MASK);
                if p != q || masked(p) || masked(q) {
                    let _ = writeln!(out, "        {k}: last applied {}, {word} {}", text(p), text(q));
                }
            }
        }
        _ => {
            let _ = writeln!(out, "      {path}: last applied {last}, {word} {other}");
        }
    }
}

/// Renders a drift report.
pub fn drift(r: &DriftReport) -> String {
    let mut out = String::new();
    if r.converged() {
        out.push_str("No drift: the live objects, the state and the spec agree.\n");
        if !r.checks.is_empty() {
            let _ = writeln!(out, "Checks: {} passed.", r.checks.len());
        }
        return out;
    }
    out.push_str("Drift detected:\n\n");
    for f in &r.findings {
        let (sym, what) = match f.class {
            DriftClass::ChangedOutside => ("~", "changed outside skyform"),
            DriftClass::DeletedOutside => ("-", "deleted outside skyform"),
            DriftClass::PendingSpecChange => (">", "the spec changed since the last apply"),
            DriftClass::CheckFailed => ("!", "the check fails"),
            DriftClass::PolicyFailed => ("!", "breaks a policy"),
        };
        let _ = writeln!(out, "  {sym} {} [{}]: {what}", f.address, f.class.as_str());
        if let Some(m) = &f.message {
            let _ = writeln!(out, "      {}", m.replace('\n', "\n      "));
        }
        for a in &f.attributes {
            let (other, word) = match f.class {
                DriftClass::ChangedOutside => (&a.live, "live"),
                _ => (&a.desired, "spec"),
            };
            attribute_drift(&mut out, &a.path, &a.last_applied, other, word);
        }
    }
    let c = &r.counts;
    // The policy count shows only where policies were evaluated, so the line stays as it was for
    // specs without any.
    let policy = if r.policy.is_some() { format!(", {} policy_failed", c.policy_failed) } else { String::new() };
    let _ = writeln!(
        out,
        "\n{} findings: {} changed_outside, {} deleted_outside, {} pending_spec_change, {} check_failed{policy}.",
        r.findings.len(),
        c.changed_outside,
        c.deleted_outside,
        c.pending_spec_change,
        c.check_failed
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::providers::{AttrType, Attribute};

    #[test]
    fn secret_tables_show_keys_and_mask_values() {
        let attr = Attribute::optional("data", AttrType::Map(Box::new(AttrType::String)), "").sensitive_values();
        let before = attr.mark(Value::map([("a", Value::str("old-secret")), ("b", Value::str("same"))]));
        let after = attr.mark(Value::map([("a", Value::str("new-secret")), ("b", Value::str("same"))]));
        let c = ResourceChange {
            before: Some([("data".to_string(), before)].into()),
            after: Some([("data".to_string(), after)].into()),
            changed: vec!["data".into()],
            sensitive_attributes: vec!["data".into()],
            ..ResourceChange::new(Address::managed("k8s_secret", "s"), "kubernetes".into(), Action::Update, vec![])
        };
        let mut out = String::new();
        change(&mut out, &c);
        assert!(out.contains("~ a = (sensitive value) -> (sensitive value)"), "{out}");
        assert!(!out.contains("~ b"), "{out}");
        assert!(!out.contains("old-secret") && !out.contains("new-secret"), "{out}");
    }

    /// Helm values as YAML, diffed line by line, secrets masked; a release's live drift as a list.
    #[test]
    fn nested_values_read_as_yaml_and_live_drift_as_a_list() {
        let secret = Value::str("skypilot:$apr1$hash").sensitive();
        let values = |cpu: &str| {
            Value::map([
                (
                    "apiService",
                    Value::map([
                        ("dbConnectionSecretName", Value::str("skypilot-db-connection-uri")),
                        (
                            "resources",
                            Value::map([(
                                "requests",
                                Value::map([("cpu", Value::str(cpu)), ("memory", Value::str("8Gi"))]),
                            )]),
                        ),
                    ]),
                ),
                ("ingress", Value::map([("authCredentials", secret.clone())])),
            ])
        };
        let c = ResourceChange {
            before: Some([("values".to_string(), values("4"))].into()),
            after: Some([("values".to_string(), values("500m"))].into()),
            changed: vec!["values".into()],
            ..ResourceChange::new(Address::managed("helm_release", "skypilot"), "helm".into(), Action::Update, vec![])
        };
        let mut out = String::new();
        change(&mut out, &c);
        let want = r#"  # helm_release.skypilot will be updated in-place
  ~ resource "helm_release" "skypilot" {
      ~ values = (diff)
            apiService:
              dbConnectionSecretName: skypilot-db-connection-uri
              resources:
                requests:
          -       cpu: '4'
          +       cpu: 500m
                  memory: 8Gi
            ingress:
              authCredentials: (sensitive value)
    }
"#;
        assert_eq!(out, want);
        let created = ResourceChange {
            after: Some([("values".to_string(), values("4"))].into()),
            ..ResourceChange::new(Address::managed("helm_release", "skypilot"), "helm".into(), Action::Create, vec![])
        };
        let mut out = String::new();
        change(&mut out, &created);
        assert!(out.contains("      + values = (yaml)\n          apiService:\n            dbConnectionSecretName: skypilot-db-connection-uri\n"), "{out}");
        assert!(!out.contains("apr1"), "{out}");

        let report = DriftReport {
            format_version: "1",
            findings: vec![crate::engine::drift::Finding {
                address: Address::managed("helm_release", "skypilot"),
                class: DriftClass::ChangedOutside,
                attributes: vec![
                    crate::engine::drift::AttrFinding {
                        path: "live_drift".into(),
                        last_applied: serde_json::json!({}),
                        live: serde_json::json!({"Deployment/sky/sky-api-server": "spec.replicas: 0 (chart: 1)"}),
                        desired: serde_json::json!({}),
                    },
                    crate::engine::drift::AttrFinding {
                        path: "data".into(),
                        last_applied: serde_json::json!({"a": MASK, "b": "x"}),
                        live: serde_json::json!({"a": MASK, "b": "x"}),
                        desired: serde_json::json!({}),
                    },
                ],
                message: None,
            }],
            counts: crate::ops::drift::Counts { changed_outside: 1, ..Default::default() },
            checks: Vec::new(),
            policy: None,
        };
        let text = drift(&report);
        assert!(
            text.contains("      live_drift: objects of the release changed outside it:\n        Deployment/sky/sky-api-server: spec.replicas: 0 (chart: 1)\n"),
            "{text}"
        );
        assert!(
            text.contains("      data:\n        a: last applied \"(sensitive value)\", live \"(sensitive value)\"\n"),
            "{text}"
        );
        assert!(!text.contains("        b:"), "an equal plain value is not news: {text}");
    }
}
