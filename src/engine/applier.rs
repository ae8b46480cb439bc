//! The applier: executes a plan, in dependency order, with bounded parallelism.
//!
//! It does not re-plan. Each step re-evaluates its resource's configuration from
//! the real results of its dependencies just before it runs, checks that this is
//! compatible with the plan (every value the plan knew is unchanged), calls the
//! provider, checks the result against the plan, and persists the step at once.
//! A failed step skips only what depends on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Context;
use super::checks::{self, Attempts, CheckResult};
use super::diff::{carry_sensitivity, desired_attrs, is_empty, mark_sensitive};
use super::error::StepError;
use super::events::{Event, PROGRESS_INTERVAL};
use super::providers::{ProviderSet, Slot};
use super::scope::{EvalScope, Values};
use super::walker::{Outcome, walk};
use crate::address::Address;
use crate::plan::{Action, Plan, ResourceChange, Summary};
use crate::providers::{ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, Provider, SchemaKind};
use crate::secrets::Fingerprinter;
use crate::spec::eval::eval;
use crate::state::{ResourceState, ResourceStatus, State, StateError, StateRecord, StateWriter};
use crate::timings;
use crate::value::Value;

/// An identity as people write it: a name, a self link, `namespace/name` (Kubernetes objects,
/// Helm releases), or the values of a composite identity joined with `/`; never a JSON object.
pub fn shown_identity(id: &Value) -> String {
    match id.unmarked() {
        Value::Map(m) => {
            let get = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
            match (get("namespace"), get("name")) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                (None, Some(n)) => n,
                // A PostgreSQL grant, as `skyform import` takes it.
                _ if get("role").is_some() && get("member").is_some() => {
                    ["role", "member", "database"].iter().filter_map(|k| get(k)).collect::<Vec<_>>().join("/")
                }
                _ => m.values().filter_map(|v| v.as_str().map(str::to_string)).collect::<Vec<_>>().join("/"),
            }
        }
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Default timeout of one provider operation when the spec sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How an apply went.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// What was done.
    pub summary: Summary,
    /// Failures, by address (no secrets in them).
    pub failures: Vec<(Address, StepError)>,
    /// Writing state failed outside any resource's step (the run's opening records, the
    /// outputs): the apply stopped there, or its outputs are not recorded.
    pub state_failure: Option<StateError>,
    /// Skipped because a dependency failed: (skipped, failed dependency).
    pub skipped: Vec<(Address, Address)>,
    /// Not started because of Ctrl-C.
    pub cancelled: Vec<Address>,
    /// Outputs (secrets wrapped; redact before printing or storing).
    pub outputs: BTreeMap<String, Value>,
    /// The checks run, in the plan's order.
    pub checks: Vec<CheckResult>,
}

impl ApplyReport {
    /// Whether everything planned was done (and every check passed).
    pub fn ok(&self) -> bool {
        self.changes_ok() && self.checks.iter().all(|c| c.passed)
    }

    /// Whether every change planned was done (whatever the checks said).
    pub fn changes_ok(&self) -> bool {
        self.failures.is_empty() && self.skipped.is_empty() && self.cancelled.is_empty() && self.state_failure.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Main,
    Delete,
}

/// One vertex of the apply walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A phase of the change at this index of the plan.
    Change(usize, Phase),
    /// The check at this index of the plan's checks.
    Check(usize),
}

struct Shared {
    ctx: Context,
    plan: Plan,
    prior: BTreeMap<Address, ResourceState>,
    fp: Fingerprinter,
    writer: Arc<dyn StateWriter>,
    values: Values,
    providers: ProviderSet,
    done: Mutex<Summary>,
    /// What providers last said about operations still running (`Checkpoint::progress`).
    status: Mutex<BTreeMap<Address, String>>,
    /// The results of the checks run, by index in the plan's checks.
    checks: Mutex<BTreeMap<usize, CheckResult>>,
}

