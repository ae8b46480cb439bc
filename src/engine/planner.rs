//! The planner: reads every resource live, diffs, and produces a plan. It never
//! mutates anything.
//!
//! Resources are visited in dependency order (in parallel, bounded), so that each
//! one's configuration is evaluated with the planned values of what it references:
//! known where the referenced object exists and does not change, unknown where it
//! is created or replaced in this run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::diff::{carry_sensitivity, compare, desired_attrs, mark_sensitive, planned_after};
use super::providers::{ProviderSet, Slot};
use super::scope::{EvalScope, Values};
use super::walker::{Outcome, walk};
use super::{Context, PlanOptions};
use crate::address::{Address, Mode};
use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::{Node, provider_of};
use crate::plan::{Action, PLAN_FORMAT, Plan, Reason, ResourceChange};
use crate::providers::{ApplyAction, LiveObject, PlanRequest, ReadRequest, SchemaKind};
use crate::secrets::Fingerprinter;
use crate::spec::eval::eval;
use crate::state::{ResourceState, ResourceStatus, State};
use crate::timings;
use crate::value::Value;

/// What planning saw of one resource (drift detection uses it).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The live object, if it exists and could be read.
    pub live: Option<LiveObject>,
    /// The desired attributes (with defaults), if the resource is in the spec.
    pub desired: Option<BTreeMap<String, Value>>,
    /// The last-applied record, if any.
    pub prior: Option<ResourceState>,
    /// Whether the live object could not be read because its provider is
    /// configured only during apply.
    pub deferred: bool,
}

/// A plan and what was observed to make it.
pub struct PlanOutput {
    /// The plan (in memory: secrets wrapped, not redacted).
    pub plan: Plan,
    /// Per resource.
    pub observations: BTreeMap<Address, Observation>,
    /// Resource values as planned (for outputs).
    pub values: Values,
}

struct Shared {
    ctx: Context,
    state: Arc<State>,
    opts: PlanOptions,
    fp: Fingerprinter,
    values: Values,
    providers: ProviderSet,
    changes: Mutex<BTreeMap<Address, ResourceChange>>,
    needs_fresh: Mutex<BTreeSet<Address>>,
    observations: Mutex<BTreeMap<Address, Observation>>,
}

type NodeResult = Result<(), Diagnostics>;

/// Plans `ctx.spec` against `state`.
///
/// When a change needs the clear value of a secret that state keeps only as a
/// fingerprint, the resource holding that secret is replaced (a new key for a
/// Secret that lost the old one): the plan is made once more with it added to
/// the `--replace` set.
pub async fn plan(ctx: &Context, state: &State, opts: &PlanOptions) -> Result<PlanOutput, Diagnostics> {
    // `[[moved]]` and `[[removed]]` first: the plan is made against the state
    // as it will be once they are recorded.
    let moves = super::refactor::plan_moves(&ctx.spec, state)?;
    let mut moved_state = super::refactor::apply_moves(state, &moves.moves, &moves.dropped);
    let forget = super::refactor::forgotten(&ctx.spec, &moved_state)?;
    if !opts.destroy {
        check_imports(ctx)?;
    }
    for a in &forget {
        moved_state.resources.remove(a);
    }
    let mut out = plan_refactored(ctx, &moved_state, opts).await?;
    out.plan.moved = moves.moves;
    out.plan.forget = forget;
    out.plan.dropped = moves.dropped;
    Ok(out)
}

/// Every `[[import]]` must name a resource of the spec.
fn check_imports(ctx: &Context) -> Result<(), Diagnostics> {
    let mut d = Diagnostics::default();
    for i in &ctx.spec.imports {
        if !ctx.spec.resources.contains_key(&i.to.node) {
            d.push(
                Diagnostic::error(
                    Some(i.to.pos.clone()),
                    format!("`[[import]]` to `{}`, which is not in the spec", i.to.node),
                )
                .with_hint("add the resource's block (with the settings the object should have), then import it"),
            );
        }
    }
    if d.has_errors() { Err(d) } else { Ok(()) }
}

