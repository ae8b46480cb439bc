//! plan, apply (fresh or saved), destroy.

use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use super::plan::PlanRequest;
use super::{Loaded, OpError};
use crate::engine::applier::{self, ApplyReport};
use crate::engine::planner::{self, PlanOutput};
use crate::engine::{Cancel, Context, Hook, PlanOptions};
use crate::plan::Plan;
use crate::state::{LockGuard, State};

/// What to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    /// How to plan (ignored for a saved plan, which says it itself).
    pub plan: PlanRequest,
    /// A plan saved with `plan --out`.
    pub plan_file: Option<PathBuf>,
    /// Do not run the spec's checks (always for destroy).
    pub skip_checks: bool,
}

/// An apply planned under the state lock, waiting for approval: the CLI shows [`Prepared::plan`]
/// and asks, then calls [`Prepared::execute`]. Dropping it releases the lock and changes nothing.
pub struct Prepared<'a> {
    session: Session<'a>,
    ctx: Context,
    /// What will be done.
    pub plan: Plan,
    /// Whether the plan came from a saved file (approved when it was saved).
    pub from_file: bool,
}

/// Takes the lock, then plans (or re-checks a saved plan against reality): nothing changes yet.
pub async fn prepare<'a>(
    loaded: &'a Loaded,
    req: &ApplyRequest,
    hook: Arc<dyn Hook>,
    cancel: Cancel,
) -> Result<Prepared<'a>, OpError> {
    let op = if req.plan.destroy { "destroy" } else { "apply" };
    let ctx = loaded.context(hook, req.plan.parallelism, cancel);
    let session = open(loaded, Some(op), req.plan.lock_timeout)?;
    let mut planned = match &req.plan_file {
        Some(path) => {
            let saved = crate::plan::file::load(path)?;
            session.check_saved(&ctx, &saved).await?
        }
        None => {
            let opts = req.plan.options(loaded, &session.state)?;
            session.plan(&ctx, &opts).await?
        }
    };
    if req.skip_checks || req.plan.destroy {
        planned.plan.checks.clear();
    }
    // The gate: before any change, whatever the spec says (no flag turns it off).
    super::policy::gate(loaded, &mut planned.plan)?;
    Ok(Prepared { session, ctx, plan: planned.plan, from_file: req.plan_file.is_some() })
}

impl Prepared<'_> {
    /// Whether there is nothing to do at all (no change, no output to record, no check to run).
    pub fn is_empty(&self) -> bool {
        !self.plan.changes_state() && self.plan.outputs.is_empty() && self.plan.checks.is_empty()
    }

    /// Whether a person must say yes first: a fresh plan with changes (a saved plan was approved
    /// when it was saved).
    pub fn needs_approval(&self) -> bool {
        self.plan.has_changes() && !self.from_file
    }

    /// Applies the plan, then folds the journal into the snapshot.
    pub async fn execute(self) -> Result<ApplyReport, OpError> {
        let Prepared { mut session, ctx, plan, .. } = self;
        session.apply(&ctx, &plan).await
    }
}

/// A run against one state: the lock (for commands that change state) and the
/// state as read under it.
pub struct Session<'a> {
    _guard: Option<Box<dyn LockGuard>>,
    /// The state, read once the lock was held.
    pub state: State,
    loaded: &'a Loaded,
}

/// Opens a session; `operation` names the lock holder (`None`: read-only, no lock).
pub fn open<'a>(loaded: &'a Loaded, operation: Option<&str>, lock_timeout: Duration) -> Result<Session<'a>, OpError> {
    let _t = crate::timings::span("state", || if operation.is_some() { "lock and load" } else { "load" }.into());
    let guard = match operation {
        Some(op) => Some(loaded.backend.lock(op, lock_timeout)?),
        None => None,
    };
    let state = loaded.backend.load()?;
    Ok(Session { _guard: guard, state, loaded })
}

