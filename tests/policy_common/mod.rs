//! Shared fixture of the policy tests: a copy of the seed specs (root specs and module) in a
//! temporary directory, planned by the real binary against an in-process GCP emulator with the
//! SkyPilot baseline, and the findings read from `plan --json`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gcp_emulator::{Config, Emulator, OpDurations};

/// The project of every test.
pub const P: &str = "skyform-test";

/// The repository's root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The baseline's directory.
pub fn baseline() -> PathBuf {
    root().join("policies/skypilot-baseline")
}

/// A copy of the seed specs and an emulator.
pub struct Seed {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
}

impl Seed {
    /// Starts the emulator and copies the seed specs.
    pub async fn start() -> Seed {
        gcp_emulator::contract::ensure_documents();
        let emu = Emulator::start(Config {
            op_durations: OpDurations::uniform(Duration::from_millis(20)),
            ..Default::default()
        })
        .await
        .expect("emulator starts");
        let seed = Seed { emu, dir: tempfile::tempdir().unwrap() };
        seed.restore();
        seed
    }

    /// Copies the seed specs again, undoing every edit.
    pub fn restore(&self) {
        let specs = root().join("specs");
        let module = self.dir.path().join("modules/skypilot-gke-cloudsql");
        std::fs::create_dir_all(&module).unwrap();
        for f in ["skypilot-iam.toml", "skypilot-password.toml"] {
            std::fs::copy(specs.join(f), self.dir.path().join(f)).unwrap();
        }
        std::fs::copy(specs.join("modules/skypilot-gke-cloudsql/main.toml"), module.join("main.toml")).unwrap();
    }

    /// Replaces `from` (which must be there) with `to` in the module.
    pub fn edit_module(&self, from: &str, to: &str) {
        self.edit(&self.dir.path().join("modules/skypilot-gke-cloudsql/main.toml"), from, to);
    }

    /// Replaces `from` (which must be there) with `to` in a root spec.
    pub fn edit_root(&self, file: &str, from: &str, to: &str) {
        self.edit(&self.dir.path().join(file), from, to);
    }

    fn edit(&self, path: &Path, from: &str, to: &str) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        std::fs::write(path, text.replace(from, to)).unwrap();
    }

    /// Writes a variable file; its path.
    pub fn var_file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// Runs skyform in the copy against the emulator, with the seed's secrets in the environment.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_skyform"))
            .args(args)
            .current_dir(self.dir.path())
            .env("SKYFORM_GCP_ENDPOINT", self.emu.base_url())
            .env("SKYFORM_GCP_ACCESS_TOKEN", "operator-token")
            .env("SKYFORM_VAR_root_password", "Root-Pw-1-policy")
            .env("SKYFORM_VAR_db_password", "Db-Pw-1-policy")
            .env("SKYFORM_VAR_web_password", "Web-Pw-1-policy")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("skyform runs")
    }

    /// Runs the real gcloud against the emulator: (success, stdout + stderr).
    pub async fn gcloud(&self, args: &[&str]) -> (bool, String) {
        skyform_testbed::gcloud_against(self.emu.base_url(), &self.dir.path().join("gcloud"), P, args).await
    }

    /// The whole `plan --json` document of `file` with the baseline.
    pub fn plan_json(&self, file: &str) -> serde_json::Value {
        let base = baseline().display().to_string();
        let out = self.run(&["plan", "-f", file, "--json", "--var", "project=skyform-test", "--policy", &base]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no plan document ({e}):\n{}", text(&out)))
    }

    /// `plan --json` of `file` with the baseline: exit code, findings, and all it printed.
    pub fn plan(&self, file: &str, extra: &[&str]) -> (i32, Findings, String) {
        let base = baseline().display().to_string();
        let mut args = vec!["plan", "-f", file, "--json", "--var", "project=skyform-test", "--policy", &base];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let text = text(&out);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan --json printed no document ({e}):\n{text}"));
        let findings = serde_json::from_value(doc["policy"]["findings"].clone())
            .unwrap_or_else(|e| panic!("no policy findings in the plan ({e}):\n{text}"));
        (out.status.code().unwrap_or(-1), Findings { findings }, text)
    }
}

/// stdout and stderr.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The policy results of one run.
#[derive(Debug)]
pub struct Findings {
    pub findings: Vec<skyform::policy::Finding>,
}

impl Findings {
    fn of(&self, level: skyform::policy::Level) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .findings
            .iter()
            .filter(|f| f.level == level)
            .map(|f| (f.id.as_deref().unwrap_or("-"), f.address.as_deref().unwrap_or("-")))
            .collect();
        v.sort();
        v
    }
    /// (id, address) of every deny, sorted.
    pub fn denies(&self) -> Vec<(&str, &str)> {
        self.of(skyform::policy::Level::Deny)
    }
    /// (id, address) of every warning, sorted.
    pub fn warns(&self) -> Vec<(&str, &str)> {
        self.of(skyform::policy::Level::Warn)
    }
}
