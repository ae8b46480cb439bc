//! Test support for the local testbed: real etcd, kube-apiserver, kube-controller-manager and helm,
//! PostgreSQL, and the GCP emulator wired to them (see `docs/testbed.md`).
//!
//! - [`Testbed::get`] attaches to the running testbed, or starts it once with `scripts/testbed up`
//!   (which holds a file lock, so several test binaries share one testbed), and panics with the reason
//!   when it cannot: a missing part fails the tests loudly.
//! - [`Testbed`] carries the endpoints, the admin token (also the GCP access token), the CA and the paths
//!   of the kubeconfig, kubectl and helm; [`Testbed::kube_client`] and [`kube_client_for`] build kube-rs
//!   clients.
//! - Tests share the testbed, so each works in its own namespace ([`Testbed::namespace`]) or GCP project
//!   ([`Testbed::unique_project`]); [`unique_name`] makes the names.
//! - [`Testbed::command`] (and [`Testbed::kubectl`], [`Testbed::helm`], [`Testbed::gcloud`]) run tools with
//!   the testbed's environment; [`run_ok`] runs one and returns its stdout, panicking with its output on
//!   failure.
#![warn(missing_docs)]

mod attach;
mod client;
mod command;
mod names;

pub use attach::{Error, Testbed};
pub use client::kube_client_for;
pub use command::{copy_dir, gcloud_against, run_ok};
pub use names::unique_name;
