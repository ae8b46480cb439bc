//! `skyform check`: runs only the checks, for a cheap health cron.

use std::sync::Arc;

use super::apply::Session;
use super::{Loaded, OpError};
use crate::engine::checks::{self, CheckResult};
use crate::engine::scope::Values;
use crate::engine::{Cancel, Context, Hook, PlanOptions};

/// Reads what the checks need (their dependencies, and what those depend on), then runs every
/// check. Changes nothing, takes no lock.
pub async fn check(session: &Session<'_>, ctx: &Context) -> Result<Vec<CheckResult>, OpError> {
    if ctx.spec.checks.is_empty() {
        return Err(super::error("the spec has no `[check.<name>]` blocks; there is nothing to check"));
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
    Ok(checks::survey(ctx, &values).await)
}

/// `skyform check`: reads what the checks need (no lock) and runs them, three attempts each.
pub async fn run(loaded: &Loaded, hook: Arc<dyn Hook>, parallelism: usize) -> Result<Vec<CheckResult>, OpError> {
    let ctx = loaded.context(hook, parallelism, Cancel::new());
    let session = super::apply::open(loaded, None, std::time::Duration::ZERO)?;
    check(&session, &ctx).await
}
