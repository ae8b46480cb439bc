//! Drift, classified (see `docs/architecture.md`).
//!
//! For each managed resource there are three versions: desired (spec),
//! last-applied (state) and live (read now). Only attributes skyform manages are
//! compared, after normalization, so server-filled defaults are never drift.
//! - live ≠ last-applied → `changed_outside`;
//! - live absent while in state → `deleted_outside`;
//! - desired ≠ last-applied → `pending_spec_change` (also: in the spec but never
//!   applied, or in state but gone from the spec).

use std::collections::BTreeMap;

use serde::Serialize;

use super::diff::compare;
use super::planner::Observation;
use crate::address::Address;
use crate::providers::{Registry, SchemaKind};
use crate::secrets::Fingerprinter;
use crate::value::Value;

/// The kind of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DriftClass {
    /// Someone changed the object outside skyform.
    ChangedOutside,
    /// Someone deleted the object outside skyform.
    DeletedOutside,
    /// The spec moved since the last apply (not drift, but not converged).
    PendingSpecChange,
    /// A `[check.<name>]` does not pass: what was applied does not work.
    CheckFailed,
    /// A live object breaks a policy (a `deny`/`violation` result on the live values).
    PolicyFailed,
}

impl DriftClass {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::ChangedOutside => "changed_outside",
            DriftClass::DeletedOutside => "deleted_outside",
            DriftClass::PendingSpecChange => "pending_spec_change",
            DriftClass::CheckFailed => "check_failed",
            DriftClass::PolicyFailed => "policy_failed",
        }
    }
}

/// One attribute that differs, values masked where sensitive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttrFinding {
    /// The attribute.
    pub path: String,
    /// As last applied.
    pub last_applied: serde_json::Value,
    /// As read now.
    pub live: serde_json::Value,
    /// As the spec wants it.
    pub desired: serde_json::Value,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Which resource.
    pub address: Address,
    /// What kind.
    pub class: DriftClass,
    /// Which attributes (empty for whole-object findings).
    pub attributes: Vec<AttrFinding>,
    /// What a failing check saw (`check_failed`), or the policy's result (`policy_failed`); no
    /// secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Classifies every observation.
pub fn classify(
    registry: &Registry,
    observations: &BTreeMap<Address, Observation>,
    fp: &Fingerprinter,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (a, o) in observations {
        let Some(schema) = registry.type_schema(SchemaKind::Resource, &a.type_name) else { continue };
        match (&o.prior, &o.live, &o.desired) {
            (None, _, Some(_)) => out.push(Finding {
                address: a.clone(),
                class: DriftClass::PendingSpecChange,
                attributes: vec![],
                message: None,
            }),
            (Some(_), _, None) => out.push(Finding {
                address: a.clone(),
                class: DriftClass::PendingSpecChange,
                attributes: vec![],
                message: None,
            }),
            (Some(_), None, Some(_)) if o.deferred => {}
            (Some(_), None, Some(_)) => out.push(Finding {
                address: a.clone(),
                class: DriftClass::DeletedOutside,
                attributes: vec![],
                message: None,
            }),
            (Some(prior), Some(live), Some(desired)) => {
                let show = |m: &BTreeMap<String, Value>, k: &str| {
                    m.get(k).map(Value::to_json_masked).unwrap_or(serde_json::Value::Null)
                };
                let finding = |k: &str| AttrFinding {
                    path: k.to_string(),
                    last_applied: show(&prior.attrs, k),
                    live: show(&live.attrs, k),
                    desired: show(desired, k),
                };
                // Only what the plan would change is a finding: a live object
                // that matches the spec is converged, whatever the state says
                // (e.g. a bcrypt line re-hashed but still verifying).
                let differs = compare(schema, desired, &live.attrs, Some(&prior.attrs), &[], fp);
                let mut outside = Vec::new();
                let mut spec = Vec::new();
                for k in &differs.changed {
                    let Some(attr) = schema.attr(k) else { continue };
                    let last = prior.attrs.get(k.as_str()).cloned().unwrap_or(Value::Null);
                    let live_v = live.attrs.get(k.as_str()).cloned().unwrap_or(Value::Null);
                    let want = desired.get(k.as_str()).cloned().unwrap_or(Value::Null);
                    // Write-only attributes cannot be read: only the spec can move them.
                    let live_moved = !attr.write_only && !fp.same(&last, &live_v);
                    let spec_moved = !fp.same(&want, &last);
                    if live_moved {
                        outside.push(finding(k));
                    }
                    if spec_moved || !live_moved {
                        spec.push(finding(k));
                    }
                }
                if !outside.is_empty() {
                    out.push(Finding {
                        address: a.clone(),
                        class: DriftClass::ChangedOutside,
                        attributes: outside,
                        message: None,
                    });
                }
                if !spec.is_empty() {
                    out.push(Finding {
                        address: a.clone(),
                        class: DriftClass::PendingSpecChange,
                        attributes: spec,
                        message: None,
                    });
                }
            }
            (None, _, None) => {}
        }
    }
    out
}
