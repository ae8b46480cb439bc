//! State: what skyform manages, where it is kept, and who may change it.
//!
//! - [`model`]: the records (no secrets, ever).
//! - [`Backend`]: where state lives; [`local::LocalBackend`] is the default
//!   (`.skyform/<spec>.state.json` beside the spec).
//!
//! Every finished step of an apply is persisted at once through a
//! [`StateWriter`] (an append-only journal beside a snapshot), so a crash loses
//! nothing, and writing stays linear in the number of steps.

pub mod local;
pub mod model;

use std::time::Duration;

pub use model::{ResourceState, ResourceStatus, State, StateRecord};

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing the files failed.
    #[error("state I/O on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid.
    #[error("state file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another process holds the lock.
    #[error("state is locked by {holder}")]
    Locked {
        /// Who holds it (pid, host, since when, operation).
        holder: LockInfo,
    },
    /// `state unlock` with nothing locked.
    #[error("state is not locked")]
    NotLocked,
}

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When it was taken (RFC 3339, UTC).
    pub since: String,
    /// The command that took it (`apply`, `destroy`...).
    pub operation: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {} ({})", self.pid, self.host, self.since, self.operation)
    }
}

/// Persists state changes as they happen. Implementations must make each call
/// durable before returning (a crash right after loses nothing) and must be
/// safe to call from many tasks at once.
pub trait StateWriter: Send + Sync {
    /// Persists one record durably.
    fn record(&self, rec: &StateRecord) -> Result<(), StateError>;
    /// Folds the journal into a new snapshot (atomically) and empties it.
    fn compact(&self) -> Result<(), StateError>;
}

/// Holds a lock until dropped.
pub trait LockGuard: Send + Sync {}

/// Where state is kept.
pub trait Backend: Send + Sync {
    /// Reads the state (snapshot plus journal replay). A missing state is a new,
    /// empty one (not yet written).
    fn load(&self) -> Result<State, StateError>;
    /// Takes the lock, waiting up to `timeout`.
    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockGuard>, StateError>;
    /// Removes a lock left behind (`skyform state unlock`); returns who held it.
    fn force_unlock(&self) -> Result<LockInfo, StateError>;
    /// Starts writing changes on top of `state` (call with the lock held).
    fn writer(&self, state: &State) -> Result<Box<dyn StateWriter>, StateError>;
    /// A description for messages (the file path).
    fn describe(&self) -> String;
}