/// Applies `plan` (made against `state`), writing each finished step through
/// `writer`.
pub async fn apply(ctx: &Context, plan: &Plan, state: &State, writer: Arc<dyn StateWriter>) -> ApplyReport {
    // The plan was made against the state with its moves and removals done:
    // record them first (each move is one upsert at the new address and one
    // removal of the old; a crash in between leaves the object recorded twice,
    // which the next plan's moves resolve, never zero times).
    let mut moved = super::refactor::apply_moves(state, &plan.moved, &plan.dropped);
    for a in &plan.forget {
        moved.resources.remove(a);
    }
    let mut early: Vec<StateRecord> = plan.dropped.iter().map(|a| StateRecord::Remove { address: a.clone() }).collect();
    for (from, to) in &plan.moved {
        if let Some(r) = moved.resources.get(to) {
            early.push(StateRecord::Upsert { address: to.clone(), resource: r.clone() });
            early.push(StateRecord::Remove { address: from.clone() });
        }
    }
    early.extend(plan.forget.iter().map(|a| StateRecord::Remove { address: a.clone() }));
    let state = &moved;
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        plan: plan.clone(),
        prior: state.resources.clone(),
        fp: state.fingerprinter(),
        writer,
        values: Values::default(),
        providers: ProviderSet::default(),
        done: Mutex::new(Summary::default()),
        status: Mutex::new(BTreeMap::new()),
        checks: Mutex::new(BTreeMap::new()),
    });
    let mut report = ApplyReport::default();
    for rec in std::iter::once(StateRecord::Serial { serial: state.serial + 1 }).chain(early) {
        if let Err(e) = shared.writer.record(&rec) {
            ctx.hook.event(&Event::StateFailed { message: e.to_string() });
            report.state_failure = Some(e);
            return report;
        }
    }

    // Resources that are only deleted have no main step: their last known
    // values stand in, so that a provider configured from one of them (the
    // Kubernetes provider of a cluster being destroyed) can still be built.
    for c in &plan.changes {
        if c.action == Action::Delete
            && let Some(before) = &c.before
        {
            shared.values.set(&c.address, Value::Map(before.clone()));
        }
    }
    let (steps, deps) = build_steps(plan, |c| ctx.graph.data_dependencies(&c.address, &c.provider));
    let steps = Arc::new(steps);
    let outcomes = walk(&deps, ctx.parallelism, &ctx.cancel, |i| {
        let shared = shared.clone();
        let steps = steps.clone();
        async move {
            match steps[i] {
                Step::Change(ci, phase) => run_step(&shared, ci, phase).await,
                Step::Check(k) => {
                    run_check(&shared, k).await;
                    Ok(())
                }
            }
        }
    })
    .await;

    // Steps left running on Ctrl-C: what depends on them is not started, as
    // after any interruption (not "skipped because it failed").
    let interrupted: Vec<bool> =
        outcomes.iter().map(|o| matches!(o, Outcome::Failed(StepError::Interrupted))).collect();
    let change_at = |i: usize| match steps[i] {
        Step::Change(ci, _) => &plan.changes[ci],
        Step::Check(_) => unreachable!("checks have no dependents"),
    };
    for (i, o) in outcomes.into_iter().enumerate() {
        let o = match o {
            Outcome::Skipped(root) if interrupted[root] => Outcome::Cancelled,
            o => o,
        };
        let ci = match steps[i] {
            Step::Change(ci, _) => ci,
            Step::Check(k) => {
                let pc = &plan.checks[k];
                let ran = shared.checks.lock().expect("checks lock").remove(&k);
                let result = ran.unwrap_or_else(|| {
                    let message = match &o {
                        Outcome::Skipped(root) => {
                            let because = change_at(*root).address.clone();
                            ctx.hook.event(&Event::CheckSkipped { name: pc.name.clone(), because_of: because.clone() });
                            format!("not run: {because} failed")
                        }
                        _ => "not run: the apply was interrupted".to_string(),
                    };
                    CheckResult::not_run(&pc.name, &pc.target, message)
                });
                report.checks.push(result);
                continue;
            }
        };
        let c = &plan.changes[ci];
        match o {
            Outcome::Done => {}
            Outcome::Failed(StepError::Interrupted) => {
                if !report.cancelled.contains(&c.address) {
                    report.cancelled.push(c.address.clone());
                }
            }
            Outcome::Failed(e) => report.failures.push((c.address.clone(), e)),
            Outcome::Skipped(root) => {
                let because = change_at(root).address.clone();
                ctx.hook.event(&Event::Skipped { address: c.address.clone(), because_of: because.clone() });
                if !report.skipped.iter().any(|(a, _)| a == &c.address) {
                    report.skipped.push((c.address.clone(), because));
                }
            }
            Outcome::Cancelled => {
                if c.action.is_change() {
                    ctx.hook.event(&Event::Cancelled { address: c.address.clone() });
                    if !report.cancelled.contains(&c.address) {
                        report.cancelled.push(c.address.clone());
                    }
                }
            }
        }
    }
    report.summary = *shared.done.lock().expect("summary lock");

    if report.changes_ok() && !plan.destroy {
        let scope = EvalScope { vars: &ctx.vars, values: &shared.values, dir: ctx.spec.dir.clone() };
        for (name, o) in &ctx.spec.outputs {
            if let Ok(v) = eval(&o.value, &scope) {
                report.outputs.insert(name.clone(), if o.sensitive { v.sensitive() } else { v });
            }
        }
        let redacted = report.outputs.iter().map(|(k, v)| (k.clone(), shared.fp.redact(v))).collect();
        if let Err(e) = shared.writer.record(&StateRecord::Outputs { outputs: redacted }) {
            ctx.hook.event(&Event::StateFailed { message: e.to_string() });
            report.state_failure = Some(e);
        }
    } else if plan.destroy && report.changes_ok() {
        let _ = shared.writer.record(&StateRecord::Outputs { outputs: BTreeMap::new() });
    }
    ctx.hook.event(&Event::Complete {
        summary: report.summary,
        failed: report.failures.len() + report.checks.iter().filter(|c| !c.passed).count(),
    });
    report
}

