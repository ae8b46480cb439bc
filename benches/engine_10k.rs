//! Plan and apply of 10,000 resources with the in-memory provider (no provider
//! latency), in three graph shapes, and one `for_each` of 10,000 keys (plus a
//! resource referring to one instance). Run with `cargo bench --bench engine_10k`.
//!
//! Each measurement runs in a child process of its own so that its peak
//! resident memory (VmHWM) is its own. The figures include loading and
//! validating the spec, building the graph, reading every resource, diffing and
//! (for apply) persisting every step to the state journal with fsync.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skyform::engine::events::NoHook;
use skyform::engine::{Cancel, PlanOptions};
use skyform::ops::{self, SpecOptions};
use skyform::providers::Registry;
use skyform::providers::memory::MemoryFactory;

const N: usize = 10_000;

fn spec(shape: &str) -> String {
    let mut s = String::with_capacity(N * 80);
    if shape == "foreach" {
        // One block, 10,000 instances from a local list; one more resource
        // reads one instance. The expansion does the work.
        let keys: Vec<String> = (0..N - 1).map(|i| format!("\"k{i}\"")).collect();
        s.push_str(&format!("[locals]\nkeys = [{}]\n\n", keys.join(", ")));
        s.push_str("[resource.test_object.r]\nfor_each = \"${local.keys}\"\nname = \"r-${each.key}\"\n\n");
        s.push_str("[resource.test_object.last]\nname = \"last\"\nvalue = \"${test_object.r[\\\"k0\\\"].id}\"\n");
        return s;
    }
    // A small deterministic generator (no RNG crate needed): xorshift.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..N {
        s.push_str(&format!("[resource.test_object.r{i}]\nname = \"r{i}\"\n"));
        match shape {
            "chain" if i > 0 => s.push_str(&format!("value = \"${{test_object.r{}.id}}\"\n", i - 1)),
            "fanout" if i > 0 => s.push_str("value = \"${test_object.r0.id}\"\n"),
            "random" if i > 0 => {
                // Up to three references to earlier resources: a random DAG.
                let k = (next() % 4) as usize;
                let refs: Vec<String> =
                    (0..k).map(|_| format!("${{test_object.r{}.id}}", next() as usize % i)).collect();
                if !refs.is_empty() {
                    s.push_str(&format!("value = \"{}\"\n", refs.join("-")));
                }
            }
            _ => {}
        }
    }
    s
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn run_one(what: &str, shape: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, spec(shape)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let fake = Arc::new(MemoryFactory::new());
    let mut reg = Registry::new();
    reg.register(fake.clone());
    let opts = SpecOptions { file, vars: vec![], var_files: vec![], lenient_vars: false, policies: vec![] };

    let t0 = Instant::now();
    let loaded = ops::load(&opts, reg).map_err(|e| e.to_string()).unwrap();
    let ctx = loaded.context(Arc::new(NoHook), 10, Cancel::new());
    let load_time = t0.elapsed();
    let (plan_time, apply_time, changes) = rt.block_on(async {
        let mut s = ops::apply::open(&loaded, Some("bench"), Duration::ZERO).unwrap();
        let t1 = Instant::now();
        let planned = s.plan(&ctx, &PlanOptions::default()).await.map_err(|e| e.to_string()).unwrap();
        let plan_time = t1.elapsed();
        let changes = planned.plan.changes.len();
        let apply_time = if what == "apply" {
            let t2 = Instant::now();
            let report = s.apply(&ctx, &planned.plan).await.unwrap();
            assert!(report.ok(), "{:?}", report.failures.first());
            Some(t2.elapsed())
        } else {
            None
        };
        (plan_time, apply_time, changes)
    });
    assert_eq!(changes, N);
    let line = match apply_time {
        None => format!(
            "plan  {shape:<7} {N} resources: load+validate+graph {:>6.3} s, plan {:>6.3} s, total {:>6.3} s, peak RSS {:>6.1} MB",
            load_time.as_secs_f64(),
            plan_time.as_secs_f64(),
            (load_time + plan_time).as_secs_f64(),
            peak_rss_mb()
        ),
        Some(a) => format!(
            "apply {shape:<7} {N} resources: apply {:>6.3} s ({:.0} steps/s, each persisted with fsync), peak RSS {:>6.1} MB",
            a.as_secs_f64(),
            N as f64 / a.as_secs_f64(),
            peak_rss_mb()
        ),
    };
    println!("{line}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(what), Some(shape)) = (
        args.iter().position(|a| a == "--one").map(|i| &args[i + 1]),
        args.iter().position(|a| a == "--one").map(|i| &args[i + 2]),
    ) {
        run_one(what, shape);
        return;
    }
    println!("skyform engine benchmark: {N} in-memory resources, parallelism 10");
    let me = std::env::current_exe().unwrap();
    for (what, shape) in [
        ("plan", "chain"),
        ("plan", "fanout"),
        ("plan", "random"),
        ("plan", "foreach"),
        ("apply", "random"),
        ("apply", "fanout"),
    ] {
        let st = Command::new(&me).args(["--one", what, shape]).status().unwrap();
        assert!(st.success(), "{what} {shape} failed");
    }
}
