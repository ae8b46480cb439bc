//! Benchmark of the GCP provider on `specs/gcp-cloudsql.toml` against the
//! in-process emulator:
//! - API calls per plan (from the emulator's request counts), against the goal
//!   of one read per resource and one read per policy;
//! - apply wall time against the critical-path lower bound of the spec's DAG
//!   under the emulator's operation durations (goal: within 1.15×).
//!
//! `cargo bench --bench gcp_plan_apply` (needs PostgreSQL installed, like the
//! emulator's tests).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gcp_emulator::{Config, Emulator, OpDurations};
use skyform::engine::events::{Event, Hook, Recorder};
use skyform::engine::{Cancel, PlanOptions};
use skyform::ops::{self, SpecOptions};
use skyform::plan::Plan;
use skyform::providers::Registry;
use skyform::providers::gcp::GcpFactory;
use skyform::providers::gcp::client::RetryPolicy;

fn durations() -> OpDurations {
    // Scaled-down but proportionate: a Cloud SQL create dominates, then its
    // users and databases, then API enablement.
    let mut d = OpDurations::uniform(Duration::from_millis(300));
    for (k, ms) in
        [("sql.CREATE", 8000), ("sql.CREATE_DATABASE", 1000), ("sql.CREATE_USER", 800), ("serviceusage", 1000)]
    {
        d.per_type.insert(k.into(), Duration::from_millis(ms));
    }
    d
}

/// Duration of each operation type: configured, or as the emulator ran them
/// (the longest of each type).
type Weights = BTreeMap<&'static str, Duration>;

fn configured(d: &OpDurations) -> Weights {
    BTreeMap::from([
        ("ENABLE", d.lookup("serviceusage", "ENABLE")),
        ("CREATE", d.lookup("sql", "CREATE")),
        ("CREATE_DATABASE", d.lookup("sql", "CREATE_DATABASE")),
        ("CREATE_USER", d.lookup("sql", "CREATE_USER")),
        ("CREATE_CLUSTER", d.lookup("container", "CREATE_CLUSTER")),
    ])
}

fn measured(ops: &[(String, String, String, Duration)]) -> Weights {
    let mut w = Weights::new();
    for k in ["ENABLE", "CREATE", "CREATE_DATABASE", "CREATE_USER", "CREATE_CLUSTER"] {
        let d = ops.iter().filter(|o| o.1 == k).map(|o| o.3).max().unwrap_or_default();
        w.insert(k, d);
    }
    w
}

/// Weight of one resource's apply (synchronous APIs count as zero).
fn weight(w: &Weights, type_name: &str) -> Duration {
    let k = match type_name {
        "gcp_project_service" => "ENABLE",
        "gcp_sql_instance" => "CREATE",
        "gcp_sql_database" => "CREATE_DATABASE",
        "gcp_sql_user" => "CREATE_USER",
        "gcp_container_cluster" => "CREATE_CLUSTER",
        _ => return Duration::ZERO,
    };
    w.get(k).copied().unwrap_or_default()
}

/// The operations the emulator ran: (api, type, target, duration), from its
/// state (`/_emulator/state`), so that the lower bound uses what the operations
/// really took (e.g. `initdb` may outlast a configured duration).
async fn emulator_ops(base: &str) -> Vec<(String, String, String, Duration)> {
    let st: serde_json::Value = reqwest::get(format!("{base}_emulator/state")).await.unwrap().json().await.unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, String, String, Duration)>) {
        match v {
            serde_json::Value::Object(m) if m.contains_key("op_type") && m.contains_key("insert_ms") => {
                let ms = |k: &str| m.get(k).and_then(|x| x.as_u64());
                if let (Some(a), Some(b)) = (ms("insert_ms"), ms("end_ms")) {
                    let s = |k: &str| {
                        m.get(k)
                            .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                            .unwrap_or_default()
                    };
                    out.push((
                        s("api").to_lowercase(),
                        s("op_type"),
                        s("target"),
                        Duration::from_millis(b.saturating_sub(a)),
                    ));
                }
            }
            serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&st, &mut out);
    out
}

