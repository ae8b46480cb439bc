//! The local fence: every snapshot and journal write of a writer opened under the lock happens
//! while `.skyform/` is `flock`ed exclusively and after checking that the lock file is still the
//! one this backend took, by inode (device and inode number, fixed when it was created) and by
//! its random lock ID. `state unlock` and the breaking of a stale lock remove the lock file under
//! the same `flock`, so a check and the write after it cannot interleave with a removal: either
//! the write is complete before the lock goes (and whoever takes the lock next reads it), or the
//! check fails and nothing is written ([`StateError::LockLost`]).
//!
//! What is left: a lock file deleted by hand (`rm`), without the `flock`, between a check and its
//! write. `flock` is advisory and per open file description, so it serialises skyform processes
//! (and threads) on one host; on a network file system without `flock` support it degrades to the
//! check alone.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fsio::io_err;
use crate::state::{LockInfo, StateError};

/// The lock a backend holds, as its writers check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// The random lock ID in the file.
    pub(crate) id: String,
    /// The lock file's device and inode number.
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// `.skyform/` locked exclusively until dropped (closing the descriptor releases the `flock`).
pub(super) struct DirLock {
    _dir: File,
}

/// Locks `dir` exclusively, waiting for the other holder (a write in progress, an unlock).
pub(super) fn lock_dir(dir: &Path) -> Result<DirLock, StateError> {
    let f = File::open(dir).map_err(|e| io_err(dir, e))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io_err(dir, e.into()))?;
    Ok(DirLock { _dir: f })
}

/// Whether the lock file at `path` is still `held` (call with the directory locked).
pub(super) fn check(path: &Path, held: &Held) -> Result<(), StateError> {
    let lost = || StateError::LockLost { location: path.display().to_string(), unconfirmed: false };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(lost()),
        Err(e) => return Err(io_err(path, e)),
    };
    let m = f.metadata().map_err(|e| io_err(path, e))?;
    if (m.dev(), m.ino()) != (held.dev, held.ino) {
        return Err(lost());
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
    match serde_json::from_slice::<LockInfo>(&bytes) {
        Ok(info) if info.id == held.id => Ok(()),
        _ => Err(lost()),
    }
}
