//! Apply of 10,000 in-memory resources (fan-out: one root, 9,999 leaves, parallelism 10) with the
//! state in the local files and with the state in a Cloud Storage bucket on the GCP emulator
//! (loopback, in-process), each in a child process of its own. Run with
//! `cargo bench --bench state_gcs`. The target: the bucket within 2x the local files.

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
const BUCKET: &str = "bench-state";

fn spec(gcs: bool) -> String {
    let mut s = String::with_capacity(N * 80);
    if gcs {
        s.push_str(&format!("[backend.gcs]\nbucket = \"{BUCKET}\"\nprefix = \"bench\"\n\n"));
    }
    for i in 0..N {
        s.push_str(&format!("[resource.test_object.r{i}]\nname = \"r{i}\"\n"));
        if i > 0 {
            s.push_str("value = \"${test_object.r0.id}\"\n");
        }
    }
    s
}

/// One apply in this process: `gcs` when the parent gave it an emulator (`SKYFORM_GCP_ENDPOINT`).
fn run_one(backend: &str) {
    let gcs = backend == "gcs";
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, spec(gcs)).unwrap();
    let mut reg = Registry::new();
    reg.register(Arc::new(MemoryFactory::new()));
    let loaded =
        ops::load(&SpecOptions { file, vars: vec![], var_files: vec![], lenient_vars: false, policies: vec![] }, reg)
            .unwrap();
    let ctx = loaded.context(Arc::new(NoHook), 10, Cancel::new());
    let apply = rt.block_on(async {
        let mut s = ops::apply::open(&loaded, Some("bench"), Duration::ZERO).unwrap();
        let planned = s.plan(&ctx, &PlanOptions::default()).await.unwrap();
        let t = Instant::now();
        let report = s.apply(&ctx, &planned.plan).await.unwrap();
        assert!(report.ok(), "{:?}", report.failures.first());
        t.elapsed()
    });
    println!(
        "apply fanout {N} resources, state {:<24} {:>6.3} s ({:.0} steps/s)",
        if gcs { "in a bucket (emulator):" } else { "in local files (fsync):" },
        apply.as_secs_f64(),
        N as f64 / apply.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        run_one(&args[i + 1]);
        return;
    }
    println!("skyform state benchmark: apply of {N} in-memory resources, parallelism 10");
    let me = std::env::current_exe().unwrap();
    let st = Command::new(&me).args(["--one", "local"]).status().unwrap();
    assert!(st.success(), "local failed");
    // The emulator runs here; the apply in a child process of its own.
    skyform::foundation::net::install_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    gcp_emulator::contract::ensure_documents();
    let emu = rt.block_on(gcp_emulator::Emulator::start(gcp_emulator::Config::default())).unwrap();
    let url = format!("{}storage/v1/b?project=bench", emu.base_url());
    rt.block_on(async {
        let r = reqwest::Client::new().post(url).json(&serde_json::json!({"name": BUCKET})).send().await.unwrap();
        assert!(r.status().is_success());
    });
    let before = emu.stats().total;
    let st = Command::new(&me)
        .args(["--one", "gcs"])
        .env("SKYFORM_GCP_ENDPOINT", emu.base_url())
        .env("SKYFORM_GCP_ACCESS_TOKEN", "bench")
        .status()
        .unwrap();
    assert!(st.success(), "gcs failed");
    let stats = emu.stats();
    println!(
        "  Storage requests of the plan and the apply: {} ({:.2} per resource): {:?}",
        stats.total - before,
        (stats.total - before) as f64 / N as f64,
        stats.requests
    );
    rt.block_on(emu.shutdown());
}
