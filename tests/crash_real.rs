//! Crash safety of the real providers: the seed deployment (both variants) is
//! applied by the real `skyform` binary against the GCP emulator (with
//! realistic, scaled-down operation durations), the testbed's kube-apiserver
//! and the real helm, and killed with SIGKILL while one resource's create,
//! update or delete is in flight, or at a random moment. Then ONE more run must
//! succeed, the re-plan must be empty, and the emulator must hold no duplicate
//! (one instance, one cluster, one account, one key per key resource, each
//! role binding member once); a killed destroy re-run once leaves nothing.
//!
//! Kill points: by default (CI), for each variant and each resource type (its
//! first address), the create (then, on the same deployment, the delete); the
//! update of the resources a spec edit changes (password variant); one random
//! moment per variant. Four kill points run at a time (`SKYFORM_CRASH_JOBS`). More by hand:
//! `SKYFORM_CRASH_POINTS=all` (every address × create/update/delete, both
//! variants) and `SKYFORM_CRASH_RANDOM=<n>` random moments per variant.
//! `SKYFORM_CRASH_ONLY=<substring>` keeps the kill points whose label contains
//! it. Each kill point prints one line; the test fails listing every kill point
//! that did not converge on its first re-run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gcp_emulator::{Config, Emulator, FaultRule, FaultSpec, OpDurations};
use serde_json::Value as Json;
use skyform_testbed::{Testbed, unique_name};

const SKYFORM: &str = env!("CARGO_BIN_EXE_skyform");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Realistic durations, scaled down so that a kill point costs seconds: the
/// shape (Cloud SQL create longest, then GKE, then the rest) is what matters.
fn durations() -> OpDurations {
    let mut d = OpDurations::uniform(Duration::from_millis(400));
    d.per_type.insert("sql.CREATE".into(), Duration::from_millis(3_000));
    d.per_type.insert("container.CREATE_CLUSTER".into(), Duration::from_millis(2_000));
    d.per_type.insert("sql.DELETE".into(), Duration::from_millis(1_200));
    d.per_type.insert("container.DELETE_CLUSTER".into(), Duration::from_millis(1_200));
    d
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Killed during the create; after the re-run converged, killed during
    /// the delete of the same resource in a destroy.
    CreateDelete,
    Update,
    Random,
}

#[derive(Clone, Debug)]
struct KillPoint {
    variant: &'static str,
    address: String,
    phase: Phase,
    /// After the address's step starts (or, for `Random`, after apply starts).
    delay: Duration,
}

impl KillPoint {
    fn label(&self) -> String {
        format!("[{}] {:?} {} +{}ms", self.variant, self.phase, self.address, self.delay.as_millis())
    }
}

/// The instance addresses of a variant's spec (expanded: modules, for_each).
fn addresses(variant: &str) -> Vec<String> {
    let opts = skyform::ops::SpecOptions {
        file: format!("{ROOT}/specs/skypilot-{variant}.toml").into(),
        vars: vec![],
        var_files: vec![],
        lenient_vars: true,
        policies: vec![],
    };
    let loaded = skyform::ops::load(&opts, skyform::providers::Registry::builtin()).unwrap_or_else(|e| panic!("{e}"));
    loaded.spec.resources.keys().map(|a| a.to_string()).collect()
}

/// The spec edit of the update kill points (and the secrets it changes): a
/// display name, the instance tier, deletion protection lifted, new passwords.
const UPDATED: &[(&str, &str)] = &[
    ("display_name = \"skypilot-cloud-sql-access\"", "display_name = \"skypilot (edited)\""),
    ("tier = \"db-custom-1-3840\"", "tier = \"db-custom-2-7680\""),
];
const UPDATED_ADDRESSES: &[&str] = &[
    "module.skypilot.gcp_service_account.sql_access",
    "module.skypilot.gcp_sql_instance.skypilot",
    "gcp_sql_user.skypilot",
    "k8s_secret.db_connection",
    "helm_release.skypilot",
];

