//! Shared harness of the Kubernetes, Helm and PostgreSQL provider tests: a spec
//! in a temporary directory, planned, applied, drift-checked and destroyed
//! through the engine, with the builtin providers.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use skyform::cli::render;
use skyform::engine::applier::ApplyReport;
use skyform::engine::events::Recorder;
use skyform::engine::{Cancel, PlanOptions};
use skyform::ops::drift::DriftReport;
use skyform::ops::{self, Loaded, SpecOptions};
use skyform::plan::{Action, Plan, ResourceChange};
use skyform::providers::Registry;

/// A spec directory with its state.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub vars: Vec<String>,
    /// The helm binary (a spec cannot name one).
    pub helm: Option<std::path::PathBuf>,
}

impl Fixture {
    pub fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.toml"), spec).unwrap();
        Fixture { dir, vars: vec![], helm: None }
    }

    pub fn write(&self, spec: &str) {
        std::fs::write(self.dir.path().join("main.toml"), spec).unwrap();
    }

    pub fn load(&self) -> Loaded {
        let opts = SpecOptions {
            file: self.dir.path().join("main.toml"),
            vars: self.vars.clone(),
            var_files: vec![],
            lenient_vars: false,
            policies: vec![],
        };
        let mut registry = Registry::builtin();
        if let Some(helm) = &self.helm {
            registry.register(std::sync::Arc::new(skyform::providers::helm::HelmFactory::with_program(helm.clone())));
        }
        ops::load(&opts, registry).unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    pub async fn plan(&self) -> Plan {
        self.plan_with(PlanOptions::default()).await
    }

    /// Plans, expecting it to fail; the error text.
    pub async fn plan_error(&self) -> String {
        let loaded = self.load();
        let ctx = loaded.context(std::sync::Arc::new(Recorder::default()), 4, Cancel::new());
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        s.plan(&ctx, &PlanOptions::default()).await.err().expect("the plan fails").to_string()
    }

    pub async fn plan_with(&self, opts: PlanOptions) -> Plan {
        let loaded = self.load();
        let ctx = loaded.context(std::sync::Arc::new(Recorder::default()), 4, Cancel::new());
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        s.plan(&ctx, &opts).await.unwrap_or_else(|e| panic!("plan failed: {e}")).plan
    }

    async fn run(&self, opts: PlanOptions) -> ApplyReport {
        let loaded = self.load();
        let ctx = loaded.context(std::sync::Arc::new(Recorder::default()), 4, Cancel::new());
        let mut s = ops::apply::open(&loaded, Some("apply"), Duration::from_secs(30)).unwrap();
        let planned = s.plan(&ctx, &opts).await.unwrap_or_else(|e| panic!("plan failed: {e}"));
        let report = s.apply(&ctx, &planned.plan).await.unwrap_or_else(|e| panic!("apply failed: {e}"));
        assert!(report.ok(), "apply failed: {:?}\n{}", report.failures, render::plan(&planned.plan));
        report
    }

    pub async fn apply(&self) -> ApplyReport {
        self.run(PlanOptions::default()).await
    }

    pub async fn destroy(&self) -> ApplyReport {
        self.run(PlanOptions { destroy: true, ..Default::default() }).await
    }

    pub async fn drift(&self) -> DriftReport {
        let loaded = self.load();
        let ctx = loaded.context(std::sync::Arc::new(Recorder::default()), 4, Cancel::new());
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        ops::drift::drift(&s, &ctx, false).await.unwrap_or_else(|e| panic!("drift failed: {e}"))
    }

    /// Asserts that a fresh plan has no changes, showing it otherwise.
    pub async fn assert_clean(&self) {
        let p = self.plan().await;
        assert!(!p.has_changes(), "expected an empty plan:\n{}", render::plan(&p));
    }
}

/// The one change of `plan` for `address` (`type.name`).
pub fn change<'a>(plan: &'a Plan, address: &str) -> &'a ResourceChange {
    plan.changes
        .iter()
        .find(|c| c.address.to_string() == address)
        .unwrap_or_else(|| panic!("no change for {address} in:\n{}", render::plan(plan)))
}

/// Asserts `plan` updates exactly `address`, changing exactly `attrs`.
pub fn assert_updates(plan: &Plan, address: &str, attrs: &[&str]) {
    let changed: Vec<&ResourceChange> = plan.changes.iter().filter(|c| c.action.is_change()).collect();
    assert_eq!(changed.len(), 1, "expected one change:\n{}", render::plan(plan));
    let c = change(plan, address);
    assert_eq!(c.action, Action::Update, "{}", render::plan(plan));
    assert_eq!(c.changed, attrs, "{}", render::plan(plan));
}

/// Runs a command, panicking with its output when it fails; its stdout.
pub fn run(cmd: &mut Command) -> String {
    skyform_testbed::run_ok(cmd)
}

/// TOML basic-string escaping of a path or value.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