/// Turns the plan into steps and their dependencies.
///
/// Every change has a main step (create/update/no-op/read) unless it is a pure
/// delete; deletes and the delete half of a replacement are separate steps.
/// - main(A) after main(B) when A depends on B;
/// - delete(A) before delete(B) when A depends on B (reverse order);
/// - delete-then-create: delete(A) before main(A);
/// - create-then-delete: main(A) before delete(A), and delete(A) after the main
///   step of everything that depends on A (they move to the new object first).
/// - check(K) after the main step of every resource K waits for;
/// - every step of A after the main step (the read) of each data source A reads,
///   directly or through its provider's configuration (`reads`): state keeps no
///   data source among a resource's dependencies, so the plan's do not say it.
fn build_steps(plan: &Plan, reads: impl Fn(&ResourceChange) -> Vec<Address>) -> (Vec<Step>, Vec<Vec<usize>>) {
    let mut steps = Vec::new();
    let mut main_of: BTreeMap<&Address, usize> = BTreeMap::new();
    let mut del_of: BTreeMap<&Address, usize> = BTreeMap::new();
    for (ci, c) in plan.changes.iter().enumerate() {
        if c.action != Action::Delete {
            main_of.insert(&c.address, steps.len());
            steps.push(Step::Change(ci, Phase::Main));
        }
        if matches!(c.action, Action::Delete | Action::DeleteThenCreate | Action::CreateThenDelete) {
            del_of.insert(&c.address, steps.len());
            steps.push(Step::Change(ci, Phase::Delete));
        }
    }
    let first_check = steps.len();
    steps.extend((0..plan.checks.len()).map(Step::Check));
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (k, pc) in plan.checks.iter().enumerate() {
        deps[first_check + k] = pc.after.iter().filter_map(|a| main_of.get(a).copied()).collect();
    }
    for c in &plan.changes {
        let a = &c.address;
        for b in &c.depends_on {
            if let (Some(&ma), Some(&mb)) = (main_of.get(a), main_of.get(b)) {
                deps[ma].push(mb);
            }
            if let (Some(&da), Some(&db)) = (del_of.get(a), del_of.get(b)) {
                deps[db].push(da);
            }
            // The old B may go only once A has moved to the new B.
            if let (Some(&ma), Some(&db)) = (main_of.get(a), del_of.get(b))
                && plan.get(b).is_some_and(|x| x.action == Action::CreateThenDelete)
            {
                deps[db].push(ma);
            }
        }
        match c.action {
            Action::DeleteThenCreate => deps[main_of[a]].push(del_of[a]),
            Action::CreateThenDelete => deps[del_of[a]].push(main_of[a]),
            _ => {}
        }
    }
    // The reads come last, and only if they leave the walk acyclic (a data source read from a
    // resource that is replaced while another resource it configures is deleted could close a
    // loop): without them a step may configure its provider before the read, and says so.
    let mut with_reads = deps.clone();
    for c in &plan.changes {
        for d in reads(c) {
            let Some(&md) = main_of.get(&d) else { continue };
            for step in [main_of.get(&c.address), del_of.get(&c.address)].into_iter().flatten() {
                with_reads[*step].push(md);
            }
        }
    }
    if acyclic(&with_reads) {
        deps = with_reads;
    }
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    (steps, deps)
}