async fn plan_refactored(ctx: &Context, state: &State, opts: &PlanOptions) -> Result<PlanOutput, Diagnostics> {
    let (out, fresh) = plan_once(ctx, state, opts).await?;
    let missing: Vec<Address> = fresh.into_iter().filter(|a| !opts.replace.contains(a)).collect();
    if missing.is_empty() || opts.destroy {
        return Ok(out);
    }
    let mut again = opts.clone();
    again.replace.extend(missing.iter().cloned());
    let (mut out, _) = plan_once(ctx, state, &again).await?;
    out.plan.replace = opts.replace.clone();
    for c in &mut out.plan.changes {
        if missing.contains(&c.address) {
            c.reason = Some(Reason::ReplaceBecauseSecretUnavailable);
        }
    }
    Ok(out)
}

fn has_redacted(v: &Value) -> bool {
    match v {
        Value::Redacted(_) => true,
        Value::Sensitive(x) => has_redacted(x),
        Value::List(l) => l.iter().any(has_redacted),
        Value::Map(m) => m.values().any(has_redacted),
        _ => false,
    }
}

async fn plan_once(
    ctx: &Context,
    state: &State,
    opts: &PlanOptions,
) -> Result<(PlanOutput, BTreeSet<Address>), Diagnostics> {
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        state: Arc::new(state.clone()),
        opts: opts.clone(),
        fp: state.fingerprinter(),
        values: Values::default(),
        providers: ProviderSet::default(),
        changes: Mutex::new(BTreeMap::new()),
        needs_fresh: Mutex::new(BTreeSet::new()),
        observations: Mutex::new(BTreeMap::new()),
    });

    // Which nodes take part: everything, or the targets and what they need.
    let order = ctx.graph.topo_order();
    let included: BTreeSet<Node> = if opts.targets.is_empty() {
        order.iter().cloned().collect()
    } else {
        let roots: Vec<Node> = opts.targets.iter().map(|a| Node::Resource(a.clone())).collect();
        ctx.graph.closure_of(&roots)
    };
    // `--exclude`: the named resources and everything that depends on them (in topological
    // order, a node is out when any of its dependencies is).
    let mut excluded: BTreeSet<Node> = BTreeSet::new();
    if !opts.exclude.is_empty() {
        for n in &order {
            let named = matches!(n, Node::Resource(a) if opts.exclude.contains(a));
            if named || ctx.graph.dependencies(n).iter().any(|d| excluded.contains(d)) {
                excluded.insert(n.clone());
            }
        }
    }
    let nodes: Vec<Node> = order.into_iter().filter(|n| included.contains(n) && !excluded.contains(n)).collect();
    let index: BTreeMap<&Node, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| ctx.graph.dependencies(n).iter().filter_map(|d| index.get(d).copied()).collect())
        .collect();

    let nodes_arc = Arc::new(nodes.clone());
    let outcomes = walk(&deps, ctx.parallelism, &ctx.cancel, |i| {
        let shared = shared.clone();
        let nodes = nodes_arc.clone();
        async move {
            match &nodes[i] {
                Node::Provider(name) => plan_provider(&shared, name).await,
                Node::Resource(a) if a.mode == Mode::Data => timings::for_subject(a, plan_data(&shared, a)).await,
                Node::Resource(a) => timings::for_subject(a, plan_resource(&shared, a)).await,
            }
        }
    })
    .await;

    let mut diags = Diagnostics::default();
    for (i, o) in outcomes.into_iter().enumerate() {
        match o {
            Outcome::Done | Outcome::Skipped(_) => {}
            Outcome::Failed(d) => diags.extend(d),
            Outcome::Cancelled => {
                diags.push(Diagnostic::error(None, format!("{}: planning cancelled", nodes[i])));
            }
        }
    }

    // Resources in state that are gone from the spec.
    let orphans: Vec<Address> = state
        .resources
        .keys()
        .filter(|a| !ctx.spec.resources.contains_key(a))
        .filter(|a| opts.targets.is_empty() || opts.targets.contains(a))
        .filter(|a| !opts.exclude.contains(a))
        .cloned()
        .collect();
    let orphan_deps: Vec<Vec<usize>> = orphans.iter().map(|_| Vec::new()).collect();
    let orphans_arc = Arc::new(orphans.clone());
    let outcomes = walk(&orphan_deps, ctx.parallelism, &ctx.cancel, |i| {
        let shared = shared.clone();
        let orphans = orphans_arc.clone();
        async move { timings::for_subject(&orphans[i], plan_orphan(&shared, &orphans[i])).await }
    })
    .await;
    for o in outcomes {
        if let Outcome::Failed(d) = o {
            diags.extend(d);
        }
    }

    let mut changes = std::mem::take(&mut *shared.changes.lock().expect("changes lock"));
    if opts.destroy {
        destroy_changes(&shared, &mut changes, &mut diags);
    }
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }

    // Deterministic order: topological, ties by address (the graph's order),
    // then orphans by address.
    let mut ordered = Vec::with_capacity(changes.len());
    for n in &nodes {
        if let Node::Resource(a) = n
            && let Some(c) = changes.remove(a)
        {
            ordered.push(c);
        }
    }
    ordered.extend(changes.into_values());

    let outputs = if opts.destroy { BTreeMap::new() } else { eval_outputs(&shared, &mut diags) };
    let warnings: Vec<Diagnostic> = diags.warnings().cloned().collect();
    let checks = if opts.destroy {
        Vec::new()
    } else {
        super::checks::planned(ctx, &shared.values, &|a| {
            included.contains(&Node::Resource(a.clone())) && !excluded.contains(&Node::Resource(a.clone()))
        })
    };
    let plan = Plan {
        format_version: PLAN_FORMAT.to_string(),
        lineage: state.lineage.clone(),
        serial: state.serial,
        spec_digest: String::new(),
        destroy: opts.destroy,
        changes: ordered,
        outputs,
        warnings,
        targets: opts.targets.clone(),
        replace: opts.replace.clone(),
        exclude: opts.exclude.clone(),
        moved: Vec::new(),
        forget: Vec::new(),
        dropped: Vec::new(),
        checks,
        variables: BTreeMap::new(),
        providers: BTreeMap::new(),
        policy: None,
    };
    let observations = std::mem::take(&mut *shared.observations.lock().expect("obs lock"));
    let fresh = std::mem::take(&mut *shared.needs_fresh.lock().expect("fresh lock"));
    Ok((PlanOutput { plan, observations, values: shared.values.clone() }, fresh))
}

