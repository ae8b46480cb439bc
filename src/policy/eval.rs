//! Evaluating a policy set on one input document, with conftest's rule conventions.

use serde_json::Value as J;

use super::load::PolicySet;
use super::{Finding, Level, Outcome, PolicyError};

/// The rule families, and what each result means.
const FAMILIES: [(&str, Level); 3] = [("deny", Level::Deny), ("violation", Level::Deny), ("warn", Level::Warn)];

impl PolicySet {
    /// Evaluates every `deny`, `warn` and `violation` rule (and `deny_*`, `warn_*`,
    /// `violation_*`) of every package under the namespace on `input`.
    ///
    /// A result is a string (the message) or an object with a string `msg` and optional `id`,
    /// `address` and any other fields (kept as metadata); a rule that is `true` counts as one
    /// result whose message names the rule (conftest's boolean rules).
    pub fn evaluate(&self, input: J) -> Result<Outcome, PolicyError> {
        let mut out = Outcome {
            digest: self.digest.clone(),
            files: self.files.iter().map(|f| f.display().to_string()).collect(),
            findings: Vec::new(),
        };
        if self.files.is_empty() {
            return Ok(out);
        }
        let _t = crate::timings::span("policy", || format!("evaluate {} files", self.files.len()));
        // The engine is cloned per evaluation: evaluation mutates it, and the set is shared.
        let mut engine = self.engine.clone();
        let packages = engine.get_policy_package_components().map_err(|e| PolicyError::Evaluation(e.to_string()))?;
        let ours: Vec<Vec<String>> = {
            let mut p: Vec<Vec<String>> = packages
                .into_iter()
                .map(|p| p.components)
                .filter(|c| c.len() >= self.namespace.len() && c[..self.namespace.len()] == self.namespace[..])
                .collect();
            p.sort();
            p.dedup();
            p
        };
        if ours.is_empty() {
            return Ok(out);
        }
        engine.set_input(regorus::Value::from(input));
        let query = format!("data.{}", self.namespace.join("."));
        let results = engine.eval_query(query, false).map_err(|e| evaluation(&e.to_string()))?;
        let Some(tree) = results.result.first().and_then(|r| r.expressions.first()).map(|e| &e.value) else {
            return Ok(out);
        };
        // Only the results are turned into JSON: the packages' other rules may hold whole
        // documents (a rule that lists every object of a type).
        for package in &ours {
            let mut node = tree;
            for c in &package[self.namespace.len()..] {
                node = &node[c.as_str()];
            }
            let Ok(rules) = node.as_object() else { continue };
            let name = package.join(".");
            for (rule, value) in rules.iter() {
                let Ok(rule) = rule.as_string() else { continue };
                let Some(level) = family(rule) else { continue };
                let value = serde_json::to_value(value).map_err(|e| PolicyError::Evaluation(e.to_string()))?;
                results_of(&name, rule, level, &value, &mut out.findings)?;
            }
        }
        out.findings.sort();
        out.findings.dedup();
        Ok(out)
    }
}

/// The family of a rule name: `deny`, `deny_x` … (conftest matches by prefix).
fn family(rule: &str) -> Option<Level> {
    FAMILIES
        .iter()
        .find(|(f, _)| rule == *f || rule.strip_prefix(f).is_some_and(|rest| rest.starts_with('_')))
        .map(|(_, l)| *l)
}

fn results_of(package: &str, rule: &str, level: Level, value: &J, out: &mut Vec<Finding>) -> Result<(), PolicyError> {
    let bad = || PolicyError::BadResult {
        package: package.to_string(),
        rule: rule.to_string(),
        got: value.to_string().chars().take(200).collect(),
    };
    let finding = |msg: String| Finding {
        level,
        address: None,
        msg,
        id: None,
        package: package.to_string(),
        rule: rule.to_string(),
        metadata: None,
    };
    match value {
        J::Bool(false) | J::Null => {}
        J::Bool(true) => out.push(finding(format!("data.{package}.{rule} is true"))),
        J::String(s) if s == "<undefined>" => {}
        J::Array(items) => {
            for item in items {
                match item {
                    J::String(s) => out.push(finding(s.clone())),
                    J::Object(o) => {
                        let Some(msg) = o.get("msg").and_then(J::as_str) else { return Err(bad()) };
                        let text = |k: &str| o.get(k).and_then(|v| v.as_str().map(str::to_string));
                        let rest: serde_json::Map<String, J> = o
                            .iter()
                            .filter(|(k, _)| !matches!(k.as_str(), "msg" | "id" | "address"))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        out.push(Finding {
                            address: text("address"),
                            id: text("id"),
                            metadata: (!rest.is_empty()).then(|| J::Object(rest).to_string()),
                            ..finding(msg.to_string())
                        });
                    }
                    _ => return Err(bad()),
                }
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// An evaluation error, with the interpreter's position kept as `file:line:col`.
fn evaluation(message: &str) -> PolicyError {
    let d = super::load::located(message, std::path::Path::new("?"));
    PolicyError::Evaluation(match d.pos {
        Some(p) => format!("{p}: {}", d.message.trim_start_matches("policy: ")),
        None => message.trim().to_string(),
    })
}