/// Whether the steps' dependencies have no cycle (Kahn's algorithm).
fn acyclic(deps: &[Vec<usize>]) -> bool {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); deps.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..deps.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(j);
            }
        }
    }
    done == deps.len()
}

/// Runs the plan's check `k` (the spec's block of that name) and keeps its result.
async fn run_check(s: &Shared, k: usize) {
    let pc = &s.plan.checks[k];
    let result = match s.ctx.spec.checks.get(&pc.name) {
        Some(block) => checks::run(&s.ctx, &s.providers, &s.values, block, &pc.after, Attempts::UntilTimeout).await,
        None => CheckResult::not_run(
            &pc.name,
            &pc.target,
            "the plan lists it, but the spec has no such check; run plan again",
        ),
    };
    s.checks.lock().expect("checks lock").insert(k, result);
}

async fn run_step(s: &Shared, ci: usize, phase: Phase) -> Result<(), StepError> {
    let c = &s.plan.changes[ci];
    timings::for_subject(&c.address, step(s, c, phase)).await
}

async fn step(s: &Shared, c: &ResourceChange, phase: Phase) -> Result<(), StepError> {
    match (phase, c.action) {
        (Phase::Main, Action::NoOp) => {
            s.values.set(&c.address, Value::Map(c.after.clone().unwrap_or_default()));
            Ok(())
        }
        (Phase::Main, Action::Read) => {
            let _read = timings::span("read", String::new);
            read_data(s, c).await
        }
        (Phase::Main, Action::Adopt) if c.changed.is_empty() => adopt(s, c),
        (Phase::Main, _) => timed(s, c, c.action, create_or_update(s, c)).await,
        (Phase::Delete, _) => {
            let action = if c.action == Action::Delete { Action::Delete } else { c.action };
            timed(s, c, action, delete(s, c)).await
        }
    }
}

/// Runs one provider operation with start/progress/finish events.
async fn timed<F>(s: &Shared, c: &ResourceChange, action: Action, op: F) -> Result<(), StepError>
where
    F: std::future::Future<Output = Result<Option<String>, StepError>>,
{
    let hook = &s.ctx.hook;
    let a = &c.address;
    hook.event(&Event::Started { address: a.clone(), action });
    let _apply = timings::span("apply", || format!("{action:?}").to_lowercase());
    let start = Instant::now();
    tokio::pin!(op);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
    let result = loop {
        tokio::select! {
            r = &mut op => break r,
            _ = tick.tick() => hook.event(&Event::Progress {
                address: a.clone(),
                action,
                elapsed_secs: start.elapsed().as_secs(),
                detail: s.status.lock().expect("status lock").get(a).cloned(),
            }),
        }
    };
    match result {
        Ok(id) => {
            hook.event(&Event::Finished {
                address: a.clone(),
                action,
                elapsed_ms: start.elapsed().as_millis() as u64,
                id,
            });
            Ok(())
        }
        Err(StepError::Interrupted) => {
            hook.event(&Event::Interrupted { address: a.clone(), action });
            Err(StepError::Interrupted)
        }
        Err(e) => {
            hook.event(&Event::Failed { address: a.clone(), action, message: e.to_string() });
            Err(e)
        }
    }
}

