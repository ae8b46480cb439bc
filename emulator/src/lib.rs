//! A local emulator of the GCP APIs skyform uses, wire-compatible with the real ones (see the
//! contract in `shared/reference/gcp-rest-contract.md` and `docs/emulator.md`).
//!
//! One HTTP port serves six APIs, each in its own folder, registered with the [`router`]:
//! - Cloud SQL Admin under `/v1/` and `/sql/v1beta4/` ([`sql`]); every instance is a real
//!   PostgreSQL server ([`sql::postgres`]);
//! - IAM service accounts and keys ([`iam`]), with IAM policies ([`policy`]);
//! - Resource Manager v1 and v3 projects and their policies ([`crm`]);
//! - GKE clusters, node pools and operations ([`gke`]), and GKE's authentication and
//!   authorization of Google identities as Kubernetes webhooks for a real kube-apiserver
//!   ([`gke::identity`]);
//! - Service Usage ([`serviceusage`]);
//! - Cloud Storage buckets and objects ([`storage`]), whose bodies are binary.
//!
//! Beside them, how workloads get credentials: the metadata server with Workload Identity, the
//! OAuth 2.0 token endpoint and the pods' DNS ([`metadata`]).
//!
//! Long-running operations progress PENDING → RUNNING → DONE over configurable durations
//! ([`app::App::run_op`]); faults are injected per method from a seeded generator ([`faults`]);
//! `/_emulator/` is the admin API ([`admin`]). With `Config::enforce_iam`, a principal's token
//! needs each method's real IAM permission ([`access`]).
//!
//! # Floors
//!
//! The modules form layers; a module imports only from floors below its own (and, inside one
//! API's folder, from that folder), so there is no import cycle and an API is added by a folder
//! and a line in the router:
//!
//! 1. Bottom: HTTP and errors, small utilities: [`error`] (imports nothing of the crate),
//!    [`http`] (requests, responses, an [`ApiError`] as a response), [`util`].
//! 2. Shared: the app state and what every API relies on: [`contract`] (Google's
//!    discovery documents, which every request and answer is held to), [`config`], [`faults`], [`state`]
//!    (all the saved resources), [`token`] (minted access tokens), [`app`] (the [`app::App`],
//!    long-running operations, the APIs' runtime [`app::Extensions`]), [`policy`] (IAM policy
//!    semantics), [`access`] (IAM enforcement), [`api`] (what an API gives the router).
//! 3. APIs, one folder each, none importing another: [`sql`], [`iam`], [`crm`], [`gke`],
//!    [`serviceusage`], [`storage`], [`metadata`].
//! 4. The [`router`]: registers every API (routes, runtime parts, reset) and runs the request
//!    pipeline.
//! 5. Top: [`admin`] (the admin API) and [`server`] (the HTTP servers, [`Emulator`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gcp_emulator::EmulatorError> {
//! let emu = gcp_emulator::Emulator::start(gcp_emulator::Config::default()).await?;
//! println!("{}", emu.base_url()); // http://127.0.0.1:PORT/
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

// Floor 1: HTTP, errors, utilities.
pub mod error;
pub mod http;
pub mod util;

// Floor 2: shared app state.
pub mod access;
pub mod api;
pub mod app;
pub mod config;
pub mod contract;
pub mod faults;
pub mod policy;
pub mod state;
pub mod token;

// Floor 3: the APIs.
pub mod crm;
pub mod gke;
pub mod iam;
pub mod metadata;
pub mod serviceusage;
pub mod sql;
pub mod storage;

// Floor 4: the router.
pub mod router;

// Floor 5: the admin API and the server.
pub mod admin;
pub mod server;

pub use app::{Settings, Stats};
pub use config::{Config, OpDurations};
pub use error::{ApiError, EmulatorError};
pub use faults::{FaultRule, FaultSpec};
pub use server::Emulator;

/// The floors of the crate docs, checked: the crate modules a module names (`crate::` paths in its
/// code and docs, tests excluded) are below it.
#[cfg(test)]
mod floors {
    use std::path::Path;

    /// Each floor's modules, bottom first, in the order they may import one another (a module
    /// imports only modules before it; on the API floor, none of its own floor).
    const FLOORS: &[&[&str]] = &[
        &["error", "util", "http"],
        &["contract", "config", "faults", "state", "token", "app", "policy", "access", "api"],
        &["crm", "gke", "iam", "metadata", "serviceusage", "sql", "storage"],
        &["router"],
        &["admin", "server"],
    ];
    const API_FLOOR: usize = 2;

    fn place(module: &str) -> Option<(usize, usize)> {
        FLOORS.iter().enumerate().find_map(|(f, ms)| ms.iter().position(|m| *m == module).map(|i| (f, i)))
    }

    /// The `.rs` files under `dir`.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn every_module_imports_only_from_below() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let Some((floor, pos)) = place(&module) else {
                wrong.push(format!("{module}: on no floor (add it to FLOORS and the crate docs)"));
                continue;
            };
            let text = std::fs::read_to_string(&file).expect("readable");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if name.is_empty() || name == module {
                    continue;
                }
                let ok = match place(&name) {
                    Some((f, i)) => f < floor || (f == floor && floor != API_FLOOR && i < pos),
                    None => false,
                };
                if !ok {
                    wrong.push(format!("{}: names crate::{name}", rel.display()));
                }
            }
        }
        wrong.sort();
        wrong.dedup();
        assert!(wrong.is_empty(), "imports against the floors:\n{}", wrong.join("\n"));
    }
}
