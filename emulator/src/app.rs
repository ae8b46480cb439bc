//! The shared state of a running emulator ([`App`]) and the long-running-operation runner (shared
//! floor: above HTTP and errors, below the APIs). What only one API keeps at runtime (Cloud SQL's
//! PostgreSQL servers, Cloud Storage's object data) is an [`Extensions`] entry of that API's own
//! type, registered by the router at start, so this floor knows no API.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, OpDurations};
use crate::faults::Faults;
use crate::state::{OpError, OpStatus, Operation, State};

/// Settings that can change at runtime through the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// Durations of long-running operations.
    pub op_durations: OpDurations,
    /// Cloud SQL name-reuse window, in seconds.
    pub name_reuse_window_s: u64,
    /// Eventual-consistency delay of new service accounts, in milliseconds.
    pub sa_visibility_delay_ms: u64,
}

/// Request counts by API method.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Total API requests (admin requests excluded).
    pub total: u64,
    /// Requests by method name, e.g. `sql.instances.get`; unrouted ones count as `unimplemented`.
    pub requests: BTreeMap<String, u64>,
    /// Injected faults by method name.
    pub faults_injected: BTreeMap<String, u64>,
    /// Requests by caller, then method name, for tokens the emulator minted (a service account's or
    /// a user's email; the configured admin token is no one's): what one identity did while others
    /// share the emulator.
    pub by_caller: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    /// The configuration the emulator started with.
    pub config: Config,
    /// Runtime settings.
    pub settings: Mutex<Settings>,
    /// The resources.
    pub state: Mutex<State>,
    /// Bumped by a reset, so that operations started before it do not write into the new state.
    pub generation: AtomicU64,
    /// Access tokens minted by the token endpoint.
    pub tokens: crate::token::Tokens,
    /// Fault injection.
    pub faults: Mutex<Faults>,
    /// Request counts.
    pub stats: Mutex<Stats>,
    /// `http://127.0.0.1:PORT/`.
    pub base_url: String,
    /// Path of the state file when persisting.
    pub state_file: Option<PathBuf>,
    /// The APIs' own runtime parts.
    pub extensions: Extensions,
    /// Google's published contract, and what it recorded.
    pub contract: crate::contract::Contract,
}

/// Runtime parts of the APIs, one value per type (the API's own type: `sql::postgres::PgManager`,
/// `storage::Blobs`, ...). Filled once at start, read-only afterwards.
#[derive(Default)]
pub struct Extensions(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Extensions {
    /// Adds (or replaces) the value of type `T`.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, if registered.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref())
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} entries)", self.0.len())
    }
}

/// Locks a mutex, ignoring poisoning (a panicked handler must not wedge the emulator).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    /// The runtime part of type `T` an API registered at start. Panics when it was not: the
    /// router registers every API's parts before serving (a programming error otherwise).
    pub fn ext<T: Any + Send + Sync>(&self) -> &T {
        self.extensions.get().unwrap_or_else(|| panic!("no {} registered with the App", std::any::type_name::<T>()))
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Saves the state when persisting; failures are logged, not fatal.
    pub fn persist(&self, state: &State) {
        if let Some(path) = &self.state_file {
            if let Err(e) = state.save(path) {
                tracing_err(&format!("cannot save state: {e}"));
            }
        }
    }

    /// Registers `op` and runs it: it stays PENDING for a fifth of its duration, then RUNNING while
    /// `work` runs and until the duration has elapsed, then `finish` applies the outcome to the
    /// state under the lock and the operation becomes DONE (with the error, if `work` or `finish`
    /// failed). `finish` must tolerate resources that disappeared meanwhile.
    pub fn run_op<W, F>(self: &Arc<Self>, state: &mut State, op: Operation, work: W, finish: F) -> Operation
    where
        W: Future<Output = Result<(), OpError>> + Send + 'static,
        F: FnOnce(&mut State, &Result<(), OpError>) -> Result<(), OpError> + Send + 'static,
    {
        let duration = self.settings().op_durations.lookup(op.api.key(), &op.op_type);
        let name = op.name.clone();
        state.ops.insert(name.clone(), op.clone());
        let app = self.clone();
        let generation = self.generation.load(Ordering::SeqCst);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            tokio::time::sleep(duration / 5).await;
            app.update_op(generation, &name, |op| {
                op.status = OpStatus::Running;
                op.start_ms = Some(crate::util::now_ms());
            });
            let result = work.await;
            tokio::time::sleep_until(started + duration).await;
            if app.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            let mut st = lock(&app.state);
            let result = finish(&mut st, &result).and(result);
            if let Some(op) = st.ops.get_mut(&name) {
                op.status = OpStatus::Done;
                op.end_ms = Some(crate::util::now_ms());
                op.error = result.err();
            }
            app.persist(&st);
        });
        op
    }

    fn update_op(&self, generation: u64, name: &str, f: impl FnOnce(&mut Operation)) {
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let mut st = lock(&self.state);
        if let Some(op) = st.ops.get_mut(name) {
            f(op);
        }
    }

    /// Waits until no operation is unfinished (for tests and the admin API), up to `timeout`.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if lock(&self.state).ops.values().all(|o| o.status == OpStatus::Done) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Logs an emulator-side problem to stderr.
pub fn tracing_err(msg: &str) {
    eprintln!("gcp-emulator: {msg}");
}
