//! Command-line front end: clap types, the printer, rendering, exit codes.
//!
//! Exit codes are decided here and only here: 0 success (no changes / no drift),
//! 1 error, 2 changes present (`plan --detailed-exitcode`) or drift found (`drift`).

pub mod docs;
pub mod json;
pub mod printer;
pub mod render;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::address::Address;
use crate::engine::{Cancel, PlanOptions};
use crate::ops::{self, Loaded, OpError, SpecOptions};
use crate::providers::Registry;
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

/// Options of commands that plan.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Only this resource, instance (`a.b[0]`) or module (`module.m`), and
    /// what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Replace this resource, instance or every resource of a module even if
    /// nothing changed (repeatable).
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
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
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Read everything live and show what apply would do.
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
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
        plan: PlanArgs,
        /// Do not ask for confirmation.
        #[arg(long = "auto-approve")]
        auto_approve: bool,
    },
    /// Report drift: exit 0 converged, 2 drift or pending change, 1 error.
    Drift {
        #[command(flatten)]
        spec: SpecArgs,
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
    /// List managed resources.
    List {
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
    /// Forget a resource (the live object is left alone).
    Rm {
        /// Which.
        address: Address,
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
        }
    }

    /// For `validate` and `graph`: no variable value is needed.
    fn lenient(&self) -> SpecOptions {
        SpecOptions { lenient_vars: true, ..self.options() }
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
    match rt.block_on(run(cli, &printer, Registry::builtin())) {
        Ok(code) => code,
        Err(e) => {
            printer.error(&e);
            1
        }
    }
}

/// Runs one command; returns the exit code for success paths.
pub async fn run(cli: Cli, p: &Printer, registry: Registry) -> Result<i32, OpError> {
    match cli.command {
        Command::Validate { spec, json } => {
            let loaded = ops::load(&spec.lenient(), registry)?;
            if json {
                p.out(&serde_json::json!({"valid": true, "warnings": loaded.warnings.0.iter().map(|d| d.to_string()).collect::<Vec<_>>()}).to_string());
            } else {
                p.diagnostics(&loaded.warnings);
                p.out(&format!(
                    "The spec is valid: {} resources, {} data sources, {} providers configured.",
                    loaded.spec.resources.keys().filter(|a| a.mode == crate::address::Mode::Managed).count(),
                    loaded.spec.resources.keys().filter(|a| a.mode == crate::address::Mode::Data).count(),
                    loaded.spec.providers.len()
                ));
            }
            Ok(0)
        }
        Command::Plan { spec, plan, out, detailed_exitcode, destroy } => {
            let loaded = ops::load(&spec.options(), registry)?;
            p.diagnostics(&loaded.warnings);
            let ctx = loaded.context(Arc::new(crate::engine::events::NoHook), plan.parallelism, Cancel::new());
            let mut session = ops::apply::open(&loaded, None, plan.lock_timeout)?;
            if out.is_some() {
                session.persist_if_new(plan.lock_timeout)?;
            }
            let opts = PlanOptions {
                destroy,
                targets: ops::resolve_addresses(&loaded, &session.state, &plan.targets)?,
                replace: ops::resolve_addresses(&loaded, &session.state, &plan.replace)?,
            };
            note_lock(p, &loaded);
            let planned = session.plan(&ctx, &opts).await?;
            if plan.json {
                p.out(&json::plan(&planned.plan).to_string());
            } else {
                p.out_raw(&render::plan(&planned.plan));
            }
            if let Some(path) = out {
                let fp = session.state.fingerprinter();
                crate::plan::file::save(&path, &planned.plan.redacted(&fp))?;
                if !plan.json {
                    p.out(&format!(
                        "\nSaved the plan to {}. Apply it with: skyform apply {}",
                        path.display(),
                        path.display()
                    ));
                }
            }
            Ok(if detailed_exitcode && planned.plan.has_changes() { 2 } else { 0 })
        }
        Command::Apply { plan_file, spec, plan, auto_approve, skip_checks } => {
            let how = ApplyHow { plan_file, auto_approve, skip_checks, destroy: false };
            apply_or_destroy(p, registry, spec, plan, how).await
        }
        Command::Destroy { spec, plan, auto_approve } => {
            let how = ApplyHow { plan_file: None, auto_approve, skip_checks: true, destroy: true };
            apply_or_destroy(p, registry, spec, plan, how).await
        }
        Command::Check { spec, parallelism, json } => {
            let loaded = ops::load(&spec.options(), registry)?;
            let hook: Arc<dyn crate::engine::Hook> = if json {
                Arc::new(crate::engine::events::NoHook)
            } else {
                Arc::new(EventPrinter::new(p.clone(), false))
            };
            let ctx = loaded.context(hook, parallelism, Cancel::new());
            let session = ops::apply::open(&loaded, None, std::time::Duration::ZERO)?;
            note_lock(p, &loaded);
            let results = ops::check::check(&session, &ctx).await?;
            let failed = results.iter().filter(|c| !c.passed).count();
            if json {
                p.out(&serde_json::json!({"format_version": "1", "checks": results, "failed": failed}).to_string());
            } else {
                p.out(&format!("\n{} checks: {} passed, {failed} failed.", results.len(), results.len() - failed));
            }
            Ok(if failed == 0 { 0 } else { 2 })
        }
        Command::Drift { spec, parallelism, json, skip_checks, json_out, notify, notify_on } => {
            let name = spec.file.display().to_string();
            let net = registry.net().clone();
            let outcome = drift_report(p, registry, &spec, parallelism, skip_checks).await;
            if let (Some(path), Ok(report)) = (&json_out, &outcome) {
                let text = serde_json::to_string_pretty(report).unwrap_or_default();
                std::fs::write(path, format!("{text}\n"))
                    .map_err(|e| ops::error(format!("writing {}: {e}", path.display())))?;
            }
            let sent = match notify.as_deref().filter(|u| !u.trim().is_empty()) {
                Some(url) => {
                    let phrased = match &outcome {
                        Ok(r) => ops::notify::Outcome::Report(r.clone()),
                        Err(e) => ops::notify::Outcome::Failed(e.to_string().trim().to_string()),
                    };
                    if ops::notify::wanted(notify_on, &phrased) {
                        Some(ops::notify::post(&net, url, &ops::notify::message(&name, &phrased)).await)
                    } else {
                        None
                    }
                }
                None => None,
            };
            let report = outcome?;
            if json {
                p.out(&serde_json::to_string(&report).unwrap_or_default());
            } else {
                p.out_raw(&render::drift(&report));
            }
            if let Some(Err(e)) = sent {
                return Err(ops::error(format!("drift --notify: {e}")));
            }
            Ok(if report.converged() { 0 } else { 2 })
        }
        Command::Graph { spec } => {
            let loaded = ops::load(&spec.lenient(), registry)?;
            p.out_raw(&crate::graph::dot::to_dot(&loaded.graph));
            Ok(0)
        }
        Command::Output { spec, name, json } => {
            let loaded = ops::load(&spec.options(), registry)?;
            note_lock(p, &loaded);
            let state = loaded.backend.load()?;
            let outputs: Vec<(&String, &crate::value::Value)> =
                state.outputs.iter().filter(|(k, _)| name.as_ref().is_none_or(|n| n == *k)).collect();
            if let Some(n) = &name
                && outputs.is_empty()
            {
                return Err(ops::error(format!("no output named `{n}` in the state; outputs are recorded by apply")));
            }
            if json {
                let m: serde_json::Map<String, serde_json::Value> =
                    outputs.iter().map(|(k, v)| ((*k).clone(), v.to_json_masked())).collect();
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
            let plan = crate::plan::file::load(&file)?;
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
            let ctx = loaded.context(Arc::new(crate::engine::events::NoHook), 1, Cancel::new());
            let rs = ops::state::import(&loaded, &ctx, &address, &id, lock_timeout).await?;
            p.out(&format!("{address}: imported (identity {}).", rs.identity));
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

/// `drift`'s report (an error stays an error, for `--notify-on errors`).
async fn drift_report(
    p: &Printer,
    registry: Registry,
    spec: &SpecArgs,
    parallelism: usize,
    skip_checks: bool,
) -> Result<ops::drift::DriftReport, OpError> {
    let loaded = ops::load(&spec.options(), registry)?;
    let ctx = loaded.context(Arc::new(crate::engine::events::NoHook), parallelism, Cancel::new());
    let session = ops::apply::open(&loaded, None, std::time::Duration::ZERO)?;
    note_lock(p, &loaded);
    ops::drift::drift(&session, &ctx, skip_checks).await
}

async fn state(p: &Printer, registry: Registry, command: StateCommand) -> Result<i32, OpError> {
    match command {
        StateCommand::List { spec } => {
            let loaded = ops::load(&spec.options(), registry)?;
            note_lock(p, &loaded);
            for a in ops::state::list(&loaded)? {
                p.out(&a.to_string());
            }
        }
        StateCommand::Show { address, spec } => {
            let loaded = ops::load(&spec.options(), registry)?;
            note_lock(p, &loaded);
            let rs = ops::state::show(&loaded, &address)?;
            p.out(&serde_json::to_string_pretty(&rs).unwrap_or_default());
        }
        StateCommand::Rm { address, spec, lock_timeout } => {
            let loaded = ops::load(&spec.options(), registry)?;
            ops::state::rm(&loaded, &address, lock_timeout)?;
            p.out(&format!("Removed {address} from the state (the live object was not touched)."));
        }
        StateCommand::Unlock { lock_id, spec } => {
            let loaded = ops::load(&spec.options(), registry)?;
            let who = ops::state::unlock(&loaded, lock_id.as_deref())?;
            p.out(&format!("Removed the lock held by {who}."));
        }
        StateCommand::Migrate { spec, to_local, lock_timeout } => {
            let loaded = ops::load(&spec.options(), registry)?;
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

/// How `apply` / `destroy` go.
struct ApplyHow {
    /// A saved plan.
    plan_file: Option<PathBuf>,
    auto_approve: bool,
    /// `--skip-checks` (always for destroy).
    skip_checks: bool,
    destroy: bool,
}

async fn apply_or_destroy(
    p: &Printer,
    registry: Registry,
    spec: SpecArgs,
    args: PlanArgs,
    how: ApplyHow,
) -> Result<i32, OpError> {
    let ApplyHow { plan_file, auto_approve, skip_checks, destroy } = how;
    let loaded: Loaded = ops::load(&spec.options(), registry)?;
    p.diagnostics(&loaded.warnings);
    let cancel = Cancel::new();
    let hook = Arc::new(EventPrinter::new(p.clone(), args.json));
    let ctx = loaded.context(hook.clone(), args.parallelism, cancel.clone());
    let op = if destroy { "destroy" } else { "apply" };
    let mut session = ops::apply::open(&loaded, Some(op), args.lock_timeout)?;
    let planned = match &plan_file {
        Some(path) => {
            let saved = crate::plan::file::load(path)?;
            session.check_saved(&ctx, &saved).await?
        }
        None => {
            let opts = PlanOptions {
                destroy,
                targets: ops::resolve_addresses(&loaded, &session.state, &args.targets)?,
                replace: ops::resolve_addresses(&loaded, &session.state, &args.replace)?,
            };
            session.plan(&ctx, &opts).await?
        }
    };
    let mut planned = planned;
    if skip_checks {
        planned.plan.checks.clear();
    }
    if !args.json {
        p.out_raw(&render::plan(&planned.plan));
    }
    if !planned.plan.changes_state() && planned.plan.outputs.is_empty() && planned.plan.checks.is_empty() {
        return Ok(0);
    }
    if planned.plan.has_changes() && plan_file.is_none() && !auto_approve {
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
    let report = session.apply(&ctx, &planned.plan).await?;
    signal.abort();
    if !args.json {
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
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}
