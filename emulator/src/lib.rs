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
//! 2. Shared: the app state and what every API relies on: [`config`], [`faults`], [`state`]
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