impl<'a> Session<'a> {
    /// The loaded spec this session runs for.
    pub fn loaded(&self) -> &'a Loaded {
        self.loaded
    }

    /// Writes the state if it has never been written, so that its lineage and
    /// fingerprint key are stable (a saved plan made against a new state must
    /// still match it when applied).
    pub fn persist_if_new(&mut self, lock_timeout: Duration) -> Result<(), OpError> {
        if self.loaded.backend.exists()? {
            return Ok(());
        }
        let _guard = if self._guard.is_none() { Some(self.loaded.backend.lock("plan", lock_timeout)?) } else { None };
        // Re-read under the lock: another process may have just created it.
        let current = self.loaded.backend.load()?;
        if self.loaded.backend.exists()? {
            self.state = current;
            return Ok(());
        }
        self.loaded.backend.writer(&self.state)?.compact()?;
        Ok(())
    }

    /// Plans; the plan records the state serial, lineage and the spec digest.
    pub async fn plan(&self, ctx: &Context, opts: &PlanOptions) -> Result<PlanOutput, OpError> {
        let mut out = planner::plan(ctx, &self.state, opts).await?;
        out.plan.spec_digest = self.loaded.digest(&self.state.fingerprinter());
        out.plan.targets = opts.targets.clone();
        out.plan.replace = opts.replace.clone();
        out.plan.exclude = opts.exclude.clone();
        (out.plan.variables, out.plan.providers) = super::policy::context(self.loaded);
        Ok(out)
    }

    /// Applies a plan made in this session (or checked with [`Self::check_saved`]).
    pub async fn apply(&mut self, ctx: &Context, plan: &Plan) -> Result<ApplyReport, OpError> {
        let writer: Arc<dyn crate::state::StateWriter> = Arc::from(self.loaded.backend.writer(&self.state)?);
        let report = applier::apply(ctx, plan, &self.state, writer.clone()).await;
        writer.compact()?;
        self.state = self.loaded.backend.load()?;
        Ok(report)
    }

    /// Checks a saved plan against reality and returns the equivalent fresh plan
    /// (which carries the secrets the saved one had only as fingerprints).
    ///
    /// Refuses when the state moved (lineage or serial), when the spec or the
    /// variables changed, or when any live object changed since the plan was made,
    /// naming each resource. Terraform checks only the state serial.
    pub async fn check_saved(&self, ctx: &Context, saved: &Plan) -> Result<PlanOutput, OpError> {
        if saved.lineage != self.state.lineage {
            return Err(super::error(format!(
                "the saved plan was made for another state (lineage {}, this state is {}); run plan again",
                saved.lineage, self.state.lineage
            )));
        }
        if saved.serial != self.state.serial {
            return Err(super::error(format!(
                "the state changed since the plan was made (serial {} then, {} now); run plan again",
                saved.serial, self.state.serial
            )));
        }
        let fp = self.state.fingerprinter();
        if saved.spec_digest != self.loaded.digest(&fp) {
            return Err(super::error(
                "the spec or the variable values changed since the plan was made; run plan again",
            ));
        }
        let policies = saved.policy.as_ref().map(|o| o.digest.as_str());
        if policies.unwrap_or(crate::policy::PolicySet::empty().digest()) != self.loaded.policies.digest() {
            return Err(super::error(
                "the policies changed since the plan was made (the set evaluated then is not the set now); run plan again",
            ));
        }
        let opts = PlanOptions {
            destroy: saved.destroy,
            targets: saved.targets.clone(),
            replace: saved.replace.clone(),
            exclude: saved.exclude.clone(),
        };
        let fresh = self.plan(ctx, &opts).await?;
        let mut problems = Vec::new();
        let fresh_by_addr: std::collections::BTreeMap<&crate::address::Address, &crate::plan::ResourceChange> =
            fresh.plan.changes.iter().map(|c| (&c.address, c)).collect();
        let saved_by_addr: std::collections::BTreeSet<&crate::address::Address> =
            saved.changes.iter().map(|c| &c.address).collect();
        for old in &saved.changes {
            match fresh_by_addr.get(&old.address).copied() {
                None => problems.push(format!("{}: no longer part of the plan", old.address)),
                Some(new) => {
                    if new.action != old.action {
                        problems.push(format!(
                            "{}: the plan said {:?}, it would now be {:?}",
                            old.address, old.action, new.action
                        ));
                    } else if new.live_version != old.live_version {
                        problems.push(format!(
                            "{}: the live object changed since the plan was made (version {} then, {} now)",
                            old.address,
                            old.live_version.as_deref().unwrap_or("absent"),
                            new.live_version.as_deref().unwrap_or("absent"),
                        ));
                    } else if new.changed != old.changed || !same_after(&fp, old, new) {
                        problems.push(format!("{}: the planned values changed", old.address));
                    }
                }
            }
        }
        for new in &fresh.plan.changes {
            if !saved_by_addr.contains(&new.address) && new.action.is_change() {
                problems.push(format!("{}: now needs {:?}, not in the saved plan", new.address, new.action));
            }
        }
        if !problems.is_empty() {
            return Err(super::error(format!(
                "the saved plan is stale, refusing to apply it:\n  {}\nrun plan again",
                problems.join("\n  ")
            )));
        }
        Ok(fresh)
    }
}

fn same_after(
    fp: &crate::secrets::Fingerprinter,
    a: &crate::plan::ResourceChange,
    b: &crate::plan::ResourceChange,
) -> bool {
    match (&a.after, &b.after) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && (fp.same(va, vb) || (va.has_unknown() && vb.has_unknown())))
        }
        _ => false,
    }
}
