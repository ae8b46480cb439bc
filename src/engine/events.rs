//! Events the engine emits while it works. The engine never prints: the CLI
//! renders these (human lines or a JSON stream).

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::plan::{Action, Summary};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A resource's operation started.
    Started {
        /// Which.
        address: Address,
        /// What.
        action: Action,
    },
    /// A long operation is still running.
    Progress {
        /// Which.
        address: Address,
        /// What.
        action: Action,
        /// How long so far.
        elapsed_secs: u64,
        /// What the provider last said about it (`1/1 pods Running, 0/1 Ready`), if anything.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A resource's operation finished.
    Finished {
        /// Which.
        address: Address,
        /// What.
        action: Action,
        /// How long it took.
        elapsed_ms: u64,
        /// The identity of the object, rendered for people.
        id: Option<String>,
    },
    /// A resource's operation failed.
    Failed {
        /// Which.
        address: Address,
        /// What.
        action: Action,
        /// Why (no secrets).
        message: String,
    },
    /// Not attempted because a dependency failed.
    Skipped {
        /// Which.
        address: Address,
        /// The failed dependency.
        because_of: Address,
    },
    /// Ctrl-C while the resource's long-running operation ran: the operation
    /// goes on at the API and is recorded as pending; the next apply resumes it.
    Interrupted {
        /// Which.
        address: Address,
        /// What.
        action: Action,
    },
    /// Not attempted because of Ctrl-C.
    Cancelled {
        /// Which.
        address: Address,
    },
    /// A check started.
    CheckStarted {
        /// The check's name.
        name: String,
    },
    /// A check has not passed yet and is retried.
    CheckProgress {
        /// The check's name.
        name: String,
        /// How long so far.
        elapsed_secs: u64,
        /// What the last attempt saw (no secrets).
        detail: String,
    },
    /// A check passed.
    CheckPassed {
        /// The check's name.
        name: String,
        /// How long it took.
        elapsed_ms: u64,
        /// The status received.
        status: u16,
    },
    /// A check failed for good.
    CheckFailed {
        /// The check's name.
        name: String,
        /// Why (no secrets).
        message: String,
    },
    /// A check was not run because a dependency failed.
    CheckSkipped {
        /// The check's name.
        name: String,
        /// The failed dependency.
        because_of: Address,
    },
    /// Writing state failed outside any resource's step (the run's opening records, the
    /// outputs). What was applied before is recorded; a re-run converges.
    StateFailed {
        /// Why (no secrets).
        message: String,
    },
    /// A warning.
    Warning {
        /// The text.
        message: String,
    },
    /// The end of an apply.
    Complete {
        /// What was done.
        summary: Summary,
        /// Failures.
        failed: usize,
    },
}

/// Receives events.
pub trait Hook: Send + Sync {
    /// Called for every event, possibly from several tasks at once.
    fn event(&self, e: &Event);
}

/// Discards events.
pub struct NoHook;
impl Hook for NoHook {
    fn event(&self, _: &Event) {}
}

/// Keeps events (tests).
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);
impl Hook for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().expect("recorder lock").push(e.clone());
    }
}

/// The interval between `Progress` events for a long operation.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