async fn provider(s: &Shared, c: &ResourceChange) -> Result<Arc<dyn Provider>, StepError> {
    match s.providers.get(&s.ctx, &s.values, &c.provider).await {
        Slot::Configured(p) => Ok(p),
        Slot::Failed(e) => Err(e.into()),
        Slot::Deferred(waiting) => Err(StepError::ProviderDeferred { provider: c.provider.clone(), waiting }),
    }
}

fn count(s: &Shared, action: Action) {
    let mut d = s.done.lock().expect("summary lock");
    match action {
        Action::Create | Action::Adopt => d.add += 1,
        Action::Update => d.change += 1,
        Action::DeleteThenCreate | Action::CreateThenDelete => d.replace += 1,
        Action::Delete => d.destroy += 1,
        Action::NoOp | Action::Read => {}
    }
}

fn record(s: &Shared, rec: StateRecord) -> Result<(), StepError> {
    Ok(s.writer.record(&rec)?)
}

fn upsert(
    s: &Shared,
    c: &ResourceChange,
    identity: Value,
    attrs: &BTreeMap<String, Value>,
    private: Value,
    status: ResourceStatus,
) -> Result<(), StepError> {
    let resource = ResourceState {
        provider: c.provider.clone(),
        identity: s.fp.redact(&identity),
        attrs: attrs.iter().map(|(k, v)| (k.clone(), s.fp.redact(v))).collect(),
        dependencies: c.depends_on.clone(),
        private,
        status,
    };
    record(s, StateRecord::Upsert { address: c.address.clone(), resource })
}

fn adopt(s: &Shared, c: &ResourceChange) -> Result<(), StepError> {
    let attrs = c.before.clone().unwrap_or_default();
    upsert(s, c, c.identity.clone().unwrap_or_default(), &attrs, c.private.clone(), ResourceStatus::Ready)?;
    s.values.set(&c.address, Value::Map(c.after.clone().unwrap_or_default()));
    count(s, Action::Adopt);
    s.ctx.hook.event(&Event::Finished {
        address: c.address.clone(),
        action: Action::Adopt,
        elapsed_ms: 0,
        id: c.identity.as_ref().map(shown_identity),
    });
    Ok(())
}

async fn read_data(s: &Shared, c: &ResourceChange) -> Result<(), StepError> {
    let block = &s.ctx.spec.resources[&c.address];
    let scope = EvalScope { vars: &s.ctx.vars, values: &s.values, dir: s.ctx.spec.dir.clone() };
    let args = eval(&block.body, &scope).map_err(evaluation)?;
    let p = provider(s, c).await?;
    let v = p.read_data(&c.address.type_name, &args).await?;
    let mut attrs = v.as_map().cloned().unwrap_or_default();
    if let Some(schema) = s.ctx.registry.type_schema(SchemaKind::Data, &c.address.type_name) {
        mark_sensitive(schema, &mut attrs);
    }
    s.values.set(&c.address, Value::Map(attrs));
    Ok(())
}

/// Records a pending operation in state before the provider waits on it.
struct StateCheckpoint<'a> {
    s: &'a Shared,
    change: &'a ResourceChange,
    /// Whether the call creates an object.
    creating: bool,
    /// Whether a pending operation is durable in state (so the wait for it may
    /// be abandoned on Ctrl-C).
    recorded: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Checkpoint for StateCheckpoint<'_> {
    fn pending(&self, identity: &Value, private: &Value) {
        // A create (also the create half of a replacement) records no
        // attributes: the next plan then resumes it as a create, whose computed
        // values are unknown until it finishes. An update or delete keeps the
        // last-applied ones.
        let prior = if self.creating {
            BTreeMap::new()
        } else {
            self.s.prior.get(&self.change.address).map(|p| p.attrs.clone()).unwrap_or_default()
        };
        // Best effort by design: if this write fails the operation still runs,
        // and a later run adopts the object by its identity instead of resuming.
        if upsert(self.s, self.change, identity.clone(), &prior, private.clone(), ResourceStatus::Pending).is_ok() {
            self.recorded.store(true, Ordering::SeqCst);
            self.notify.notify_waiters();
        }
    }

    fn progress(&self, status: &str) {
        self.s.status.lock().expect("status lock").insert(self.change.address.clone(), status.to_string());
    }
}

