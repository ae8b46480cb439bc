//! Shared fixture of the GCP provider tests: an in-process emulator, a spec
//! directory with its state, the engine driven like the CLI would, and the real
//! gcloud pointed at the emulator for out-of-band changes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use gcp_emulator::{Config, Emulator, OpDurations};
use skyform::engine::applier::ApplyReport;
use skyform::engine::events::Recorder as EventRecorder;
use skyform::engine::{Cancel, Context, PlanOptions};
use skyform::ops::drift::DriftReport;
use skyform::ops::{self, Loaded, SpecOptions};
use skyform::plan::{Action, Plan};
use skyform::providers::Registry;
use skyform::providers::gcp::GcpFactory;
use skyform::providers::gcp::client::RetryPolicy;

/// The project every test uses.
pub const P: &str = "skyform-test";

/// At most two emulators (each with PostgreSQL servers) run at once.
static SLOTS: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();
const MAX_EMULATORS: usize = 2;

/// A permit held for a test's lifetime.
pub struct Slot;
impl Slot {
    fn take() -> Slot {
        let mut n = SLOTS.lock().unwrap();
        while *n >= MAX_EMULATORS {
            n = FREED.wait(n).unwrap();
        }
        *n += 1;
        Slot
    }
}
impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap() -= 1;
        FREED.notify_one();
    }
}

/// Fast retries and polling for tests (the emulator's operations take ms).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(500),
        attempts: 12,
        poll_initial: Duration::from_millis(25),
        poll_cap: Duration::from_millis(250),
        consistency_window: Duration::from_secs(30),
    }
}

/// Asserts that Google's published contract refused no request of the clients (skyform, gcloud)
/// and found no answer of the emulator outside its response schemas.
pub fn assert_contract_kept(emu: &Emulator) {
    let r = emu.contract();
    assert!(
        r.defects.is_empty() && r.response_defects.is_empty(),
        "outside Google's contract: {}",
        serde_json::to_string_pretty(&r).unwrap_or_default()
    );
}

/// One test's world; when it ends (the test passed so far), nothing sent or answered was outside
/// Google's contract.
pub struct Env {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub factory: Arc<GcpFactory>,
    _slot: Slot,
}

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_contract_kept(&self.emu);
        }
    }
}

impl Env {
    /// Starts an emulator whose operations take `op_ms`.
    pub async fn start(op_ms: u64) -> Env {
        let slot = tokio::task::spawn_blocking(Slot::take).await.unwrap();
        gcp_emulator::contract::ensure_documents();
        let emu = Emulator::start(Config {
            op_durations: OpDurations::uniform(Duration::from_millis(op_ms)),
            ..Default::default()
        })
        .await
        .expect("emulator starts");
        Env {
            emu,
            dir: tempfile::tempdir().unwrap(),
            factory: Arc::new(GcpFactory::new().with_retry(fast_retry())),
            _slot: slot,
        }
    }

    /// The provider block pointing at the emulator.
    pub fn provider_block(&self) -> String {
        format!(
            "[provider.gcp]\nproject = \"{P}\"\nregion = \"us-central1\"\nendpoint = \"{}\"\nanonymous = true\n\n",
            self.emu.base_url()
        )
    }

    /// Writes the spec (the provider block is prepended).
    pub fn spec(&self, body: &str) {
        std::fs::write(self.dir.path().join("main.toml"), format!("{}{body}", self.provider_block())).unwrap();
    }

    /// Writes a spec file as is.
    pub fn spec_file(&self, text: &str) {
        std::fs::write(self.dir.path().join("main.toml"), text).unwrap();
    }