fn kill_points(variant: &'static str, seed: u64) -> Vec<KillPoint> {
    let all = std::env::var("SKYFORM_CRASH_POINTS").as_deref() == Ok("all");
    let randoms: usize = std::env::var("SKYFORM_CRASH_RANDOM").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let only = std::env::var("SKYFORM_CRASH_ONLY").ok();
    let mut rng = seed;
    let mut next = move |n: u64| {
        // xorshift: reproducible from the printed seed.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    let mut points = Vec::new();
    let mut types_seen = std::collections::BTreeSet::new();
    {
        for address in addresses(variant) {
            let ty = address.parse::<skyform::address::Address>().map(|a| a.type_name).unwrap_or_default();
            let first_of_type = types_seen.insert(ty);
            // A sync API call is short: kill right after its step starts (the
            // request may or may not have reached the API); a long operation
            // is killed while it runs.
            let delay = Duration::from_millis(
                if address.contains("gcp_sql_instance.") || address.contains("gcp_container_cluster.") {
                    700 + next(800)
                } else {
                    next(150)
                },
            );
            if all || first_of_type {
                points.push(KillPoint { variant, address: address.clone(), phase: Phase::CreateDelete, delay });
            }
            if (all || variant == "password") && UPDATED_ADDRESSES.contains(&address.as_str()) {
                points.push(KillPoint { variant, address, phase: Phase::Update, delay });
            }
        }
        for _ in 0..randoms {
            let delay = Duration::from_millis(next(9_000));
            points.push(KillPoint { variant, address: "(random moment)".into(), phase: Phase::Random, delay });
        }
    }
    points.retain(|p| only.as_deref().is_none_or(|o| p.label().contains(o)));
    points
}

/// One emulator for the whole test, wired to the testbed's apiserver as GKE.
struct World {
    rt: tokio::runtime::Runtime,
    emu: Emulator,
    tb: &'static Testbed,
    http: reqwest::Client,
}

impl World {
    fn start() -> World {
        let tb = Testbed::get();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        gcp_emulator::contract::ensure_documents();
        let emu = rt
            .block_on(Emulator::start(Config {
                op_durations: durations(),
                gke_endpoint: tb.kube_api.clone(),
                gke_ca_pem: tb.kube_ca_pem.clone(),
                ..Default::default()
            }))
            .expect("the emulator starts");
        let _ = rustls::crypto::ring::default_provider().install_default();
        World { rt, emu, tb, http: reqwest::Client::new() }
    }

    fn get(&self, path: &str) -> Json {
        let url = format!("{}{path}", self.emu.base_url());
        self.rt.block_on(async {
            let r = self.http.get(&url).send().await.unwrap();
            let status = r.status();
            let body: Json = r.json().await.unwrap_or(Json::Null);
            if status.as_u16() == 404 { Json::Null } else { body }
        })
    }

    fn post(&self, path: &str, body: &Json) -> Json {
        let url = format!("{}{path}", self.emu.base_url());
        self.rt.block_on(async {
            self.http.post(&url).json(body).send().await.unwrap().json().await.unwrap_or(Json::Null)
        })
    }

    fn set_faults(&self, spec: &FaultSpec) {
        self.emu.set_faults(spec.clone()).expect("faults set");
    }
}

/// One deployment: its own project, namespace and spec directory.
struct Deployment<'w> {
    w: &'w World,
    variant: &'static str,
    project: String,
    namespace: String,
    dir: tempfile::TempDir,
    secrets: Vec<(String, String)>,
}

impl<'w> Deployment<'w> {
    fn new(w: &'w World, variant: &'static str) -> Self {
        let project = unique_name(&format!("crash-{variant}"));
        let namespace = unique_name(&format!("crash-{variant}"));
        let dir = tempfile::tempdir().unwrap();
        let spec = std::fs::read_to_string(format!("{ROOT}/specs/skypilot-{variant}.toml")).unwrap();
        std::fs::write(dir.path().join("main.toml"), spec).unwrap();
        skyform_testbed::copy_dir(std::path::Path::new(&format!("{ROOT}/specs/modules")), &dir.path().join("modules"));
        let n = std::process::id();
        let secrets = vec![
            ("SKYFORM_VAR_root_password".to_string(), format!("root-{n}-pw")),
            ("SKYFORM_VAR_web_password".to_string(), format!("web-{n}-pw")),
            ("SKYFORM_VAR_db_password".to_string(), format!("db-{n}-pw")),
        ];
        Deployment { w, variant, project, namespace, dir, secrets }
    }