/// The critical path of the plan's DAG, with Cloud SQL's one-operation-per-
/// instance rule: the children of one instance cannot overlap, so they count
/// as a chain after the later of the instance and their own dependencies.
fn critical_path(plan: &Plan, d: &Weights) -> Duration {
    let mut finish: BTreeMap<String, Duration> = BTreeMap::new();
    for c in &plan.changes {
        // Changes are in topological order.
        let start = c.depends_on.iter().filter_map(|a| finish.get(&a.to_string())).max().copied().unwrap_or_default();
        finish.insert(c.address.to_string(), start + weight(d, &c.address.type_name));
    }
    let mut lb = finish.values().max().copied().unwrap_or_default();
    for inst in plan.changes.iter().filter(|c| c.address.type_name == "gcp_sql_instance") {
        let children: Vec<_> = plan
            .changes
            .iter()
            .filter(|c| c.depends_on.contains(&inst.address) && c.address.type_name.starts_with("gcp_sql_"))
            .collect();
        let total: Duration = children.iter().map(|c| weight(d, &c.address.type_name)).sum();
        lb = lb.max(finish[&inst.address.to_string()] + total);
    }
    lb
}

/// Records when each resource's operation started and finished.
struct Timeline(Instant, std::sync::Mutex<Vec<(String, f64, f64)>>);
impl Hook for Timeline {
    fn event(&self, e: &Event) {
        let now = self.0.elapsed().as_secs_f64();
        let mut t = self.1.lock().unwrap();
        match e {
            Event::Started { address, .. } => t.push((address.to_string(), now, f64::NAN)),
            Event::Finished { address, .. } => {
                if let Some(x) = t.iter_mut().rev().find(|x| x.0 == address.to_string()) {
                    x.2 = now;
                }
            }
            _ => {}
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config { op_durations: durations(), ..Default::default() }).await.expect("emulator");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/specs/gcp-cloudsql.toml")).unwrap();
    let text = text.replacen(
        "[provider.gcp]\n",
        &format!("[provider.gcp]\nendpoint = \"{}\"\nanonymous = true\n", emu.base_url()),
        1,
    );
    std::fs::write(dir.path().join("main.toml"), text).unwrap();
    let vars: Vec<String> = ["project=bench-proj", "db_password=bench-Secret-1", "root_password=bench-Secret-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Production polling defaults, except a finer first poll interval cap
    // relative to the scaled-down durations.
    let retry = RetryPolicy {
        poll_initial: Duration::from_millis(100),
        poll_cap: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let factory = Arc::new(GcpFactory::new().with_retry(retry));
    let load = || {
        let mut reg = Registry::new();
        reg.register(factory.clone());
        ops::load(
            &SpecOptions {
                file: dir.path().join("main.toml"),
                vars: vars.clone(),
                var_files: vec![],
                lenient_vars: false,
                policies: vec![],
            },
            reg,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };

    // Apply from scratch.
    let loaded = load();
    let ctx = loaded.context(Arc::new(Recorder::default()), 10, Cancel::new());
    let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &PlanOptions::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let lb_configured = critical_path(&planned.plan, &configured(&durations()));
    let timeline = Arc::new(Timeline(Instant::now(), Default::default()));
    let ctx = loaded.context(timeline.clone(), 10, Cancel::new());
    let t = Instant::now();
    let report = s.apply(&ctx, &planned.plan).await.unwrap();
    let wall = t.elapsed();
    assert!(report.ok(), "{:?}", report.failures);
    drop(s);
    let resources = planned.plan.changes.len();
    let lb = critical_path(&planned.plan, &measured(&emulator_ops(emu.base_url()).await)).max(lb_configured);

    // API calls of one plan of the converged spec.
    emu.reset_stats();
    let loaded = load();
    let ctx = loaded.context(Arc::new(Recorder::default()), 10, Cancel::new());
    let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
    let t = Instant::now();
    let plan = s.plan(&ctx, &PlanOptions::default()).await.unwrap().plan;
    let plan_wall = t.elapsed();
    assert!(!plan.has_changes(), "converged");
    let stats = emu.stats();
    let policies = 1; // the project policy; no service-account policy in this spec
    println!("gcp_plan_apply on specs/gcp-cloudsql.toml ({resources} resources)");
    println!(
        "  plan: {} API calls ({:.0} ms); goal <= {} (one read per resource + one per policy)",
        stats.total,
        plan_wall.as_secs_f64() * 1e3,
        resources - 2 + policies
    );
    for (m, n) in &stats.requests {
        println!("    {m:<48} {n}");
    }
    println!(
        "  apply: {:.2} s wall; critical-path lower bound {:.2} s with the operations' real durations \
         ({:.2} s with the configured ones); ratio {:.3} (goal <= 1.15)",
        wall.as_secs_f64(),
        lb.as_secs_f64(),
        lb_configured.as_secs_f64(),
        wall.as_secs_f64() / lb.as_secs_f64()
    );
    println!("  apply timeline (s from start):");
    for (a, start, end) in timeline.1.lock().unwrap().iter() {
        println!("    {a:<44} {start:>6.2} -> {end:>6.2}");
    }
    emu.shutdown().await;
}
