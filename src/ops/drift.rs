//! drift: compare live with last-applied and with the spec, classify.

use serde::Serialize;

use std::path::PathBuf;
use std::sync::Arc;

use super::apply::Session;
use super::notify::{NotifyOn, Outcome};
use super::{OpError, SpecOptions};
use crate::address::Address;
use crate::engine::checks::{self, CheckResult};
use crate::engine::drift::{DriftClass, Finding, classify};
use crate::engine::{Cancel, Context, PlanOptions};
use crate::providers::Registry;

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
    /// What the policies said about the live objects (absent when no policy is configured);
    /// each deny is also a `policy_failed` finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::Outcome>,
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
    /// `policy_failed`.
    pub policy_failed: usize,
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
    let policy = if session.loaded().policies.is_empty() {
        None
    } else {
        let outcome = super::policy::evaluate_live(session.loaded(), &out.plan, &out.observations)?;
        findings.extend(policy_findings(&outcome));
        Some(outcome)
    };
    findings.sort_by(|a, b| (&a.address, a.class).cmp(&(&b.address, b.class)));
    let mut counts = Counts::default();
    for f in &findings {
        match f.class {
            DriftClass::ChangedOutside => counts.changed_outside += 1,
            DriftClass::DeletedOutside => counts.deleted_outside += 1,
            DriftClass::PendingSpecChange => counts.pending_spec_change += 1,
            DriftClass::CheckFailed => counts.check_failed += 1,
            DriftClass::PolicyFailed => counts.policy_failed += 1,
        }
    }
    Ok(DriftReport { format_version: "1", findings, counts, checks, policy })
}

/// One `policy_failed` finding per deny: at the address the result names, else at
/// `policy.<package>` (a result about no one object).
pub fn policy_findings(o: &crate::policy::Outcome) -> Vec<Finding> {
    o.denies()
        .map(|f| Finding {
            address: f
                .address
                .as_deref()
                .and_then(|a| a.parse::<Address>().ok())
                .unwrap_or_else(|| Address::managed("policy", &f.package)),
            class: DriftClass::PolicyFailed,
            attributes: Vec::new(),
            message: Some(f.to_string()),
        })
        .collect()
}

/// What a drift run does besides reading.
#[derive(Debug, Clone, Default)]
pub struct DriftRequest {
    /// How many resources are read at once.
    pub parallelism: usize,
    /// Do not run the spec's checks.
    pub skip_checks: bool,
    /// Also write the JSON report here.
    pub json_out: Option<PathBuf>,
    /// Post the report to this webhook URL (a credential: never printed), when `NotifyOn` says so.
    pub notify: Option<(String, NotifyOn)>,
}

/// How a drift run went: the report (or why there is none), and whether it was delivered.
pub struct DriftRun {
    /// The report, or the error that stopped the run (also posted with `--notify`).
    pub outcome: Result<DriftReport, OpError>,
    /// Writing `--json-out` or posting `--notify` failed.
    pub delivery: Result<(), OpError>,
    /// An apply held the state lock while this run read it.
    pub lock_note: Option<String>,
    /// The run's secrets: the report's remote text is masked with it already; the CLI masks what
    /// it prints with it too.
    pub mask: crate::mask::Mask,
}

/// Loads the spec (a load error is an outcome too, so that cron hears of it), reads everything
/// live without the lock, classifies, runs the checks, then writes and posts the report.
pub async fn run(opts: &SpecOptions, registry: Registry, req: &DriftRequest) -> DriftRun {
    let net = registry.net().clone();
    let mut lock_note = None;
    let mut mask = crate::mask::Mask::default();
    let outcome = async {
        let loaded = super::load(opts, registry)?;
        mask = loaded.mask();
        let ctx = loaded.context(Arc::new(crate::engine::events::NoHook), req.parallelism, Cancel::new());
        let session = super::apply::open(&loaded, None, std::time::Duration::ZERO)?;
        lock_note = super::lock_note(&loaded);
        drift(&session, &ctx, req.skip_checks).await
    }
    .await;
    let outcome = outcome.map(|r| masked(r, &mask));
    let delivery = deliver(&net, opts, req, &outcome, &mask).await;
    DriftRun { outcome, delivery, lock_note, mask }
}