    /// Edits the spec and the secrets as the update kill points do.
    fn edit(&mut self) {
        let path = self.dir.path().join("modules/skypilot-gke-cloudsql/main.toml");
        let mut spec = std::fs::read_to_string(&path).unwrap();
        for (from, to) in UPDATED {
            assert!(spec.contains(from), "the spec no longer holds {from}");
            spec = spec.replace(from, to);
        }
        std::fs::write(path, spec).unwrap();
        for (k, v) in &mut self.secrets {
            if k != "SKYFORM_VAR_root_password" {
                v.push_str("-2");
            }
        }
    }

    fn cmd(&self, verb: &str, extra: &[&str]) -> Command {
        let mut c = self.w.tb.command(SKYFORM);
        c.current_dir(self.dir.path())
            .env("SKYFORM_GCP_ENDPOINT", self.w.emu.base_url())
            .env("SKYFORM_GCP_ACCESS_TOKEN", &self.w.tb.token)
            .env("NO_COLOR", "1")
            .args(verb.split(' '))
            .args(["-f", "main.toml"])
            .args(["--var", &format!("project={}", self.project)])
            .args(["--var", &format!("namespace={}", self.namespace)])
            .args(["--var", &format!("chart={ROOT}/testdata/charts/skypilot-like")])
            .args(["--var", "deletion_protection=false"])
            .args(extra)
            .stdin(Stdio::null());
        // Today's specs take the chart from a repository; the local chart has none (the previous specs
        // of the migration test have no such variable).
        let spec = std::fs::read_to_string(self.dir.path().join("main.toml")).unwrap_or_default();
        if spec.contains("[variable.chart_repository]") {
            // The local chart's pods never become ready (its image is not built): do not wait for them.
            c.args(["--var", "chart_repository=", "--var", "wait_until_ready=false"]);
        }
        // Nor check that the server answers (it never runs here).
        if verb == "apply" || verb == "drift" {
            c.arg("--skip-checks");
        }
        if self.variant == "iam" {
            c.env_remove("SKYFORM_VAR_db_password");
        }
        for (k, v) in &self.secrets {
            if self.variant == "iam" && k == "SKYFORM_VAR_db_password" {
                continue;
            }
            c.env(k, v);
        }
        c
    }

    fn run(&self, verb: &str, extra: &[&str]) -> Output {
        self.cmd(verb, extra).output().unwrap()
    }

