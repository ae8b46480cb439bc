//! drift: compare live with last-applied and with the spec, classify.

use serde::Serialize;

use super::apply::Session;
use super::OpError;
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
}

impl DriftReport {
    /// Whether live, state and spec all agree.
    pub fn converged(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Reads everything and classifies the differences. Changes nothing.
pub async fn drift(session: &Session<'_>, ctx: &Context) -> Result<DriftReport, OpError> {
    let out = session.plan(ctx, &PlanOptions::default()).await?;
    let mut findings = classify(&ctx.registry, &out.observations, &session.state.fingerprinter());
    findings.sort_by(|a, b| (&a.address, a.class).cmp(&(&b.address, b.class)));
    let mut counts = Counts::default();
    for f in &findings {
        match f.class {
            DriftClass::ChangedOutside => counts.changed_outside += 1,
            DriftClass::DeletedOutside => counts.deleted_outside += 1,
            DriftClass::PendingSpecChange => counts.pending_spec_change += 1,
        }
    }
    Ok(DriftReport { format_version: "1", findings, counts })
}
