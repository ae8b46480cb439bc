//! `plan`: read everything live and say what apply would do; optionally save the plan.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Loaded, OpError, resolve_targets};
use crate::address::Target;
use crate::engine::{Cancel, Hook, PlanOptions};
use crate::plan::Plan;

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Plan to destroy everything managed.
    pub destroy: bool,
    /// `--target`: only these and what they depend on.
    pub targets: Vec<Target>,
    /// `--replace`: replace these even if nothing changed.
    pub replace: Vec<Target>,
    /// `--exclude`: leave these out, with everything that depends on them.
    pub exclude: Vec<Target>,
    /// How many resources are read at once.
    pub parallelism: usize,
    /// How long to wait for the state lock (taken only to write a new, empty state).
    pub lock_timeout: Duration,
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest {
            destroy: false,
            targets: Vec::new(),
            replace: Vec::new(),
            exclude: Vec::new(),
            parallelism: 10,
            lock_timeout: Duration::ZERO,
        }
    }
}

impl PlanRequest {
    /// The engine's options, with every target resolved against the spec and `state`.
    pub fn options(&self, loaded: &Loaded, state: &crate::state::State) -> Result<PlanOptions, OpError> {
        Ok(PlanOptions {
            destroy: self.destroy,
            targets: resolve_targets(loaded, state, &self.targets)?,
            replace: resolve_targets(loaded, state, &self.replace)?,
            exclude: resolve_targets(loaded, state, &self.exclude)?,
        })
    }
}

/// What `plan` made.
pub struct Planned {
    /// The plan (secrets wrapped, not redacted: render it masked).
    pub plan: Plan,
    /// Where it was saved (`--out`).
    pub saved: Option<PathBuf>,
}

/// Plans without the lock (an apply may hold it: the plan is then of the state as it was).
/// `out`: also save the plan, redacted, for `apply FILE`; a state that was never written is
/// written first (empty), so the saved plan names its lineage.
pub async fn plan(loaded: &Loaded, req: &PlanRequest, out: Option<PathBuf>) -> Result<Planned, OpError> {
    let ctx = loaded.context(Arc::new(crate::engine::events::NoHook) as Arc<dyn Hook>, req.parallelism, Cancel::new());
    let mut session = super::apply::open(loaded, None, req.lock_timeout)?;
    if out.is_some() {
        session.persist_if_new(req.lock_timeout)?;
    }
    let opts = req.options(loaded, &session.state)?;
    let mut planned = session.plan(&ctx, &opts).await?;
    // Recorded in the saved plan too; a deny makes the plan fail (the CLI's exit code), and
    // apply refuses such a plan anyway.
    super::policy::evaluate_plan(loaded, &mut planned.plan)?;
    if let Some(path) = &out {
        let fp = session.state.fingerprinter();
        crate::plan::file::save(path, &planned.plan.redacted(&fp))?;
    }
    Ok(Planned { plan: planned.plan, saved: out })
}
