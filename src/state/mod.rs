//! State: what skyform manages, where it is kept, and who may change it.
//!
//! - [`model`]: the records (no secrets, ever).
//! - [`Backend`]: where state lives; [`local::LocalBackend`] is the default
//!   (`.skyform/<spec>.state.json` beside the spec), [`gcs::GcsBackend`] keeps it in
//!   a Cloud Storage bucket (`[backend.gcs]`).
//!
//! Every finished step of an apply is persisted at once through a
//! [`StateWriter`] (an append-only journal beside a snapshot), so a crash loses
//! nothing, and writing stays linear in the number of steps.
//!
//! Writes are *fenced* by the lock: a writer opened while its backend holds the lock checks,
//! before each write and in a way the other side cannot interleave with, that the lock is still
//! the one it took, and stops with [`StateError::LockLost`] when it was broken or removed; so a
//! run that lost its lock never overwrites the state of the run that holds it now, and every
//! record it was told is durable stays loadable (see each backend's docs for how).

pub mod gcs;
pub mod holder;
pub mod local;
pub mod model;
pub mod snapshot;

use std::time::Duration;

pub use model::{ResourceState, ResourceStatus, State, StateRecord};

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing the files failed.
    #[error("state I/O on {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The cause (in the message, so not also a `source`: printed once).
        error: std::io::Error,
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
        holder: Box<LockInfo>,
    },
    /// `state unlock` with nothing locked.
    #[error("state is not locked")]
    NotLocked,
    /// `state unlock LOCK_ID` with an ID that is not the current lock's.
    #[error("lock ID {given} is not the current lock: the state is locked by {holder}")]
    WrongLock {
        /// The ID given.
        given: String,
        /// Who holds the lock now.
        holder: Box<LockInfo>,
    },
    /// `state unlock` of a bucket's lock without its ID.
    #[error("give the lock's ID to remove it: `skyform state unlock {}` (it is held by {holder})", holder.id)]
    LockIdRequired {
        /// Who holds the lock.
        holder: Box<LockInfo>,
    },
    /// The lock this run held was broken or removed while it wrote (`state unlock`, an expired
    /// lease): the writer stops before its next write.
    #[error(
        "lost the state lock on {location}: it was broken or removed (by `state unlock`?) while this run held it; \
         {}",
        if *unconfirmed {
            "the write in progress may not be kept; nothing more was written; what was acknowledged before is kept"
        } else {
            "nothing more was written; what was written before is kept"
        }
    )]
    LockLost {
        /// The lock (file or object).
        location: String,
        /// A write had gone out when the loss was seen (a bucket's check after the write): it is
        /// kept only if the next holder read it; it was never acknowledged.
        unconfirmed: bool,
    },
    /// The local state directory may be written by other users.
    #[error(
        "state directory {path} is writable by group or others (mode {mode:o}): another user could replace the \
         state or its lock; run `chmod 700 {path}`"
    )]
    InsecureDir {
        /// The directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A remote backend refused or failed a request (after its retries), or found the state
    /// moved under it.
    #[error("state at {location}: {error}")]
    Remote {
        /// Where (`gs://bucket/prefix/default.state.json`).
        location: String,
        /// What happened (no secrets).
        error: gcs::RemoteError,
    },
}

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockInfo {
    /// The lock's ID, for `skyform state unlock LOCK_ID` (a Cloud Storage lock: its generation).
    #[serde(default)]
    pub id: String,
    /// A random ID of the holder (one per backend object, so per run): two processes with the
    /// same host name and pid (containers, CI runners) are still two holders.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holder: String,
    /// A bucket lock's lease: the holder renews it every third of this (milliseconds); a lease not
    /// renewed for this long has expired and is broken by the next run that wants the lock.
    /// `None`: no lease (local locks; bucket locks of older skyform, which only `state unlock`
    /// removes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
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
        write!(f, "pid {} on {} since {} ({})", self.pid, self.host, self.since, self.operation)?;
        if !self.id.is_empty() {
            write!(f, ", lock ID {}", self.id)?;
        }
        Ok(())
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
    /// Reads the state (snapshot plus journal replay): one consistent version, without the lock.
    /// A missing state is a new, empty one (not yet written).
    fn load(&self) -> Result<State, StateError>;
    /// Whether a state has ever been written.
    fn exists(&self) -> Result<bool, StateError>;
    /// Takes the lock, waiting up to `timeout`, and holds it (a bucket lock: renewing its lease)
    /// until the guard is dropped; writers opened meanwhile are fenced by it. A local lock whose
    /// holder ran on this host and is dead, or a bucket lease that expired, is broken and taken
    /// over.
    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockGuard>, StateError>;
    /// Who holds the lock now, if anyone (for commands that read without it).
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError>;
    /// Removes a lock left behind (`skyform state unlock [LOCK_ID]`); returns who held it. With
    /// an ID, only that lock is removed.
    fn force_unlock(&self, id: Option<&str>) -> Result<LockInfo, StateError>;
    /// Starts writing changes on top of `state` (call with the lock held).
    fn writer(&self, state: &State) -> Result<Box<dyn StateWriter>, StateError>;
    /// Replaces the whole state with `state` (`state migrate`; call with the lock held).
    fn replace(&self, state: &State) -> Result<(), StateError> {
        self.writer(state)?.compact()
    }
    /// A description for messages (the file path).
    fn describe(&self) -> String;
}