    pub fn load_with(&self, vars: &[String]) -> Loaded {
        let mut reg = Registry::new();
        reg.register(self.factory.clone());
        let opts = SpecOptions {
            file: self.dir.path().join("main.toml"),
            vars: vars.to_vec(),
            var_files: vec![],
            lenient_vars: false,
            policies: vec![],
        };
        ops::load(&opts, reg).unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    pub fn load(&self) -> Loaded {
        self.load_with(&[])
    }

    pub fn ctx(&self, loaded: &Loaded) -> Context {
        loaded.context(Arc::new(EventRecorder::default()), 10, Cancel::new())
    }

    /// Plans; panics on errors.
    pub async fn plan(&self) -> Plan {
        self.try_plan(&[], PlanOptions::default()).await.unwrap_or_else(|e| panic!("plan failed: {e}"))
    }

    /// Plans; returns the error text on failure.
    pub async fn try_plan(&self, vars: &[String], opts: PlanOptions) -> Result<Plan, String> {
        let loaded = self.load_with(vars);
        let ctx = self.ctx(&loaded);
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        s.plan(&ctx, &opts).await.map(|o| o.plan).map_err(|e| e.to_string())
    }

    /// Plans and applies.
    pub async fn apply_with(&self, vars: &[String], opts: PlanOptions) -> (Plan, ApplyReport) {
        let loaded = self.load_with(vars);
        let ctx = self.ctx(&loaded);
        let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
        let planned = s.plan(&ctx, &opts).await.unwrap_or_else(|e| panic!("plan failed: {e}"));
        let report = s.apply(&ctx, &planned.plan).await.unwrap();
        (planned.plan, report)
    }

    /// Plans and applies; panics unless everything succeeded.
    pub async fn apply(&self) -> Plan {
        let (plan, report) = self.apply_with(&[], PlanOptions::default()).await;
        assert!(report.ok(), "apply failed: {:?}", report.failures);
        plan
    }

    /// Destroys everything; panics unless it succeeded.
    pub async fn destroy(&self) -> ApplyReport {
        self.apply_with(&[], PlanOptions { destroy: true, ..Default::default() }).await.1
    }

    /// The drift report.
    pub async fn drift(&self) -> DriftReport {
        let loaded = self.load();
        let ctx = self.ctx(&loaded);
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        ops::drift::drift(&s, &ctx, false).await.unwrap()
    }

    /// Runs the real gcloud against the emulator; panics unless it succeeds.
    pub async fn gcloud(&self, args: &[&str]) -> String {
        let out = self.gcloud_raw(args).await;
        assert!(out.0, "gcloud {args:?} failed:\n{}", out.1);
        out.1
    }

    /// Runs gcloud; (success, stdout + stderr).
    pub async fn gcloud_raw(&self, args: &[&str]) -> (bool, String) {
        skyform_testbed::gcloud_against(self.emu.base_url(), &self.dir.path().join("gcloud"), P, args).await
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(".skyform")
    }

    /// Mutating API calls so far (by the emulator's counts).
    pub fn mutating_calls(&self) -> Vec<(String, u64)> {
        self.emu.stats().requests.into_iter().filter(|(m, n)| *n > 0 && is_mutating(m)).collect()
    }
}

/// Whether an emulator method name is a mutation.
pub fn is_mutating(m: &str) -> bool {
    let read = m.ends_with(".get")
        || m.ends_with(".list")
        || m.ends_with("getIamPolicy")
        || m.ends_with("testIamPermissions")
        || m.ends_with(".batchGet");
    !read
}

/// The change of `addr` in `plan`.
pub fn change<'a>(plan: &'a Plan, addr: &str) -> &'a skyform::plan::ResourceChange {
    let a: skyform::address::Address = addr.parse().unwrap();
    plan.get(&a).unwrap_or_else(|| panic!("{addr} not in plan"))
}

/// The addresses `plan` changes, with their actions.
pub fn actions(plan: &Plan) -> Vec<(String, Action)> {
    plan.changes.iter().filter(|c| c.action.is_change()).map(|c| (c.address.to_string(), c.action)).collect()
}

/// Asserts the plan is empty, showing it if not.
pub fn assert_empty(plan: &Plan, when: &str) {
    assert!(
        !plan.has_changes(),
        "{when}: expected an empty plan, got {:?}\n{}",
        actions(plan),
        skyform::cli::render::plan(plan)
    );
}