    /// Runs `verb`, and SIGKILLs it `delay` after `address` starts `doing`
    /// (or `delay` after it starts, for a random moment). Whether the kill
    /// landed before the run ended is returned.
    fn run_killed(&self, verb: &str, doing: Option<(&str, &str)>, delay: Duration) -> (bool, String) {
        let mut child: Child =
            self.cmd(verb, &["--auto-approve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let started = Instant::now();
        let mut seen = String::new();
        let trigger = doing.map(|(a, verb)| format!("{a}: {verb}..."));
        let mut fire_at = trigger.is_none().then(|| started + delay);
        let limit = started + Duration::from_secs(240);
        loop {
            if let Some(t) = fire_at
                && Instant::now() >= t
            {
                break;
            }
            if Instant::now() > limit {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => {
                    if fire_at.is_none() && trigger.as_deref() == Some(line.as_str()) {
                        fire_at = Some(Instant::now() + delay);
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let _ = reader.join();
        (!finished && fire_at.is_some(), seen)
    }

    /// What the emulator holds for this deployment's project: every problem found.
    fn duplicates(&self) -> Vec<String> {
        let w = self.w;
        let p = &self.project;
        let mut bad = Vec::new();
        let count = |j: &Json, k: &str| j[k].as_array().map_or(0, Vec::len);
        let instances = w.get(&format!("v1/projects/{p}/instances"));
        if count(&instances, "items") != 1 {
            bad.push(format!("{} Cloud SQL instances", count(&instances, "items")));
        }
        let clusters = w.get(&format!("v1/projects/{p}/locations/-/clusters"));
        if count(&clusters, "clusters") != 1 {
            bad.push(format!("{} GKE clusters", count(&clusters, "clusters")));
        }
        let accounts = w.get(&format!("v1/projects/{p}/serviceAccounts"));
        if count(&accounts, "accounts") != 1 {
            bad.push(format!("{} service accounts", count(&accounts, "accounts")));
        }
        let sa = format!("skypilot-cloud-sql-access@{p}.iam.gserviceaccount.com");
        let keys = w.get(&format!("v1/projects/{p}/serviceAccounts/{sa}/keys?keyTypes=USER_MANAGED"));
        let want_keys = usize::from(self.variant == "password");
        if count(&keys, "keys") != want_keys {
            bad.push(format!("{} user-managed keys (want {want_keys})", count(&keys, "keys")));
        }
        for policy in [
            w.post(&format!("v1/projects/{p}:getIamPolicy"), &serde_json::json!({})),
            w.post(&format!("v1/projects/{p}/serviceAccounts/{sa}:getIamPolicy"), &serde_json::json!({})),
        ] {
            let mut roles = std::collections::BTreeSet::new();
            for b in policy["bindings"].as_array().cloned().unwrap_or_default() {
                let role = b["role"].as_str().unwrap_or_default().to_string();
                if !roles.insert(role.clone()) {
                    bad.push(format!("role {role} bound twice"));
                }
                let members: Vec<&str> =
                    b["members"].as_array().map(|m| m.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
                let unique: std::collections::BTreeSet<&&str> = members.iter().collect();
                if unique.len() != members.len() {
                    bad.push(format!("a member twice in {role}"));
                }
            }
        }
        let inst = "cloud-sql-skypilot-instance";
        let dbs = w.get(&format!("v1/projects/{p}/instances/{inst}/databases"));
        let n = dbs["items"].as_array().map_or(0, |l| l.iter().filter(|d| d["name"] == "skypilot-db").count());
        if n != 1 {
            bad.push(format!("{n} databases skypilot-db"));
        }
        let releases = self.w.tb.helm().args(["list", "-a", "-n", &self.namespace, "-o", "json"]).output().unwrap();
        let list: Json = serde_json::from_slice(&releases.stdout).unwrap_or(Json::Null);
        let rels: Vec<String> = list
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|r| format!("{}:{}", r["name"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        if rels != ["skypilot:deployed"] {
            bad.push(format!("helm releases {rels:?}"));
        }
        bad
    }

    /// What is left after a destroy.
    fn leftovers(&self) -> Vec<String> {
        let w = self.w;
        let p = &self.project;
        let mut left = Vec::new();
        for (what, path, key) in [
            ("instances", format!("v1/projects/{p}/instances"), "items"),
            ("clusters", format!("v1/projects/{p}/locations/-/clusters"), "clusters"),
            ("service accounts", format!("v1/projects/{p}/serviceAccounts"), "accounts"),
        ] {
            let n = w.get(&path)[key].as_array().map_or(0, Vec::len);
            if n > 0 {
                left.push(format!("{n} {what}"));
            }
        }
        let ns = self
            .w
            .tb
            .kubectl()
            .args(["get", "namespace", &self.namespace, "--ignore-not-found", "-o", "name"])
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&ns.stdout).trim().is_empty() {
            left.push(format!("namespace {}", self.namespace));
        }
        left
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs one kill point; `Err` says what did not converge.
fn run_point(w: &World, kp: &KillPoint) -> Result<&'static str, String> {
    let mut d = Deployment::new(w, kp.variant);
    let secrets: Vec<String> = d.secrets.iter().map(|(_, v)| v.clone()).collect();
    let check_output = |what: &str, o: &str| -> Result<(), String> {
        match secrets.iter().find(|s| o.contains(s.as_str())) {
            Some(_) => Err(format!("{what}: a secret was printed")),
            None => Ok(()),
        }
    };
    let mut landed: bool;
    match kp.phase {
        Phase::CreateDelete | Phase::Random => {
            let doing = (kp.phase == Phase::CreateDelete).then_some((kp.address.as_str(), "Creating"));
            let (l, seen) = d.run_killed("apply", doing, kp.delay);
            landed = l;
            check_output("killed apply", &seen)?;
            let o = d.run("apply", &["--auto-approve"]);
            check_output("re-run", &text(&o))?;
            if !o.status.success() {
                return Err(format!("the first re-run of apply failed:\n{}", text(&o)));
            }
        }
        Phase::Update => {
            let o = d.run("apply", &["--auto-approve"]);
            if !o.status.success() {
                return Err(format!("the first apply failed:\n{}", text(&o)));
            }
            d.edit();
            let (l, seen) = d.run_killed("apply", Some((kp.address.as_str(), "Modifying")), kp.delay);
            landed = l;
            check_output("killed update", &seen)?;
            let o = d.run("apply", &["--auto-approve"]);
            check_output("re-run", &text(&o))?;
            if !o.status.success() {
                return Err(format!("the first re-run of the update failed:\n{}", text(&o)));
            }
        }
    }
    let o = d.run("plan", &["--detailed-exitcode"]);
    if o.status.code() != Some(0) {
        return Err(format!("the re-plan after the re-run is not empty (exit {:?}):\n{}", o.status.code(), text(&o)));
    }
    let dups = d.duplicates();
    if !dups.is_empty() {
        return Err(format!("the emulator holds duplicates or strays: {}", dups.join("; ")));
    }
    // Destroy: killed while this resource is deleted, then once more.
    if kp.phase == Phase::CreateDelete {
        let (l, seen) = d.run_killed("destroy", Some((kp.address.as_str(), "Destroying")), kp.delay);
        landed &= l;
        check_output("killed destroy", &seen)?;
    }
    let o = d.run("destroy", &["--auto-approve"]);
    if !o.status.success() {
        return Err(format!("the (first re-run of) destroy failed:\n{}", text(&o)));
    }
    let left = d.leftovers();
    if !left.is_empty() {
        return Err(format!("destroy left {}", left.join(", ")));
    }
    Ok(if landed { "killed mid-run" } else { "run ended before the kill" })
}

/// Runs `points` one after another; (failures, kills that landed mid-run).
fn run_points(w: &World, points: &[KillPoint]) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut landed = 0;
    for kp in points {
        let t = Instant::now();
        match run_point(w, kp) {
            Ok(how) => {
                landed += usize::from(how == "killed mid-run");
                eprintln!("  ok    {} ({how}, {:.1}s)", kp.label(), t.elapsed().as_secs_f64());
            }
            Err(e) => {
                eprintln!("  FAIL  {}: {e}", kp.label());
                failures.push(format!("{}: {e}", kp.label()));
            }
        }
    }
    (failures, landed)
}

#[test]
fn killed_applies_and_destroys_converge_on_the_first_re_run() {
    let w = World::start();
    let seed = std::env::var("SKYFORM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let per_variant: Vec<Vec<KillPoint>> = ["password", "iam"].iter().map(|v| kill_points(v, seed)).collect();
    let total: usize = per_variant.iter().map(Vec::len).sum();
    // Each kill point's deployment has its own project and namespace: the points run
    // SKYFORM_CRASH_JOBS at a time (default 4), the two variants' interleaved. They mostly wait for
    // (scaled) operations and for helm.
    let jobs: usize = std::env::var("SKYFORM_CRASH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(4).max(1);
    eprintln!("crash test: {total} kill points (SKYFORM_CRASH_SEED={seed}), {jobs} at a time");
    let mut lanes: Vec<Vec<KillPoint>> = vec![Vec::new(); jobs];
    let longest = per_variant.iter().map(Vec::len).max().unwrap_or(0);
    let interleaved = (0..longest).flat_map(|i| per_variant.iter().filter_map(move |pts| pts.get(i)));
    for (i, kp) in interleaved.enumerate() {
        lanes[i % jobs].push(kp.clone());
    }
    let (mut failures, mut landed) = (Vec::new(), 0);
    std::thread::scope(|s| {
        let handles: Vec<_> = lanes.iter().map(|pts| s.spawn(|| run_points(&w, pts))).collect();
        for h in handles {
            let (f, l) = h.join().expect("a lane of kill points panicked");
            failures.extend(f);
            landed += l;
        }
    });
    eprintln!(
        "crash test: {} of {total} kill points converged on the first re-run ({landed} killed mid-run)",
        total - failures.len()
    );
    assert!(total > 0, "no kill point selected");
    assert!(failures.is_empty(), "{} kill points did not converge:\n{}", failures.len(), failures.join("\n\n"));
    // Most kill points must really have landed mid-run, or the test proves little.
    assert!(landed * 10 >= total * 7, "only {landed} of {total} kills landed mid-run");
}

/// 20% injected 429/503 and 200 ms latency on every API, plus one SIGKILL:
/// the next run still converges with no duplicate.
#[test]
fn faults_and_a_kill_still_converge() {
    let w = World::start();
    w.set_faults(&FaultSpec {
        seed: Some(7),
        latency_ms: 200,
        rules: vec![
            FaultRule { method: "*".into(), code: 429, rate: 0.1, latency_ms: 0, retry_delay: Some("0.2s".into()) },
            FaultRule { method: "*".into(), code: 503, rate: 0.1, latency_ms: 0, retry_delay: None },
        ],
    });
    let d = Deployment::new(&w, "password");
    let (landed, _) = d.run_killed(
        "apply",
        Some(("module.skypilot.gcp_sql_database.skypilot", "Creating")),
        Duration::from_millis(100),
    );
    assert!(landed, "the kill did not land while the database was created");
    let o = d.run("apply", &["--auto-approve"]);
    assert!(o.status.success(), "the re-run under faults failed:\n{}", text(&o));
    w.emu.clear_faults();
    let o = d.run("plan", &["--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "re-plan not empty:\n{}", text(&o));
    assert_eq!(d.duplicates(), Vec::<String>::new());
    let o = d.run("destroy", &["--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

/// A deployment applied with the seed specs of before the module
/// (`testdata/seed-v1/`) re-plans with no changes under today's specs: the
/// `[[moved]]` blocks move every record into the module, nothing is created or
/// destroyed, and the next plan has nothing left to move.
#[test]
fn a_deployment_of_the_previous_seed_specs_migrates_with_only_the_new_values() {
    let w = World::start();
    std::thread::scope(|s| {
        for variant in ["password", "iam"] {
            let w = &w;
            s.spawn(move || {
                let d = Deployment::new(w, variant);
                let path = d.dir.path().join("main.toml");
                let today = std::fs::read_to_string(&path).unwrap();
                let before = std::fs::read_to_string(format!("{ROOT}/testdata/seed-v1/skypilot-{variant}.toml")).unwrap();
                std::fs::write(&path, before).unwrap();
                let o = d.run("apply", &["--auto-approve"]);
                assert!(o.status.success(), "[{variant}] apply with the old spec:\n{}", text(&o));
                std::fs::write(&path, today).unwrap();
                // Every object keeps its place in the world: moves, and one change, the release's values
                // that today's specs set (the chart's resources, ingress-nginx, the proxy key's id).
                let o = d.run("plan", &["--detailed-exitcode"]);
                let out = text(&o);
                assert_eq!(o.status.code(), Some(2), "[{variant}] the migration plan:\n{out}");
                assert!(out.contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy."), "[{variant}] {out}");
                assert!(out.contains("# helm_release.skypilot will be updated in-place"), "[{variant}] {out}");
                assert!(
                    out.contains("# gcp_sql_instance.skypilot has moved to module.skypilot.gcp_sql_instance.skypilot"),
                    "[{variant}] {out}"
                );
                assert!(
                    out.contains("# gcp_project_iam_member.sql_client has moved to module.skypilot.gcp_project_iam_member.role[\"roles/cloudsql.client\"]"),
                    "[{variant}] {out}"
                );
                let o = d.run("apply", &["--auto-approve"]);
                assert!(o.status.success(), "[{variant}] the migration apply:\n{}", text(&o));
                let o = d.run("plan", &["--detailed-exitcode"]);
                assert_eq!(o.status.code(), Some(0), "[{variant}] after the migration:\n{}", text(&o));
                assert!(!text(&o).contains("has moved"), "[{variant}] moves are done: {}", text(&o));
                let o = d.run("state list", &[]);
                let listed = String::from_utf8_lossy(&o.stdout).to_string();
                assert!(listed.contains("module.skypilot.gcp_project_service.api[\"iam.googleapis.com\"]"), "[{variant}] {listed}");
                assert_eq!(d.duplicates(), Vec::<String>::new(), "[{variant}]");
                let o = d.run("destroy", &["--auto-approve"]);
                assert!(o.status.success(), "[{variant}] {}", text(&o));
                assert_eq!(d.leftovers(), Vec::<String>::new(), "[{variant}]");
            });
        }
    });
}
