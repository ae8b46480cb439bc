//! drift: compare live with last-applied and with the spec, classify.

use serde::Serialize;

use super::OpError;
use super::apply::Session;
use crate::address::Address;
use crate::engine::checks::{self, CheckResult};
use crate::engine::drift::{DriftClass, Finding, classify};
use crate::engine::{Context, PlanOptions};

/// The drift report (also the `--json` output; `docs/plan-format.md`).
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Format version of this report.
    pub format_version: &'static str,
    /// Every finding, by address then class.
    pub findings: Vec<Finding>,
    /// Counts by class.
    pub counts: Counts,
    /// Every check run, passed or not.
    pub checks: Vec<CheckResult>,
}

/// Counts by class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// `changed_outside`.
    pub changed_outside: usize,
    /// `deleted_outside`.
    pub deleted_outside: usize,
    /// `pending_spec_change`.
    pub pending_spec_change: usize,
    /// `check_failed`.
    pub check_failed: usize,
}

impl DriftReport {
    /// Whether live, state and spec all agree.
    pub fn converged(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Reads everything, classifies the differences and runs every check (unless `skip_checks`).
/// Changes nothing.
pub async fn drift(session: &Session<'_>, ctx: &Context, skip_checks: bool) -> Result<DriftReport, OpError> {
    let out = session.plan(ctx, &PlanOptions::default()).await?;
    let mut findings = classify(&ctx.registry, &out.observations, &session.state.fingerprinter());
    let checks = if skip_checks { Vec::new() } else { checks::survey(ctx, &out.values).await };
    findings.extend(checks.iter().filter(|c| !c.passed).map(|c| Finding {
        address: Address::managed("check", &c.name),
        class: DriftClass::CheckFailed,
        attributes: Vec::new(),
        message: Some(c.message.clone()),
    }));
    findings.sort_by(|a, b| (&a.address, a.class).cmp(&(&b.address, b.class)));
    let mut counts = Counts::default();
    for f in &findings {
        match f.class {
            DriftClass::ChangedOutside => counts.changed_outside += 1,
            DriftClass::DeletedOutside => counts.deleted_outside += 1,
            DriftClass::PendingSpecChange => counts.pending_spec_change += 1,
            DriftClass::CheckFailed => counts.check_failed += 1,
        }
    }
    Ok(DriftReport { format_version: "1", findings, counts, checks })
}
