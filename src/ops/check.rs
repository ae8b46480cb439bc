//! `skyform check`: runs only the checks (and the policies on the live objects), for a cheap
//! health cron.

use std::sync::Arc;

use super::apply::Session;
use super::{Loaded, OpError};
use crate::engine::checks::{self, CheckResult};
use crate::engine::scope::Values;
use crate::engine::{Cancel, Context, Hook, PlanOptions};
use crate::policy::Outcome;

/// What `skyform check` found.
pub struct Checked {
    /// Every check run, passed or not.
    pub checks: Vec<CheckResult>,
    /// What the policies said about the live objects (none when no policy is configured).
    pub policy: Option<Outcome>,
}

impl Checked {
    /// Checks that failed plus policy denies: `skyform check` exits 2 when this is not zero.
    pub fn failures(&self) -> usize {
        self.checks.iter().filter(|c| !c.passed).count() + self.policy.as_ref().map_or(0, |o| o.denies().count())
    }
}

/// Reads what the checks need (their dependencies, and what those depend on), then runs every
/// check. With policies, everything is read, and the policies judge the live objects. Changes
/// nothing, takes no lock.
pub async fn check(session: &Session<'_>, ctx: &Context) -> Result<Checked, OpError> {
    let policies = &session.loaded().policies;
    if ctx.spec.checks.is_empty() && policies.is_empty() {
        return Err(super::error("the spec has no `[check.<name>]` blocks; there is nothing to check"));
    }
    if !policies.is_empty() {
        let out = session.plan(ctx, &PlanOptions::default()).await?;
        let outcome = super::policy::evaluate_live(session.loaded(), &out.plan, &out.observations)?;
        let checks = checks::survey(ctx, &out.values).await;
        return Ok(Checked { checks, policy: Some(outcome) });
    }
    let mut targets: Vec<_> =
        ctx.spec.checks.values().flat_map(|c| checks::dependencies(&ctx.spec, &ctx.graph, c)).collect();
    targets.sort();
    targets.dedup();
    // Checks that need no resource (a plain URL built from variables) need no read at all.
    let values = if targets.is_empty() {
        Values::default()
    } else {
        session.plan(ctx, &PlanOptions { targets, ..PlanOptions::default() }).await?.values
    };
    Ok(Checked { checks: checks::survey(ctx, &values).await, policy: None })
}

/// `skyform check`: reads what the checks need (no lock) and runs them, three attempts each.
pub async fn run(loaded: &Loaded, hook: Arc<dyn Hook>, parallelism: usize) -> Result<Checked, OpError> {
    let ctx = loaded.context(hook, parallelism, Cancel::new());
    let session = super::apply::open(loaded, None, std::time::Duration::ZERO)?;
    check(&session, &ctx).await
}