async fn create_or_update(s: &Shared, c: &ResourceChange) -> Result<Option<String>, StepError> {
    let a = &c.address;
    let block = &s.ctx.spec.resources[a];
    let schema = s
        .ctx
        .registry
        .type_schema(SchemaKind::Resource, &a.type_name)
        .ok_or_else(|| StepError::UnknownType(a.type_name.clone()))?;
    let scope = EvalScope { vars: &s.ctx.vars, values: &s.values, dir: s.ctx.spec.dir.clone() };
    let body = eval(&block.body, &scope).map_err(evaluation)?;
    // Names that were unknown at plan time are checked now that they are known (a name from a
    // resource created in this run): a hostile value never reaches an API.
    let bad = crate::spec::validate::check_values(&schema.attributes, &block.body, &body, &a.to_string());
    if bad.has_errors() {
        return Err(evaluation(bad));
    }
    let desired = desired_attrs(schema, &body);
    if let Some((k, _)) = desired.iter().find(|(_, v)| v.has_unknown()) {
        return Err(StepError::StillUnknown(k.clone()));
    }
    // The plan is a promise: every value it showed as known must be what we
    // are about to apply.
    if let Some(after) = &c.after {
        for (k, planned) in after {
            let Some(attr) = schema.attr(k) else { continue };
            // An attribute the spec does not set is not managed: the plan took
            // it from the live object, which is no promise about the spec.
            if !attr.settable() || planned.has_unknown() || !desired.contains_key(k) {
                continue;
            }
            let now = desired.get(k).cloned().unwrap_or(Value::Null);
            if !s.fp.same(planned, &now) {
                return Err(StepError::ChangedSincePlan {
                    attribute: k.clone(),
                    planned: planned.to_string(),
                    now: now.to_string(),
                });
            }
        }
    }
    let p = provider(s, c).await?;
    let (action, identity) = match c.action {
        Action::Update | Action::Adopt => (ApplyAction::Update, c.identity.clone()),
        Action::Create => (ApplyAction::Create, c.identity.clone()),
        // The old object is (or will be) deleted by the delete step.
        _ => (ApplyAction::Create, None),
    };
    let timeout_key = if action == ApplyAction::Create { "create" } else { "update" };
    let timeout = block.timeouts.get(timeout_key).map(|s| Duration::from_secs(*s)).unwrap_or(DEFAULT_TIMEOUT);
    let prior = s.prior.get(a).map(|p| p.attrs.clone());
    let req = ApplyRequest {
        address: a.clone(),
        type_name: a.type_name.clone(),
        action,
        identity,
        config: Value::Map(desired.clone()),
        prior,
        changed: c.changed.clone(),
        private: c.private.clone(),
        timeout,
    };
    let resp = call(s, c, p.as_ref(), &req).await?;
    let mut attrs = resp.attrs;
    mark_sensitive(schema, &mut attrs);
    carry_sensitivity(&desired, &mut attrs);
    for attr in schema.attributes.iter().filter(|x| x.write_only) {
        match desired.get(attr.name) {
            Some(v) => attrs.insert(attr.name.to_string(), v.clone()),
            None => attrs.remove(attr.name),
        };
    }
    // Record first (the object exists whatever we think of it), then judge.
    upsert(s, c, resp.identity.clone(), &attrs, resp.private, ResourceStatus::Ready)?;
    s.values.set(a, Value::Map(attrs.clone()));
    if let Some(after) = &c.after {
        for (k, planned) in after {
            let Some(attr) = schema.attr(k) else { continue };
            if !attr.settable() || attr.write_only || planned.has_unknown() {
                continue;
            }
            if let Some(got) = attrs.get(k)
                && !s.fp.same(planned, got)
                && !(is_empty(planned) && is_empty(got))
            {
                return Err(StepError::Inconsistent {
                    attribute: k.clone(),
                    planned: planned.to_string(),
                    got: got.to_string(),
                });
            }
        }
    }
    count(s, c.action);
    Ok(Some(shown_identity(&resp.identity)))
}