fn scope<'a>(s: &'a Shared) -> EvalScope<'a> {
    EvalScope { vars: &s.ctx.vars, values: &s.values, dir: s.ctx.spec.dir.clone() }
}

async fn plan_provider(s: &Shared, name: &str) -> NodeResult {
    match s.providers.get(&s.ctx, &s.values, name).await {
        Slot::Failed(e) => {
            let pos = s.ctx.spec.providers.get(name).map(|b| b.pos.clone());
            Err(Diagnostics(vec![Diagnostic::error(pos, e.to_string())]))
        }
        Slot::Configured(_) | Slot::Deferred(_) => Ok(()),
    }
}

fn err_at(s: &Shared, a: &Address, msg: impl Into<String>) -> Diagnostics {
    let pos = s.ctx.spec.resources.get(a).map(|r| r.pos.clone());
    Diagnostics(vec![Diagnostic::error(pos, format!("{a}: {}", msg.into()))])
}

async fn plan_data(s: &Shared, a: &Address) -> NodeResult {
    let block = &s.ctx.spec.resources[a];
    let schema = s
        .ctx
        .registry
        .type_schema(SchemaKind::Data, &a.type_name)
        .ok_or_else(|| err_at(s, a, "unknown data source type"))?;
    let args = eval(&block.body, &scope(s))?;
    let provider = provider_of(&s.ctx.spec, &s.ctx.registry, a);
    let slot = s.providers.get(&s.ctx, &s.values, &provider).await;
    let deferred = |reason: Reason| {
        s.values.set(a, Value::Unknown);
        s.changes.lock().expect("changes lock").insert(
            a.clone(),
            ResourceChange {
                reason: Some(reason),
                ..ResourceChange::new(a.clone(), provider.clone(), Action::Read, s.ctx.graph.resource_dependencies(a))
            },
        );
    };
    match slot {
        Slot::Failed(e) => Err(err_at(s, a, e.to_string())),
        Slot::Deferred(waiting_for) => {
            deferred(Reason::ProviderConfiguredDuringApply { provider: provider.clone(), waiting_for });
            Ok(())
        }
        Slot::Configured(_) if args.has_unknown() => {
            deferred(Reason::ReadBecauseInputsUnknown);
            Ok(())
        }
        Slot::Configured(p) => {
            let read = timings::span("read", String::new);
            let v = p.read_data(&a.type_name, &args).await;
            drop(read);
            let v = v.map_err(|e| err_at(s, a, format!("reading data source: {e}")))?;
            let mut attrs = v.as_map().cloned().unwrap_or_default();
            mark_sensitive(schema, &mut attrs);
            s.values.set(a, Value::Map(attrs.clone()));
            // Recorded as an unchanged entry so that apply hands the same values
            // to the resources that reference it.
            s.changes.lock().expect("changes lock").insert(
                a.clone(),
                ResourceChange {
                    after: Some(attrs),
                    ..ResourceChange::new(
                        a.clone(),
                        provider.clone(),
                        Action::NoOp,
                        s.ctx.graph.resource_dependencies(a),
                    )
                },
            );
            Ok(())
        }
    }
}

