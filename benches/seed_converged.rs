//! How long a plan and a drift of the converged seed deployment take, for both variants, on the
//! testbed (the published chart and the SkyPilot API server in real pods, the GCP emulator, real
//! PostgreSQL), with the GCP calls each makes; and where the time of the last run went
//! (`--timings`). This is what a reviewer waits for on every `plan`, and what the drift CronJob costs.
//!
//! Inside the testbed's network namespace (the bench deploys, measures, then destroys):
//!
//! ```text
//! scripts/testbed up
//! scripts/testbed exec cargo bench --features testbed --bench seed_converged
//! ```
//!
//! `SKYFORM_BENCH_RUNS` (default 5) sets how many plans and drifts are timed per variant.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SKYFORM: &str = env!("CARGO_BIN_EXE_skyform");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART_VERSION: &str = "1.0.0-dev.20260808";

fn main() {
    let tb = skyform_testbed::Testbed::get();
    let runs: usize = std::env::var("SKYFORM_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    println!("Converged seed deployment on the testbed: {runs} runs each, release build, times in seconds");
    println!("{:<10} {:<6} {:>7} {:>7} {:>7} {:>10}", "variant", "verb", "median", "min", "max", "GCP calls");
    let mut last_timings = Vec::new();
    for variant in ["iam", "password"] {
        let d = Deployment::new(tb, variant);
        d.skyform(&["apply", "--auto-approve"], &[0]);
        // One of each first: caches (the kube client's discovery, helm's repository index) warm up
        // as they would between two cron runs of the same image.
        d.skyform(&["plan", "--detailed-exitcode"], &[0]);
        for verb in ["plan", "drift"] {
            let args: &[&str] = if verb == "plan" { &["plan", "--detailed-exitcode"] } else { &["drift"] };
            let mut times = Vec::new();
            let mut calls = 0;
            for _ in 0..runs {
                tb.emulator_admin("DELETE", "/_emulator/stats");
                let start = Instant::now();
                d.skyform(args, &[0]);
                times.push(start.elapsed());
                calls = total_calls(&tb.emulator_admin("GET", "/_emulator/stats"));
            }
            times.sort();
            let s = |d: Duration| format!("{:.2}", d.as_secs_f64());
            println!(
                "{variant:<10} {verb:<6} {:>7} {:>7} {:>7} {calls:>10}",
                s(times[times.len() / 2]),
                s(times[0]),
                s(times[times.len() - 1])
            );
            let o = d.skyform(&[args, &["--timings"]].concat(), &[0]);
            last_timings.push((format!("{variant} {verb}"), String::from_utf8_lossy(&o.stderr).into_owned()));
        }
        d.skyform(&["destroy", "--auto-approve"], &[0]);
    }
    for (what, stderr) in last_timings {
        let report = stderr.split_once("Timings: ").map(|(_, r)| r).unwrap_or("(no report)");
        println!("\n{what}: {report}");
    }
}

/// One variant of the seed, deployed into a project of its own.
struct Deployment<'a> {
    tb: &'a skyform_testbed::Testbed,
    dir: tempfile::TempDir,
    vars: Vec<String>,
    variant: &'static str,
}

impl<'a> Deployment<'a> {
    fn new(tb: &'a skyform_testbed::Testbed, variant: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(format!("{ROOT}/specs/skypilot-{variant}.toml"), dir.path().join("main.toml")).unwrap();
        skyform_testbed::copy_dir(Path::new(&format!("{ROOT}/specs/modules")), &dir.path().join("modules"));
        // What a user with one small node sets (as scripts/demo does).
        std::fs::write(
            dir.path().join("small-node.toml"),
            "skip_resource_check = true\napi_resources = { requests = { cpu = \"500m\", memory = \"2Gi\" } }\n\
             proxy_resources = { requests = { cpu = \"100m\", memory = \"64Mi\" } }\ningress_nginx = false\n",
        )
        .unwrap();
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 100_000;
        let project = format!("sb-{variant}-{stamp}");
        let vars = [
            format!("project={project}"),
            format!("namespace=bench-{variant}"),
            format!("release_name=bench-{variant}"),
            format!("chart_repository={}", tb.env["SKYFORM_TESTBED_HELM_REPO"]),
            format!("chart_version={CHART_VERSION}"),
            "deletion_protection=false".to_string(),
        ]
        .into_iter()
        .flat_map(|v| ["--var".to_string(), v])
        .chain(["--var-file".to_string(), "small-node.toml".to_string()])
        .collect();
        Deployment { tb, dir, vars, variant }
    }

    /// `skyform <args> -f main.toml <vars>`; panics unless it exits with one of `codes`.
    fn skyform(&self, args: &[&str], codes: &[i32]) -> Output {
        let mut c = Command::new(SKYFORM);
        c.args(args)
            .args(["-f", "main.toml"])
            .args(&self.vars)
            .current_dir(self.dir.path())
            .envs(&self.tb.env)
            .env("SKYFORM_VAR_root_password", "bench-Root-4821")
            .env("SKYFORM_VAR_web_password", "bench-Web-4821")
            .env("NO_COLOR", "1");
        if self.variant == "password" {
            c.env("SKYFORM_VAR_db_password", "bench-Db-4821");
        }
        let o = c.output().expect("skyform runs");
        let code = o.status.code().unwrap_or(-1);
        assert!(
            codes.contains(&code),
            "skyform {args:?} exited {code}:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

fn total_calls(stats: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(stats).ok().and_then(|v| v["total"].as_u64()).unwrap_or(0)
}
