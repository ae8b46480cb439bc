//! The SkyPilot baseline (`policies/skypilot-baseline/`) on a plan of 10,000 resource instances:
//! building the input document (`plan --json`) and evaluating every rule in process. Run with
//! `cargo bench --bench policy_10k`; the bound is under 1 s.
//!
//! The plan mixes the seed's kinds, 2,500 instances each: Cloud SQL instances (one in ten without
//! deletion protection, so the denies are real work too), GKE clusters, Helm releases whose
//! values carry images and the API server's resources (one in ten below the chart's minimum), and
//! Kubernetes Secrets with sensitive data.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use skyform::address::Address;
use skyform::plan::{Action, PLAN_FORMAT, Plan, ResourceChange};
use skyform::policy::{DEFAULT_NAMESPACE, PolicySet};
use skyform::value::Value;

const N: usize = 10_000;

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn attrs(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Map(m) => m,
        _ => unreachable!(),
    }
}

fn instance(i: usize) -> ResourceChange {
    let (ty, after) = match i % 4 {
        0 => (
            "gcp_sql_instance",
            map(&[
                ("name", Value::str(format!("db-{i}"))),
                ("tier", Value::str("db-custom-1-3840")),
                ("deletion_protection", Value::Bool(i % 40 != 0)),
                ("root_password", Value::str("pw").sensitive()),
                (
                    "ip_configuration",
                    map(&[
                        ("ipv4_enabled", Value::Bool(true)),
                        ("ssl_mode", Value::str("ENCRYPTED_ONLY")),
                        ("authorized_networks", Value::List(vec![])),
                    ]),
                ),
            ]),
        ),
        1 => (
            "gcp_container_cluster",
            map(&[
                ("name", Value::str(format!("cluster-{i}"))),
                ("workload_identity", Value::Bool(true)),
                ("endpoint", Value::Unknown),
            ]),
        ),
        2 => {
            let cpu = if i % 40 == 2 { "1" } else { "4" };
            let resources = map(&[
                ("requests", map(&[("cpu", Value::str(cpu)), ("memory", Value::str("8Gi"))])),
                ("limits", map(&[("cpu", Value::str("4")), ("memory", Value::str("8Gi"))])),
            ]);
            let proxy = map(&[
                ("name", Value::str("cloud-sql-proxy")),
                ("image", Value::str("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1")),
                ("args", Value::List(vec![Value::str("--port=5432"), Value::Unknown])),
            ]);
            (
                "helm_release",
                map(&[
                    ("name", Value::str(format!("skypilot-{i}"))),
                    ("chart", Value::str("skypilot-nightly")),
                    ("version", Value::str("1.0.0-dev.20260808")),
                    (
                        "values",
                        map(&[
                            ("apiService", map(&[("resources", resources), ("skipResourceCheck", Value::Bool(false))])),
                            ("extraInitContainers", Value::List(vec![proxy])),
                        ]),
                    ),
                ]),
            )
        }
        _ => (
            "k8s_secret",
            map(&[
                ("name", Value::str(format!("secret-{i}"))),
                ("namespace", Value::str("skypilot")),
                ("data", map(&[("connection_string", Value::str("postgresql://u:p@localhost/db").sensitive())])),
            ]),
        ),
    };
    let address = Address::managed(ty, format!("r{i}"));
    let provider = if ty.starts_with("gcp_") {
        "gcp"
    } else if ty == "helm_release" {
        "helm"
    } else {
        "kubernetes"
    };
    let mut c = ResourceChange::new(address, provider.into(), Action::Create, vec![]);
    c.after = Some(attrs(after));
    c
}

fn plan() -> Plan {
    Plan {
        format_version: PLAN_FORMAT.into(),
        lineage: "bench".into(),
        serial: 0,
        spec_digest: String::new(),
        destroy: false,
        changes: (0..N).map(instance).collect(),
        outputs: BTreeMap::new(),
        warnings: vec![],
        targets: vec![],
        replace: vec![],
        exclude: vec![],
        moved: vec![],
        forget: vec![],
        dropped: vec![],
        checks: vec![],
        variables: BTreeMap::from([
            ("project".into(), Value::str("bench")),
            ("root_password".into(), Value::str("x").sensitive()),
        ]),
        providers: BTreeMap::from([("gcp".into(), BTreeMap::from([("project".into(), Value::str("bench"))]))]),
        policy: None,
    }
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/skypilot-baseline");
    let start = Instant::now();
    let set = PolicySet::load(&[dir], DEFAULT_NAMESPACE).expect("the baseline loads");
    let load = start.elapsed();
    let plan = plan();
    if let Ok(path) = std::env::var("POLICY_10K_DUMP") {
        std::fs::write(path, skyform::plan::json::input(&plan).to_string()).expect("dump");
    }
    let mut runs: Vec<(Duration, Duration)> = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let input = skyform::plan::json::input(&plan);
        let built = t.elapsed();
        let outcome = set.evaluate(input).expect("the baseline evaluates");
        runs.push((built, t.elapsed()));
        last = Some(outcome);
    }
    let outcome = last.expect("ran");
    runs.sort_by_key(|r| r.1);
    let (built, total) = runs[runs.len() / 2];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("policy_10k: the SkyPilot baseline ({} files) on a plan of {N} instances", set.files().len());
    println!("  load + compile the policies:        {:>8.1} ms (once)", ms(load));
    println!("  input document (plan JSON):         {:>8.1} ms", ms(built));
    println!("  evaluation:                         {:>8.1} ms", ms(total - built));
    println!(
        "  total per plan (median of {}):       {:>8.1} ms   (min {:.1}, max {:.1})",
        runs.len(),
        ms(total),
        ms(runs[0].1),
        ms(runs[runs.len() - 1].1)
    );
    println!("  results: {} deny, {} warn", outcome.denies().count(), outcome.warnings().count());
    assert_eq!(outcome.denies().count(), N / 40 * 2, "one in ten SQL instances and one in ten releases deny");
    assert!(total < Duration::from_secs(1), "the baseline on {N} instances took {total:?}, over the 1 s bound");
}