/// How long reading one object may take at plan time, unless its block says (`timeouts.read`).
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

async fn plan_resource(s: &Shared, a: &Address) -> NodeResult {
    let block = &s.ctx.spec.resources[a];
    let schema = s
        .ctx
        .registry
        .type_schema(SchemaKind::Resource, &a.type_name)
        .ok_or_else(|| err_at(s, a, "unknown resource type"))?;
    let body = eval(&block.body, &scope(s))?;
    let bad = crate::spec::validate::check_values(&schema.attributes, &block.body, &body, &a.to_string());
    if bad.has_errors() {
        return Err(bad);
    }
    let desired = desired_attrs(schema, &body);
    let prior = s.state.resources.get(a).cloned();
    let provider = provider_of(&s.ctx.spec, &s.ctx.registry, a);
    if s.opts.destroy && prior.is_none() {
        // Destroy deletes what state holds; an object of the spec that state
        // does not hold is left alone, so it is not read (its provider may not
        // even be reachable any more: a database already destroyed).
        s.values.set(a, Value::Map(planned_after(schema, &desired, None, None, true)));
        return Ok(());
    }
    let sensitive_attributes: Vec<String> =
        schema.attributes.iter().filter(|x| x.sensitive || x.sensitive_values).map(|x| x.name.to_string()).collect();
    let mut change = ResourceChange {
        identity: prior.as_ref().map(|p| p.identity.clone()),
        sensitive_attributes,
        ..ResourceChange::new(a.clone(), provider.clone(), Action::NoOp, s.ctx.graph.resource_dependencies(a))
    };

    let p = match s.providers.get(&s.ctx, &s.values, &provider).await {
        Slot::Failed(e) => return Err(err_at(s, a, e.to_string())),
        Slot::Deferred(waiting_for) => {
            // The provider cannot be configured before apply, so nothing can be
            // read: a resource not in state is planned as a create; one already
            // in state is assumed unchanged (and said so).
            if let Some(i) = s.ctx.spec.imports.iter().find(|i| i.to.node == *a).filter(|_| prior.is_none()) {
                return Err(Diagnostics(vec![
                    Diagnostic::error(
                        Some(i.pos.clone()),
                        format!(
                            "`[[import]]` to `{a}`: provider.{provider} is configured only during apply (it depends on {}), \
                             so the object cannot be read now",
                            waiting_for.join(", ")
                        ),
                    )
                    .with_hint("apply once without the import (or with `--target` on what the provider needs), then import"),
                ]));
            }
            let reason = Reason::ProviderConfiguredDuringApply { provider, waiting_for };
            change.reason = Some(reason);
            if let Some(p) = prior.as_ref().filter(|p| p.status == ResourceStatus::Pending) {
                // An operation an interrupted run left: resume it during apply.
                let creating = p.attrs.is_empty();
                change.action = if creating { Action::Create } else { Action::Update };
                change.private = p.private.clone();
                change.after = Some(planned_after(schema, &desired, None, Some(&p.attrs), creating));
                change.reason = Some(Reason::ResumePendingOperation);
            } else if prior.is_none() {
                change.action = Action::Create;
                change.after = Some(planned_after(schema, &desired, None, None, true));
                // Created during apply: it needs the clear value of any secret it holds.
                note_needs_fresh(s, block);
            } else {
                change.after = Some(planned_after(
                    schema,
                    &desired,
                    prior.as_ref().map(|p| &p.attrs),
                    prior.as_ref().map(|p| &p.attrs),
                    false,
                ));
                change.notes.push("not read: its provider is configured only during apply".into());
            }
            s.values.set(a, Value::Map(change.after.clone().unwrap_or_default()));
            s.observations
                .lock()
                .expect("obs lock")
                .insert(a.clone(), Observation { live: None, desired: Some(desired), prior, deferred: true });
            s.changes.lock().expect("changes lock").insert(a.clone(), change);
            return Ok(());
        }
        Slot::Configured(p) => p,
    };

    // A provider-level value an applied object's identity depends on (a GCP `project`) that changed
    // since: the attribute is planned as if the spec had changed it, so a force-new one replaces
    // the object instead of "no changes" against the old one.
    let mut desired = desired;
    let mut moved_defaults = Vec::new();
    for (k, v) in p.config_defaults(&a.type_name) {
        let before = prior.as_ref().and_then(|p| p.attrs.get(&k)).and_then(Value::as_str).map(str::to_string);
        if !desired.contains_key(&k)
            && let Some(before) = before
            && Some(before.as_str()) != v.as_str()
        {
            moved_defaults.push(format!(
                "{k}: {before} → {} (the provider's configuration) forces replacement",
                v.as_str().unwrap_or_default()
            ));
            desired.insert(k, v);
        }
    }

    // `[[import]]`: an object not in state yet is read by the id given.
    let import = match s.ctx.spec.imports.iter().find(|i| i.to.node == *a).filter(|_| prior.is_none()) {
        Some(i) => {
            let id = eval(&i.id, &scope(s))?;
            let Some(id) = id.as_str().map(str::to_string) else {
                return Err(Diagnostics(vec![Diagnostic::error(
                    Some(i.id.pos.clone()),
                    format!("`[[import]]` to `{a}`: `id` must be a string known at plan time"),
                )]));
            };
            let identity = p.import_identity(&a.type_name, &id).map_err(|e| err_at(s, a, format!("import: {e}")))?;
            Some((i, id, identity))
        }
        None => None,
    };
    let req = ReadRequest {
        address: a.clone(),
        type_name: a.type_name.clone(),
        identity: prior.as_ref().map(|p| p.identity.clone()).or_else(|| import.as_ref().map(|(_, _, id)| id.clone())),
        config: Value::Map(desired.clone()),
        private: prior.as_ref().map(|p| p.private.clone()).unwrap_or_default(),
    };
    // A read that never answers must not hang the plan: bounded by the block's `timeouts.read`,
    // else READ_TIMEOUT.
    let read_timeout = block.timeouts.get("read").map(|t| std::time::Duration::from_secs(*t)).unwrap_or(READ_TIMEOUT);
    let read = timings::span("read", String::new);
    let live = tokio::time::timeout(read_timeout, p.read(&req)).await;
    drop(read);
    let mut live = match live {
        Ok(r) => r.map_err(|e| err_at(s, a, format!("reading: {e}")))?,
        Err(_) => return Err(err_at(s, a, format!("reading: no answer within {read_timeout:?} (timeouts.read)"))),
    };
    if let Some((i, id, _)) = &import {
        if live.is_none() {
            return Err(Diagnostics(vec![
                Diagnostic::error(
                    Some(i.pos.clone()),
                    format!("`[[import]]` to `{a}`: there is no {} with id {id:?}", a.type_name),
                )
                .with_hint(
                    "check the id (`skyform import` takes the same form), or remove the block to create it instead",
                ),
            ]));
        }
    }
    if let Some(l) = &mut live {
        mark_sensitive(schema, &mut l.attrs);
        carry_sensitivity(&desired, &mut l.attrs);
    }
    let forced = s.opts.replace.contains(a);
    let ignore = &block.lifecycle.ignore_changes;
    let cbd = block.lifecycle.create_before_destroy;
    let replace_action = if cbd { Action::CreateThenDelete } else { Action::DeleteThenCreate };

    match (&prior, &live) {
        (prior, None) => {
            change.action = Action::Create;
            change.reason = match prior {
                Some(p) if p.status == ResourceStatus::Pending => Some(Reason::ResumePendingOperation),
                Some(_) => Some(Reason::CreateBecauseDeletedOutside),
                None => None,
            };
            if !matches!(prior, Some(p) if p.status == ResourceStatus::Pending) {
                change.identity = None;
            } else {
                change.private = prior.as_ref().map(|p| p.private.clone()).unwrap_or_default();
            }
        }
        (prior, Some(l)) => {
            let d = compare(schema, &desired, &l.attrs, prior.as_ref().map(|p| &p.attrs), ignore, &s.fp);
            change.before = Some(l.attrs.clone());
            change.identity = Some(l.identity.clone());
            change.live_version = Some(l.version.clone());
            change.changed = d.changed;
            change.requires_replace = d.requires_replace;
            // An operation an interrupted run started (recorded as pending), or
            // one still running on the object: the step waits for it and
            // converges. A create that never finished in state is resumed as a
            // create, so that what is computed (an endpoint, an address) stays
            // unknown for its dependents until apply.
            let pending = prior.as_ref().is_some_and(|p| p.status == ResourceStatus::Pending);
            let create_pending = prior.as_ref().is_none_or(|p| p.attrs.is_empty());
            change.action = if !change.requires_replace.is_empty() {
                change.reason =
                    Some(Reason::ReplaceBecauseCannotUpdate { attributes: change.requires_replace.clone() });
                replace_action
            } else if pending || l.in_progress {
                change.reason = Some(Reason::ResumePendingOperation);
                if pending {
                    change.private = prior.as_ref().map(|p| p.private.clone()).unwrap_or_default();
                }
                if create_pending { Action::Create } else { Action::Update }
            } else if prior.is_none() {
                change.reason = Some(match &import {
                    Some((_, id, _)) => Reason::ImportByRequest { id: id.clone() },
                    None => Reason::AdoptBecauseExistsLive,
                });
                Action::Adopt
            } else if change.changed.is_empty() {
                Action::NoOp
            } else {
                Action::Update
            };
        }
    }
    if forced {
        change.action = if live.is_some() { replace_action } else { Action::Create };
        change.reason = Some(Reason::ReplaceByRequest);
    }

    // The provider's refinements (cross-resource checks, restart notes...).
    let mut known = BTreeMap::new();
    if change.action.is_change() {
        let _diff = timings::span("diff", String::new);
        let resp = p
            .plan(&PlanRequest {
                address: a.clone(),
                type_name: a.type_name.clone(),
                config: Value::Map(desired.clone()),
                live: live.clone(),
                prior: prior.as_ref().map(|p| p.attrs.clone()),
                changed: change.changed.clone(),
                action: match change.action {
                    Action::Create => ApplyAction::Create,
                    _ => ApplyAction::Update,
                },
            })
            .await
            .map_err(|e| err_at(s, a, format!("planning: {e}")))?;
        if !resp.errors.is_empty() {
            let mut ds = Diagnostics::default();
            for e in resp.errors {
                ds.push(Diagnostic::error(Some(block.pos.clone()), format!("{a}: {e}")));
            }
            return Err(ds);
        }
        let extra: Vec<String> =
            resp.requires_replace.into_iter().filter(|r| !change.requires_replace.contains(r)).collect();
        if !extra.is_empty() && live.is_some() {
            change.requires_replace.extend(extra);
            change.action = replace_action;
            change.reason = Some(Reason::ReplaceBecauseCannotUpdate { attributes: change.requires_replace.clone() });
        }
        change.notes.extend(resp.notes);
        known = resp.known;
        change.private = match resp.private {
            Value::Null => change.private,
            v => v,
        };
        // Provider warnings are kept as notes on the change.
        change.notes.extend(resp.warnings.into_iter().map(|w| format!("warning: {w}")));
        if change.action.is_replace() {
            change.notes.append(&mut moved_defaults);
        }
    }

    if (change.action.is_replace() || change.action == Action::Delete) && block.lifecycle.prevent_destroy {
        return Err(err_at(
            s,
            a,
            format!(
                "lifecycle.prevent_destroy is set, but the plan would {} it ({})",
                if change.action.is_replace() { "replace" } else { "destroy" },
                change.reason.as_ref().map(|r| r.to_string()).unwrap_or_default()
            ),
        )
        .0
        .into_iter()
        .map(|d| d.with_hint("remove prevent_destroy from the spec first if this is really intended"))
        .collect::<Vec<_>>()
        .into());
    }

    let creating = matches!(change.action, Action::Create) || change.action.is_replace();
    let mut after =
        planned_after(schema, &desired, live.as_ref().map(|l| &l.attrs), prior.as_ref().map(|p| &p.attrs), creating);
    for (k, v) in known {
        if matches!(after.get(&k), Some(Value::Unknown)) {
            after.insert(k, v);
        }
    }
    if change.action.is_change() {
        note_needs_fresh(s, block);
    }
    s.values.set(a, Value::Map(after.clone()));
    change.after = Some(after);
    s.observations
        .lock()
        .expect("obs lock")
        .insert(a.clone(), Observation { live, desired: Some(desired), prior, deferred: false });
    s.changes.lock().expect("changes lock").insert(a.clone(), change);
    Ok(())
}