/// Calls the provider with a checkpoint into state, bounded by the operation's
/// timeout (plus a grace period for the provider's own timeout handling).
///
/// On Ctrl-C, a call that has recorded a pending operation in state stops
/// waiting for it (the operation goes on at the API; the next run resumes it
/// from state). A call that has not is left to finish: it is a short request,
/// and stopping it half-way could leave an object that state knows nothing of.
async fn call(
    s: &Shared,
    c: &ResourceChange,
    p: &dyn Provider,
    req: &ApplyRequest,
) -> Result<ApplyResponse, StepError> {
    let checkpoint = StateCheckpoint {
        s,
        change: c,
        creating: req.action == ApplyAction::Create,
        recorded: AtomicBool::new(false),
        notify: tokio::sync::Notify::new(),
    };
    let work = tokio::time::timeout(req.timeout + Duration::from_secs(30), p.apply(req, &checkpoint));
    tokio::pin!(work);
    let abandon = async {
        s.ctx.cancel.cancelled().await;
        loop {
            let notified = checkpoint.notify.notified();
            if checkpoint.recorded.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    };
    tokio::select! {
        r = &mut work => match r {
            Ok(r) => Ok(r?),
            Err(_) => Err(StepError::Timeout(req.timeout)),
        },
        () = abandon => Err(StepError::Interrupted),
    }
}

/// The diagnostics of an evaluation, as a step's error.
fn evaluation(d: crate::diag::Diagnostics) -> StepError {
    StepError::Evaluation(d.to_string().trim().to_string())
}

async fn delete(s: &Shared, c: &ResourceChange) -> Result<Option<String>, StepError> {
    let a = &c.address;
    let already_gone = c.live_version.is_none() && c.notes.iter().any(|n| n.starts_with("already gone"));
    if !already_gone {
        let p = provider(s, c).await?;
        let timeout = s
            .ctx
            .spec
            .resources
            .get(a)
            .and_then(|b| b.timeouts.get("delete"))
            .map(|x| Duration::from_secs(*x))
            .unwrap_or(DEFAULT_TIMEOUT);
        let req = ApplyRequest {
            address: a.clone(),
            type_name: a.type_name.clone(),
            action: ApplyAction::Delete,
            identity: c.identity.clone(),
            config: Value::Map(c.before.clone().unwrap_or_default()),
            prior: s.prior.get(a).map(|p| p.attrs.clone()),
            changed: vec![],
            private: c.private.clone(),
            timeout,
        };
        call(s, c, p.as_ref(), &req).await?;
    }
    // After create-then-delete the record already describes the new object.
    if c.action != Action::CreateThenDelete {
        record(s, StateRecord::Remove { address: a.clone() })?;
    }
    if c.action == Action::Delete {
        count(s, Action::Delete);
    }
    Ok(c.identity.as_ref().map(shown_identity))
}

#[cfg(test)]
mod identity_tests {
    use super::{acyclic, shown_identity};
    use crate::value::Value;

    #[test]
    fn identities_print_as_people_write_them() {
        assert_eq!(shown_identity(&Value::str("p/us-central1/sky")), "p/us-central1/sky");
        let secret = Value::map([
            ("api_version", Value::str("v1")),
            ("kind", Value::str("Secret")),
            ("namespace", Value::str("skypilot")),
            ("name", Value::str("skypilot-db-connection-uri")),
        ]);
        assert_eq!(shown_identity(&secret), "skypilot/skypilot-db-connection-uri");
        let ns = Value::map([
            ("api_version", Value::str("v1")),
            ("kind", Value::str("Namespace")),
            ("name", Value::str("skypilot")),
        ]);
        assert_eq!(shown_identity(&ns), "skypilot");
        let grant = Value::map([("member", Value::str("sa@p.iam")), ("role", Value::str("cloudsqlsuperuser"))]);
        assert_eq!(shown_identity(&grant), "cloudsqlsuperuser/sa@p.iam");
    }

    #[test]
    fn cycles_in_step_dependencies_are_found() {
        assert!(acyclic(&[vec![], vec![0], vec![0, 1, 1]]));
        assert!(!acyclic(&[vec![2], vec![0], vec![1]]));
        assert!(!acyclic(&[vec![], vec![1]]));
    }
}
