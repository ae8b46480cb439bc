//! A local emulator of the GCP APIs skyform uses, wire-compatible with the real ones (see the
//! contract in `shared/reference/gcp-rest-contract.md` and `docs/emulator.md`).
//!
//! One HTTP port serves six APIs, routed by path ([`router`], and [`storage`] for Cloud Storage,
//! whose bodies are binary):
//! - Cloud SQL Admin under `/v1/` and `/sql/v1beta4/` ([`sql`]); every instance is a real
//!   PostgreSQL server ([`sql::postgres`]);
//! - IAM service accounts and keys ([`iam`]), with IAM policies ([`policy`]);
//! - Resource Manager v1 and v3 projects and their policies ([`crm`]);
//! - GKE clusters, node pools and operations ([`gke`]);
//! - Service Usage ([`serviceusage`]);
//! - Cloud Storage buckets and objects ([`storage`]).
//!
//! Long-running operations progress PENDING → RUNNING → DONE over configurable durations
//! ([`app::App::run_op`]); faults are injected per method from a seeded generator ([`faults`]);
//! `/_emulator/` is the admin API ([`admin`]).
//!
//! With `Config::enforce_iam`, a principal's token needs each method's real IAM permission
//! ([`access`]); GKE's authentication and authorization of Google identities are served as
//! Kubernetes webhooks for a real kube-apiserver ([`gke::identity`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gcp_emulator::EmulatorError> {
//! let emu = gcp_emulator::Emulator::start(gcp_emulator::Config::default()).await?;
//! println!("{}", emu.base_url()); // http://127.0.0.1:PORT/
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod access;
pub mod admin;
pub mod app;
pub mod config;
pub mod crm;
pub mod error;
pub mod faults;
pub mod gke;
pub mod http;
pub mod iam;
pub mod metadata;
pub mod policy;
pub mod router;
pub mod server;
pub mod serviceusage;
pub mod sql;
pub mod state;
pub mod storage;
pub mod token;
pub mod util;

pub use app::{Settings, Stats};
pub use config::{Config, OpDurations};
pub use error::{ApiError, EmulatorError};
pub use faults::{FaultRule, FaultSpec};
pub use server::Emulator;
