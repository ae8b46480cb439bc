//! Command-line front end: clap types, the printer, rendering, exit codes.
//!
//! Exit codes are decided here and only here: 0 success (no changes / no drift),
//! 1 error, 2 changes present (`plan --detailed-exitcode`) or drift found (`drift`).

pub mod docs;
pub mod json;
pub mod printer;
pub mod render;
mod signals;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::address::{Address, Target};
use crate::engine::Cancel;
use crate::ops::{self, Loaded, OpError, SpecOptions};
use crate::providers::Registry;
use crate::timings;
use printer::{EventPrinter, Printer};

/// skyform: plan and apply SkyPilot on GKE with Cloud SQL, and keep it converged.
#[derive(Debug, Parser)]
#[command(name = "skyform", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// No colour, even on a terminal (also: the NO_COLOR environment variable).
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
    /// At the end, print to stderr where the time went: per phase (load, state, configure, read,
    /// diff, apply, check, and the GCP, Kubernetes, Helm and PostgreSQL calls) and per resource
    /// (also: SKYFORM_TIMINGS=1).
    #[arg(long = "timings", global = true)]
    pub timings: bool,
}

/// Spec location and variables, common to every command.
#[derive(Debug, Args, Clone)]
pub struct SpecArgs {
    /// The spec: a file, or a directory whose `*.toml` files are merged.
    #[arg(short = 'f', long = "file", default_value = ".")]
    pub file: PathBuf,
    /// A variable value, `name=value` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file of variable values (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

/// The policies a command evaluates besides the spec's `[policy] paths` (`docs/policy.md`).
#[derive(Debug, Args, Clone, Default)]
pub struct PolicyArgs {
    /// A directory of Rego policies (`.rego` files, packages under `skyform`) to evaluate too
    /// (repeatable).
    #[arg(long = "policy", value_name = "DIR")]
    pub policies: Vec<PathBuf>,
}

/// Options of commands that plan.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Only this resource, instance (`a.b[0]`) or module (`module.m`), and
    /// what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<Target>,
    /// Replace this resource, instance or every resource of a module even if
    /// nothing changed (repeatable).
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<Target>,
    /// Leave out this resource, instance or module, and everything that depends on it
    /// (repeatable; as OpenTofu's `-exclude`).
    #[arg(long = "exclude", value_name = "ADDR")]
    pub exclude: Vec<Target>,
    /// How many resources are read or changed at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// How long to wait for the state lock (e.g. 0s, 30s, 5m).
    #[arg(long = "lock-timeout", default_value = "0s", value_parser = ops::parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the spec against the provider schemas (no network).
    Validate {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Read everything live and show what apply would do.
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// Save the plan to apply it later with `apply FILE`.
        #[arg(long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 2 when there are changes, 0 when there are none.
        #[arg(long = "detailed-exitcode")]
        detailed_exitcode: bool,
        /// Plan to destroy everything managed.
        #[arg(long)]
        destroy: bool,
    },
    /// Apply the changes (plans first unless given a saved plan).
    Apply {
        /// A plan saved with `plan --out`.
        plan_file: Option<PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// Do not ask for confirmation.
        #[arg(long = "auto-approve")]
        auto_approve: bool,
        /// Do not run the spec's checks after applying.
        #[arg(long = "skip-checks")]
        skip_checks: bool,
    },
    /// Destroy everything managed (respects prevent_destroy).
    Destroy {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        plan: PlanArgs,
        /// Do not ask for confirmation.
        #[arg(long = "auto-approve")]
        auto_approve: bool,
    },
    /// Report drift: exit 0 converged, 2 drift or pending change, 1 error.
    Drift {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// How many resources are read at once.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        /// Machine-readable output (for cron).
        #[arg(long)]
        json: bool,
        /// Do not run the spec's checks.
        #[arg(long = "skip-checks")]
        skip_checks: bool,
        /// Also write the JSON report to this file (for CI artifacts).
        #[arg(long = "json-out", value_name = "FILE")]
        json_out: Option<PathBuf>,
        /// Post the report to this URL (a Slack-compatible webhook; its text is the summary). Also
        /// SKYFORM_NOTIFY_URL, which keeps the URL (a credential) off the command line; an empty
        /// URL posts nothing.
        #[arg(long, value_name = "URL", env = "SKYFORM_NOTIFY_URL", hide_env_values = true)]
        notify: Option<String>,
        /// When to post: always, on findings (or an error), or only on errors.
        #[arg(long = "notify-on", value_enum, default_value = "findings")]
        notify_on: ops::notify::NotifyOn,
    },
    /// Run only the spec's checks: exit 0 all pass, 2 one fails, 1 error (a cheap health cron).
    Check {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// How many resources are read at once.
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the dependency graph as DOT.
    Graph {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Print outputs from the last apply.
    Output {
        #[command(flatten)]
        spec: SpecArgs,
        /// Only this output.
        name: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or edit the state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Show a plan saved with `plan --out`, touching nothing (no spec, state or cloud is read).
    Show {
        /// The saved plan.
        file: PathBuf,
        /// Machine-readable output (the `plan --json` format).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `skyform completions bash > /etc/bash_completion.d/skyform`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Take an existing object under management.
    Import {
        /// The resource address in the spec.
        address: Address,
        /// The provider's id of the object.
        id: String,
        #[command(flatten)]
        spec: SpecArgs,
        /// How long to wait for the state lock.
        #[arg(long = "lock-timeout", default_value = "0s", value_parser = ops::parse_duration)]
        lock_timeout: std::time::Duration,
    },
}

/// `skyform state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List managed resources (only those under the given addresses, when any).
    List {
        /// Resources, instances or modules to list.
        targets: Vec<Target>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show one managed resource (secrets as fingerprints).
    Show {
        /// Which.
        address: Address,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Forget resources (the live objects are left alone): an instance, every instance of a
    /// resource, or everything under a module.
    Rm {
        /// Which.
        #[arg(required = true)]
        targets: Vec<Target>,
        #[command(flatten)]
        spec: SpecArgs,
        /// How long to wait for the state lock.
        #[arg(long = "lock-timeout", default_value = "0s", value_parser = ops::parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Remove a lock left behind by a crashed run (a bucket's lock needs its ID, as printed).
    Unlock {
        /// The lock's ID, from the "locked by" message (required for `[backend.gcs]`).
        lock_id: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Copy the state from the local files into the spec's `[backend.gcs]` (or back with
    /// `--to-local`); refuses to replace another lineage or a newer serial.
    Migrate {
        #[command(flatten)]
        spec: SpecArgs,
        /// From the bucket back into `.skyform/` beside the spec.
        #[arg(long = "to-local")]
        to_local: bool,
        /// How long to wait for each lock.
        #[arg(long = "lock-timeout", default_value = "0s", value_parser = ops::parse_duration)]
        lock_timeout: std::time::Duration,
    },
}

impl SpecArgs {
    fn options(&self) -> SpecOptions {
        SpecOptions {
            file: self.file.clone(),
            vars: self.vars.clone(),
            var_files: self.var_files.clone(),
            lenient_vars: false,
            policies: Vec::new(),
        }
    }

    /// [`Self::options`] with the `--policy` directories.
    fn with_policies(&self, p: &PolicyArgs) -> SpecOptions {
        SpecOptions { policies: p.policies.clone(), ..self.options() }
    }
}

impl PlanArgs {
    fn request(&self, destroy: bool) -> ops::plan::PlanRequest {
        ops::plan::PlanRequest {
            destroy,
            targets: self.targets.clone(),
            replace: self.replace.clone(),
            exclude: self.exclude.clone(),
            parallelism: self.parallelism,
            lock_timeout: self.lock_timeout,
        }
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let printer = Printer::stdio(cli.no_color);
    rt.block_on(async { signals::watch() });
    if cli.timings {
        timings::enable();
    } else {
        timings::enable_from_env();
    }
    let code = match rt.block_on(run(cli, &printer, Registry::builtin())) {
        Ok(code) => code,
        Err(e) => {
            printer.error(&e);
            1
        }
    };
    if timings::enabled() {
        eprint!("\n{}", timings::report(&timings::take()));
    }
    code
}

/// Runs one command; returns the exit code for success paths. Each arm parses nothing and decides
/// nothing: it calls the verb's `ops` function and renders what it returns.
pub async fn run(cli: Cli, p: &Printer, registry: Registry) -> Result<i32, OpError> {
    match cli.command {
        Command::Validate { spec, policy, json } => {
            let v = ops::inspect::validate(&spec.with_policies(&policy), registry)?;
            if json {
                let warnings: Vec<String> = v.warnings.0.iter().map(|d| d.to_string()).collect();
                p.out(&serde_json::json!({"valid": true, "warnings": warnings}).to_string());
            } else {
                p.diagnostics(&v.warnings);
                p.out(&format!(
                    "The spec is valid: {} resources, {} data sources, {} providers configured.",
                    v.resources, v.data_sources, v.providers
                ));
            }
            Ok(0)
        }
        Command::Plan { spec, policy, plan, out, detailed_exitcode, destroy } => {
            let loaded = ops::load(&spec.with_policies(&policy), registry)?;
            p.set_mask(loaded.mask());
            p.diagnostics(&loaded.warnings);
            note_lock(p, &loaded);
            let planned = ops::plan::plan(&loaded, &plan.request(destroy), out).await?;
            if plan.json {
                p.out(&json::plan(&planned.plan).to_string());
            } else {
                p.out_raw(&render::plan(&planned.plan));
            }
            if let Some(path) = &planned.saved
                && !plan.json
            {
                p.out(&format!(
                    "\nSaved the plan to {}. Apply it with: skyform apply {}",
                    path.display(),
                    path.display()
                ));
            }
            // A plan the policies deny has failed: exit 1, as for a plan error.
            if let Some(o) = planned.plan.policy.as_ref().filter(|o| o.denied()) {
                p.err(&format!("\nerror: {}", ops::policy::denied_message(o)));
                return Ok(1);
            }
            Ok(if detailed_exitcode && planned.plan.has_changes() { 2 } else { 0 })
        }
        Command::Apply { plan_file, spec, policy, plan, auto_approve, skip_checks } => {
            let req = ops::apply::ApplyRequest { plan: plan.request(false), plan_file, skip_checks };
            apply_or_destroy(p, registry, spec.with_policies(&policy), plan.json, req, auto_approve).await
        }
        Command::Destroy { spec, policy, plan, auto_approve } => {
            let req = ops::apply::ApplyRequest { plan: plan.request(true), plan_file: None, skip_checks: true };
            apply_or_destroy(p, registry, spec.with_policies(&policy), plan.json, req, auto_approve).await
        }
        Command::Check { spec, policy, parallelism, json } => {
            let loaded = ops::load(&spec.with_policies(&policy), registry)?;
            p.set_mask(loaded.mask());
            let hook: Arc<dyn crate::engine::Hook> = if json {
                Arc::new(crate::engine::events::NoHook)
            } else {
                Arc::new(EventPrinter::new(p.clone(), false))
            };
            note_lock(p, &loaded);
            let checked = ops::check::run(&loaded, hook, parallelism).await?;
            let results = &checked.checks;
            let failed = results.iter().filter(|c| !c.passed).count();
            if json {
                let mut doc = serde_json::json!({"format_version": "1", "checks": results, "failed": failed});
                if let Some(o) = &checked.policy {
                    doc["policy"] = serde_json::to_value(o).unwrap_or_default();
                    doc["policy_failed"] = o.denies().count().into();
                }
                p.out(&doc.to_string());
            } else {
                p.out(&format!("\n{} checks: {} passed, {failed} failed.", results.len(), results.len() - failed));
                if let Some(o) = &checked.policy {
                    p.out_raw(&render::policy_live(o));
                }
            }
            Ok(if checked.failures() == 0 { 0 } else { 2 })
        }
        Command::Drift { spec, policy, parallelism, json, skip_checks, json_out, notify, notify_on } => {
            let req =
                ops::drift::DriftRequest { parallelism, skip_checks, json_out, notify: notify.map(|u| (u, notify_on)) };
            let run = ops::drift::run(&spec.with_policies(&policy), registry, &req).await;
            p.set_mask(run.mask.clone());
            if let Some(note) = &run.lock_note {
                p.err(&format!("note: {note}"));
            }
            let report = run.outcome?;
            if json {
                p.out(&serde_json::to_string(&report).unwrap_or_default());
            } else {
                p.out_raw(&render::drift(&report));
            }
            run.delivery?;
            Ok(if report.converged() { 0 } else { 2 })
        }
        Command::Graph { spec } => {
            p.out_raw(&ops::inspect::graph(&spec.options(), registry)?);
            Ok(0)
        }
        Command::Output { spec, name, json } => {
            let loaded = ops::load(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            note_lock(p, &loaded);
            let outputs = ops::inspect::output(&loaded, name.as_deref())?;
            if json {
                let m: serde_json::Map<String, serde_json::Value> =
                    outputs.iter().map(|(k, v)| (k.clone(), v.to_json_masked())).collect();
                p.out(&serde_json::Value::Object(m).to_string());
            } else {
                for (k, v) in outputs {
                    p.out(&format!("{k} = {v}"));
                }
            }
            Ok(0)
        }
        Command::State { command } => state(p, registry, command).await,
        Command::Show { file, json } => {
            let plan = ops::inspect::show(&file)?;
            if json {
                p.out(&json::plan(&plan).to_string());
            } else {
                p.out_raw(&render::plan(&plan));
            }
            Ok(0)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "skyform", &mut out);
            p.out_raw(&String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Import { address, id, spec, lock_timeout } => {
            let loaded = ops::load(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            let rs = ops::state::import(&loaded, &address, &id, lock_timeout).await?;
            p.out(&format!("{address}: imported (identity {}).", crate::engine::applier::shown_identity(&rs.identity)));
            Ok(0)
        }
    }
}

/// For commands that read state without the lock: says so when an apply holds it now.
fn note_lock(p: &Printer, loaded: &Loaded) {
    if let Some(note) = ops::lock_note(loaded) {
        p.err(&format!("note: {note}"));
    }
}

/// The state commands load with only the backend's variables required.
async fn state(p: &Printer, registry: Registry, command: StateCommand) -> Result<i32, OpError> {
    match command {
        StateCommand::List { targets, spec } => {
            let loaded = ops::load_for_state(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            note_lock(p, &loaded);
            for a in ops::state::list(&loaded, &targets)? {
                p.out(&a.to_string());
            }
        }
        StateCommand::Show { address, spec } => {
            let loaded = ops::load_for_state(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            note_lock(p, &loaded);
            let rs = ops::state::show(&loaded, &address)?;
            p.out(&serde_json::to_string_pretty(&rs).unwrap_or_default());
        }
        StateCommand::Rm { targets, spec, lock_timeout } => {
            let loaded = ops::load_for_state(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            for a in ops::state::rm(&loaded, &targets, lock_timeout)? {
                p.out(&format!("Removed {a} from the state (the live object was not touched)."));
            }
        }
        StateCommand::Unlock { lock_id, spec } => {
            let loaded = ops::load_for_state(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            let who = ops::state::unlock(&loaded, lock_id.as_deref())?;
            p.out(&format!("Removed the lock held by {who}."));
        }
        StateCommand::Migrate { spec, to_local, lock_timeout } => {
            let loaded = ops::load_for_state(&spec.options(), registry)?;
            p.set_mask(loaded.mask());
            let direction = if to_local { ops::state::Direction::ToLocal } else { ops::state::Direction::ToBackend };
            let (serial, to) = ops::state::migrate(&loaded, direction, lock_timeout)?;
            p.out(&format!("Copied the state (serial {serial}) to {to}."));
            if !to_local {
                p.out(&format!(
                    "The local files in {} are kept; remove them once you have checked `skyform state list`.",
                    loaded.local.state_path().parent().map(|d| d.display().to_string()).unwrap_or_default()
                ));
            }
        }
    }
    Ok(0)
}

async fn apply_or_destroy(
    p: &Printer,
    registry: Registry,
    spec: SpecOptions,
    json: bool,
    req: ops::apply::ApplyRequest,
    auto_approve: bool,
) -> Result<i32, OpError> {
    let destroy = req.plan.destroy;
    let op = if destroy { "destroy" } else { "apply" };
    let loaded: Loaded = ops::load(&spec, registry)?;
    p.set_mask(loaded.mask());
    p.diagnostics(&loaded.warnings);
    let cancel = Cancel::new();
    let hook = Arc::new(EventPrinter::new(p.clone(), json));
    let prepared = ops::apply::prepare(&loaded, &req, hook.clone(), cancel.clone()).await?;
    if !json {
        p.out_raw(&render::plan(&prepared.plan));
    }
    if prepared.is_empty() {
        return Ok(0);
    }
    if prepared.needs_approval() && !auto_approve {
        if !std::io::stdin().is_terminal() {
            return Err(ops::error(format!(
                "refusing to {op} without confirmation: stdin is not a terminal; pass --auto-approve, or save a plan with `plan --out FILE` and apply that file"
            )));
        }
        if !p.confirm(&format!("Do you want to {op}? Only 'yes' will be accepted: ")) {
            p.out(&format!("{} cancelled.", if destroy { "Destroy" } else { "Apply" }));
            return Ok(1);
        }
    }
    // Ctrl-C: stop starting new work, let running operations finish, save state.
    let c2 = cancel.clone();
    let p2 = p.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            p2.err(
                "Interrupt received: no new step starts; running requests finish, long operations are recorded as \
                 pending (the next apply resumes them); saving state...",
            );
            c2.cancel();
        }
    });
    signals::graceful(true);
    let report = prepared.execute().await;
    signals::graceful(false);
    signal.abort();
    let report = report?;
    if !json {
        let s = report.summary;
        if report.changes_ok() {
            p.out(&format!(
                "\n{} complete! Resources: {} added, {} changed, {} replaced, {} destroyed.",
                if destroy { "Destroy" } else { "Apply" },
                s.add,
                s.change,
                s.replace,
                s.destroy
            ));
            if let Some(line) = hook.longest(3) {
                p.out(&line);
            }
            if !report.outputs.is_empty() {
                p.out("\nOutputs:");
                for (k, v) in &report.outputs {
                    p.out(&format!("  {k} = {v}"));
                }
            }
            let failed: Vec<_> = report.checks.iter().filter(|c| !c.passed).collect();
            if !report.checks.is_empty() && failed.is_empty() {
                p.out(&format!("\nChecks: {} passed.", report.checks.len()));
            }
            if !failed.is_empty() {
                p.err(&format!(
                    "\n{} of {} checks failed: the changes are applied and saved, but the deployment does not work yet.",
                    failed.len(),
                    report.checks.len()
                ));
                for c in failed {
                    p.err(&format!("error: check.{}: {}", c.name, c.message));
                }
            }
        } else {
            p.err(&format!(
                "\n{} incomplete: {} failed, {} skipped, {} interrupted or not started. Done: {} added, {} changed, {} replaced, {} destroyed. State is saved; run apply again to converge.",
                if destroy { "Destroy" } else { "Apply" },
                report.failures.len(),
                report.skipped.len(),
                report.cancelled.len(),
                s.add,
                s.change,
                s.replace,
                s.destroy
            ));
            for (a, m) in &report.failures {
                p.err(&format!("error: {a}: {m}"));
            }
            if let Some(e) = &report.state_failure {
                p.err(&format!("error: {e}"));
            }
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}