/// The report with every text that came from outside (findings' and checks' messages) masked.
fn masked(mut r: DriftReport, mask: &crate::mask::Mask) -> DriftReport {
    for f in &mut r.findings {
        if let Some(m) = &mut f.message {
            *m = mask.apply(m);
        }
    }
    for c in &mut r.checks {
        c.message = mask.apply(&c.message);
    }
    for f in r.policy.iter_mut().flat_map(|o| o.findings.iter_mut()) {
        f.msg = mask.apply(&f.msg);
    }
    r
}

async fn deliver(
    net: &crate::foundation::net::Net,
    opts: &SpecOptions,
    req: &DriftRequest,
    outcome: &Result<DriftReport, OpError>,
    mask: &crate::mask::Mask,
) -> Result<(), OpError> {
    if let (Some(path), Ok(report)) = (&req.json_out, outcome) {
        let text = serde_json::to_string_pretty(report).expect("reports serialize");
        // A new private file renamed over the target, never written through a link.
        crate::foundation::files::write_private(path, format!("{text}\n").as_bytes())
            .map_err(|e| super::error(format!("writing {}: {e}", path.display())))?;
    }
    let Some((url, on)) = req.notify.as_ref().filter(|(u, _)| !u.trim().is_empty()) else {
        return Ok(());
    };
    let phrased = match outcome {
        Ok(r) => Outcome::Report(r.clone()),
        Err(e) => Outcome::Failed(mask.apply(e.to_string().trim())),
    };
    if !super::notify::wanted(*on, &phrased) {
        return Ok(());
    }
    let name = opts.file.display().to_string();
    super::notify::post(net, url, &super::notify::message(&name, &phrased))
        .await
        .map_err(|e| super::error(format!("drift --notify: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Finding as PolicyFinding, Level, Outcome};

    fn outcome() -> Outcome {
        let f = |level, address: Option<&str>, msg: &str| PolicyFinding {
            level,
            address: address.map(str::to_string),
            msg: msg.into(),
            id: Some("SKY-SQL-001".into()),
            package: "skyform.skypilot.cloudsql".into(),
            rule: "deny".into(),
            metadata: None,
        };
        Outcome {
            digest: "d".into(),
            files: vec!["a.rego".into()],
            findings: vec![
                f(Level::Deny, Some("module.m.gcp_sql_instance.db"), "deletion protection is off"),
                f(Level::Deny, None, "about no one object"),
                f(Level::Warn, Some("helm_release.x"), "a warning is no finding"),
            ],
        }
    }

    #[test]
    fn each_deny_is_a_policy_failed_finding_at_its_address() {
        let found = policy_findings(&outcome());
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|f| f.class == DriftClass::PolicyFailed));
        assert_eq!(found[0].address.to_string(), "module.m.gcp_sql_instance.db");
        assert_eq!(found[1].address.to_string(), "policy.skyform.skypilot.cloudsql");
        assert_eq!(
            found[0].message.as_deref(),
            Some(
                "module.m.gcp_sql_instance.db: deletion protection is off [SKY-SQL-001] (data.skyform.skypilot.cloudsql.deny)"
            )
        );
    }

    #[test]
    fn notify_counts_policy_failed_only_where_policies_ran() {
        let o = outcome();
        let findings = policy_findings(&o);
        let report = DriftReport {
            format_version: "1",
            counts: Counts { policy_failed: findings.len(), ..Counts::default() },
            findings,
            checks: Vec::new(),
            policy: Some(o),
        };
        let msg = super::super::notify::message("s.toml", &Outcome2::Report(report.clone()));
        let text = msg["text"].as_str().unwrap();
        assert!(text.contains("0 check_failed, 2 policy_failed)"), "{text}");
        assert_eq!(msg["skyform_report"]["counts"]["policy_failed"], 2);
        assert_eq!(msg["skyform_report"]["policy"]["findings"][2]["level"], "warn");
        let without = DriftReport { policy: None, ..report };
        let msg = super::super::notify::message("s.toml", &Outcome2::Report(without));
        assert!(!msg["text"].as_str().unwrap().contains("2 policy_failed)"), "{msg}");
    }

    use super::super::notify::Outcome as Outcome2;
}