/// A change that needs the clear value of a secret that exists only in the
/// state as a fingerprint (a private key shown once, at creation) can only be
/// made by creating that secret anew: remember its source.
fn note_needs_fresh(s: &Shared, block: &crate::spec::model::ResourceBlock) {
    for r in block.body.node.references() {
        if let crate::spec::model::Reference::Resource { address, path } = &r.node
            && s.ctx.spec.resources.contains_key(address)
            && address.mode == Mode::Managed
            && s.values.get(address).and_then(|v| v.get_path(path)).is_some_and(|v| has_redacted(&v))
        {
            s.needs_fresh.lock().expect("fresh lock").insert(address.clone());
        }
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Self {
        Diagnostics(v)
    }
}

async fn plan_orphan(s: &Shared, a: &Address) -> NodeResult {
    let rs = s.state.resources[a].clone();
    let mut change = ResourceChange {
        reason: Some(if s.opts.destroy { Reason::DeleteBecauseDestroy } else { Reason::DeleteBecauseNoResourceConfig }),
        before: Some(rs.attrs.clone()),
        identity: Some(rs.identity.clone()),
        private: rs.private.clone(),
        ..ResourceChange::new(a.clone(), rs.provider.clone(), Action::Delete, rs.dependencies.clone())
    };
    let live = match s.providers.get(&s.ctx, &s.values, &rs.provider).await {
        Slot::Configured(p) => p
            .read(&ReadRequest {
                address: a.clone(),
                type_name: a.type_name.clone(),
                identity: Some(rs.identity.clone()),
                config: Value::Map(rs.attrs.clone()),
                private: rs.private.clone(),
            })
            .await
            .map_err(|e| err_at(s, a, format!("reading: {e}")))?,
        Slot::Deferred(_) => {
            change.notes.push("not read: its provider is configured only during apply".into());
            None
        }
        Slot::Failed(e) => return Err(err_at(s, a, e.to_string())),
    };
    let mut live = live;
    if let (Some(l), Some(schema)) = (&mut live, s.ctx.registry.type_schema(SchemaKind::Resource, &a.type_name)) {
        mark_sensitive(schema, &mut l.attrs);
        // Attributes that were secrets when last applied stay secrets.
        for (k, v) in &rs.attrs {
            if v.has_sensitive()
                && let Some(x) = l.attrs.remove(k)
            {
                l.attrs.insert(k.clone(), x.sensitive());
            }
        }
    }
    match &live {
        Some(l) => {
            change.before = Some(l.attrs.clone());
            change.live_version = Some(l.version.clone());
            change.identity = Some(l.identity.clone());
        }
        None if !change.notes.is_empty() => {}
        None => change.notes.push("already gone: only removed from state".into()),
    }
    s.observations
        .lock()
        .expect("obs lock")
        .insert(a.clone(), Observation { live, desired: None, prior: Some(rs), deferred: false });
    s.changes.lock().expect("changes lock").insert(a.clone(), change);
    Ok(())
}

/// Turns a normal plan into a destroy plan: every managed resource (within the
/// targets) is deleted; nothing is created.
fn destroy_changes(s: &Shared, changes: &mut BTreeMap<Address, ResourceChange>, diags: &mut Diagnostics) {
    let managed: BTreeSet<&Address> = s.state.resources.keys().collect();
    changes.retain(|a, _| managed.contains(a));
    for (a, c) in changes.iter_mut() {
        if c.action == Action::Delete {
            continue;
        }
        if let Some(block) = s.ctx.spec.resources.get(a)
            && block.lifecycle.prevent_destroy
        {
            diags.push(
                Diagnostic::error(
                    Some(block.pos.clone()),
                    format!("{a}: lifecycle.prevent_destroy is set; refusing to destroy it"),
                )
                .with_hint("remove prevent_destroy from the spec (and apply) first if this is really intended"),
            );
        }
        let rs = &s.state.resources[a];
        let gone = c.live_version.is_none() && c.before.is_none();
        c.action = Action::Delete;
        c.reason = Some(Reason::DeleteBecauseDestroy);
        c.after = None;
        c.changed.clear();
        c.requires_replace.clear();
        if c.before.is_none() {
            c.before = Some(rs.attrs.clone());
        }
        if c.identity.is_none() {
            c.identity = Some(rs.identity.clone());
        }
        if gone && !c.notes.iter().any(|n| n.starts_with("not read")) {
            c.notes = vec!["already gone: only removed from state".into()];
        }
        // Delete ordering uses the last-applied dependencies plus the current ones.
        for d in &rs.dependencies {
            if !c.depends_on.contains(d) {
                c.depends_on.push(d.clone());
            }
        }
        c.depends_on.sort();
    }
}

fn eval_outputs(s: &Shared, diags: &mut Diagnostics) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, o) in &s.ctx.spec.outputs {
        match eval(&o.value, &scope(s)) {
            Ok(v) => {
                out.insert(name.clone(), if o.sensitive { v.sensitive() } else { v });
            }
            Err(d) => diags.extend(d),
        }
    }
    out
}
